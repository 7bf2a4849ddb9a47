# bluegreen task runner. `just` itself comes from PyPI: `pip install rust-just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"

# list recipes
default:
    @just --list

# create .venv and install the project with dev tools (idempotent, fast when up to date).
# --compile-bytecode: uv skips it by default, and where PYTHONDONTWRITEBYTECODE is set (this
# machine, many CI images) Python never writes .pyc either, so every process would recompile
# mlflow, numba and litestar from source: `import mlflow` took 6-9 s here instead of ~2 s.
setup:
    command -v uv >/dev/null || python3 -m pip install -q uv
    [ -x {{py}} ] || uv venv -q {{venv}}
    uv pip install -q --compile-bytecode --python {{py}} -e '.[dev]'

# system packages the integration tests use (Prometheus, promtool, wrk, HAProxy); needs root
setup-system:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v wrk >/dev/null || missing+=(wrk)
    # Debian installs haproxy in /usr/sbin, which a normal user's PATH leaves out
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    if [ ${#missing[@]} -gt 0 ]; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi

# serve on the embedded default (sqlite registry + local artifacts under .bluegreen/)
run: setup
    {{py}} -m bluegreen serve

# the whole test suite (unit, integration with real mlflow/uvicorn/prometheus, ops checks)
test: setup
    {{py}} -m pytest -q -p no:cacheprovider

# unit tests only (seconds)
test-unit: setup
    {{py}} -m pytest -q tests/unit

# ruff + strict mypy
lint: setup
    {{py}} -m ruff check bluegreen tests loadtests bench dashboards
    {{py}} -m ruff format --check bluegreen tests loadtests bench dashboards
    {{py}} -m mypy

# format the code
fmt: setup
    {{py}} -m ruff format bluegreen tests loadtests bench dashboards
    {{py}} -m ruff check --fix bluegreen tests loadtests bench dashboards

# train the ensemble; e.g. `just train --data ../shared/data/nsmc --register --alias production`
train *ARGS: setup
    {{py}} -m bluegreen train {{ARGS}}

# swap under load: real mlflow + app (1 and 2 workers), Locust, good/canary/corrupt/contract versions; PNGs to bench/results/
loadtest-swap *ARGS: setup
    {{py}} -m loadtests.swap_under_load --publish bench/results {{ARGS}}

# every benchmark side by side (vs mlflow models serve, no-op, swaps, memory, model, scaling) into BENCHMARKS.md; `--quick` to debug
bench *ARGS: setup
    PATH="{{justfile_directory()}}/{{venv}}/bin:$PATH" {{py}} -m bench.run_all {{ARGS}}

# regenerate the Grafana dashboard JSON from dashboards/build_dashboard.py
dashboards: setup
    {{py}} dashboards/build_dashboard.py

# validate deployment artifacts: hadolint, docker-compose config, promtool, kubernetes-validate, dashboard
compose-check: setup
    {{py}} -m pytest -q tests/ops -m "not integration"

# the running server's live version, canary, readiness and slots (`just status --json`)
status *ARGS: setup
    {{py}} -m bluegreen status {{ARGS}}

# the alias, the fleet-wide promotion history and rejected versions
versions *ARGS: setup
    {{py}} -m bluegreen versions {{ARGS}}

# promote the canary now, or pin a version: `just promote 3`
promote *ARGS: setup
    {{py}} -m bluegreen promote {{ARGS}}

# one step back in the promotion history, fleet-wide
rollback *ARGS: setup
    {{py}} -m bluegreen rollback {{ARGS}}

# reconcile with the registry now
reload *ARGS: setup
    {{py}} -m bluegreen reload {{ARGS}}

# canary share for new versions, or stop the running canary: `just canary 10`, `just canary abort`
canary *ARGS: setup
    {{py}} -m bluegreen canary {{ARGS}}
