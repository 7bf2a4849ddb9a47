# bluegreen: Korean sentiment API that hot-swaps MLflow registry versions.
#
#   docker build -t bluegreen .                      # the API (default target "runtime")
#   docker build --target mlflow -t bluegreen-mlflow .  # MLflow tracking server (compose uses it)
#
# Stages: "deps" resolves the runtime dependencies from pyproject.toml only (cached until
# pyproject.toml changes), "build" installs the package on top, "runtime" copies the finished
# virtualenv into a clean slim image that runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- deps: third-party dependencies only, in their own layer ------------------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"
WORKDIR /src
COPY pyproject.toml ./
# Versions are pinned (ranges) in pyproject.toml, which is the single source of truth; the list is
# extracted with tomllib so this layer is rebuilt only when pyproject.toml changes.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

# --- build: the bluegreen package itself (no dependency resolution here) -------------------------
FROM deps AS build
COPY README.md ./
COPY bluegreen ./bluegreen
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import bluegreen.metrics"

# --- mlflow: tracking server for docker-compose (same mlflow as the API, plus a postgres driver)
FROM deps AS mlflow-deps
RUN pip install --no-cache-dir "psycopg2-binary==2.9.10"

FROM ${PYTHON_IMAGE} AS mlflow
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" mlflow \
    && useradd --system --uid "${APP_UID}" --gid mlflow --home-dir /home/mlflow \
        --create-home --shell /usr/sbin/nologin mlflow \
    && install -d -o mlflow -g mlflow -m 0750 /mlartifacts
COPY --from=mlflow-deps /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/mlflow
USER ${APP_UID}:${APP_UID}
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["mlflow"]
CMD ["server", "--host", "0.0.0.0", "--port", "5000"]

# --- runtime: the API (last stage, so the default build target) ----------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="bluegreen" \
      org.opencontainers.image.description="Korean sentiment API with zero-downtime MLflow model hot swaps"

ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" bluegreen \
    && useradd --system --uid "${APP_UID}" --gid bluegreen --home-dir /home/bluegreen \
        --create-home --shell /usr/sbin/nologin bluegreen \
    && install -d -o bluegreen -g bluegreen -m 0750 /var/lib/bluegreen /tmp/bluegreen \
        /tmp/bluegreen/prometheus

COPY --from=build /opt/venv /opt/venv

# Every setting is an environment variable (DESIGN.md section 6a); override at `docker run -e`.
# NUMBA_CACHE_DIR sits in the state volume so the model kernel compiles once, not per container.
# Unset on purpose: BLUEGREEN_ADMIN_TOKEN (admin API disabled until set) and MLFLOW_TRACKING_URI
# (unset = embedded sqlite registry under BLUEGREEN_STATE_DIR, bootstrapped with a small model).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/bluegreen \
    BLUEGREEN_HOST=0.0.0.0 \
    BLUEGREEN_PORT=8000 \
    BLUEGREEN_WORKERS=1 \
    BLUEGREEN_MODEL_NAME=ensemble-sentiment-model \
    BLUEGREEN_MODEL_ALIAS=production \
    BLUEGREEN_POLL_INTERVAL_S=300 \
    BLUEGREEN_CONTROL_INTERVAL_S=15 \
    BLUEGREEN_CANARY_PERCENT=0 \
    BLUEGREEN_RETAIN_PREVIOUS=false \
    BLUEGREEN_DRAIN_TIMEOUT_S=30 \
    BLUEGREEN_LOG_LEVEL=INFO \
    BLUEGREEN_STATE_DIR=/var/lib/bluegreen \
    PROMETHEUS_MULTIPROC_DIR=/tmp/bluegreen/prometheus \
    NUMBA_CACHE_DIR=/var/lib/bluegreen/numba-cache

# Numeric uid:gid so Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER ${APP_UID}:${APP_UID}
WORKDIR /home/bluegreen
EXPOSE 8000

# /healthz = process alive (readiness is /readyz); slim has no curl, so use the interpreter.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BLUEGREEN_PORT', '8000'), timeout=4)"]

# `python -m bluegreen serve` wraps uvicorn (--factory bluegreen.app:create_app), wipes
# PROMETHEUS_MULTIPROC_DIR before forking BLUEGREEN_WORKERS workers, and handles SIGTERM with a
# drain. Exec form, so python itself receives SIGTERM (compose adds `init: true` to reap zombies).
ENTRYPOINT ["python", "-m", "bluegreen"]
CMD ["serve"]
