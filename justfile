# bluegreen task runner. `just` itself comes from PyPI: `pip install rust-just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv / "bin/python"

# list recipes
default:
    @just --list

# .venv and uv, created when missing.
# --compile-bytecode (below): uv skips it by default, and where PYTHONDONTWRITEBYTECODE is set
# (this machine, many CI images) Python never writes .pyc either, so every process would
# recompile mlflow, numba and litestar from source: `import mlflow` took 6-9 s instead of ~2 s.
_venv:
    command -v uv >/dev/null || python3 -m pip install -q uv
    [ -x {{py}} ] || uv venv -q {{venv}}

# install the project with what serving and training need, nothing more (idempotent, fast when up to date)
setup: _venv
    uv pip install -q --compile-bytecode --python {{py}} -e .

# install the project with the dev tools too (tests, load tests, lint, benchmarks)
setup-dev: _venv setup-train
    uv pip install -q --compile-bytecode --python {{py}} -e '.[dev]'

# PyTorch for the full profile's neural member (training only; serving never imports it).
# pip, not uv: the pinned "+cpu" build comes from the local wheel directory pip is configured
# with; uv would resolve PyPI's CUDA build of several GB. Without that wheel, the full profile
# and the neural-member tests say torch is missing instead.
setup-train: _venv
    {{py}} -c "import torch" 2>/dev/null || python3 -m pip --python {{py}} install -q "torch==2.13.0+cpu" || echo "torch 2.13.0+cpu is not available here: the full profile cannot train its neural member, and its tests skip" >&2

# Without root or sudo it stops and names the command to run, rather than let tests skip.
# system packages the integration tests use (Prometheus, promtool, wrk, HAProxy), via apt-get as root or sudo
setup-system:
    #!/usr/bin/env bash
    set -euo pipefail
    have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
    missing=()
    # Debian puts haproxy in /usr/sbin, which a normal user's PATH leaves out
    { have prometheus && have promtool; } || missing+=(prometheus)
    have wrk || missing+=(wrk)
    have haproxy || missing+=(haproxy)
    [ ${#missing[@]} -eq 0 ] && exit 0
    install="apt-get install -y --no-install-recommends ${missing[*]}"
    if ! command -v apt-get >/dev/null; then
        echo "just test needs ${missing[*]} (the Debian/Ubuntu package names), and this system has no apt-get: install them with its package manager, then run just test again" >&2
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
        SUDO="sudo"  # passwordless, or a terminal to ask for the password on
    else
        echo "just test needs ${missing[*]}, and installing them needs root (no sudo here, or it needs a password and there is no terminal). Run: sudo $install   then run just test again" >&2
        exit 1
    fi
    echo "installing ${missing[*]}: ${SUDO:+sudo }$install" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    for tool in prometheus promtool wrk haproxy; do
        have "$tool" || { echo "$tool is still missing after: $install" >&2; exit 1; }
    done

# serve on the embedded default (sqlite registry + local artifacts under .bluegreen/)
run: setup
    {{py}} -m bluegreen serve

# Installs what it needs first, system packages included (setup-system).
# the whole test suite (unit, integration with real mlflow/uvicorn/prometheus/haproxy, ops checks)
test: setup-system setup-dev
    {{py}} -m pytest -q -p no:cacheprovider

# unit tests only (seconds)
test-unit: setup-dev
    {{py}} -m pytest -q tests/unit

# ruff + strict mypy
lint: setup-dev
    {{py}} -m ruff check bluegreen tests loadtests bench dashboards
    {{py}} -m ruff format --check bluegreen tests loadtests bench dashboards
    {{py}} -m mypy

# format the code
fmt: setup-dev
    {{py}} -m ruff format bluegreen tests loadtests bench dashboards
    {{py}} -m ruff check --fix bluegreen tests loadtests bench dashboards

# train the ensemble; e.g. `just train --data ../shared/data/nsmc --register --alias production`
train *ARGS: setup setup-train
    {{py}} -m bluegreen train {{ARGS}}

# swap under load: real mlflow + app (1 and 2 workers), Locust, good/canary/corrupt/contract versions; PNGs to bench/results/
loadtest-swap *ARGS: setup-dev
    {{py}} -m loadtests.swap_under_load --publish bench/results {{ARGS}}

# every benchmark side by side (vs mlflow models serve, no-op, swaps, memory, model, scaling) into BENCHMARKS.md; `--quick` to debug
bench *ARGS: setup-system setup-dev
    PATH="{{justfile_directory()}}/{{venv}}/bin:$PATH" {{py}} -m bench.run_all {{ARGS}}

# regenerate the README's settings reference from bluegreen/settings.py
settings-doc: setup-dev
    {{py}} -m tests.support.settings_doc README.md

# regenerate the Grafana dashboard JSON from dashboards/build_dashboard.py
dashboards: setup-dev
    {{py}} dashboards/build_dashboard.py

# validate deployment artifacts: hadolint, docker-compose config, promtool, kubernetes-validate, dashboard
compose-check: setup-system setup-dev
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
