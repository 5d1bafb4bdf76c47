#!/usr/bin/env bash
# The whole test suite (what CI runs): installs the test tools, runs ruff, mypy and import-linter
# (lint-imports: the layer contracts in pyproject.toml), then pytest twice:
#   1. on the defaults: SQLite and the embedded filesystem Celery broker;
#   2. against PostgreSQL and Redis (Debian packages, started on loopback by scripts/services.sh),
#      for every test that touches the database, the broker or a worker (except the heavy model
#      tests marked first_run_only, whose database use is generic).
# Extra arguments go to both pytest runs. STUDY_TEST_DEFAULT_ONLY=1 skips the second run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh --dev
if [ -z "${KANNADA_MNIST_DIR:-}" ] && [ -d ../shared/data/kannada_mnist ]; then
  export KANNADA_MNIST_DIR="$(cd ../shared/data/kannada_mnist && pwd)"
fi
echo "=== Lint and types: ruff (pyproject's rules) and mypy on explainers/ and stats/"
"$PYTHON" -m ruff check .
"$PYTHON" -m mypy
echo "=== Layers: import-linter's contracts (pyproject.toml, docs/LAYERS.md)"
lint-imports --no-logo
echo "=== Run 1/2: SQLite + embedded broker"
"$PYTHON" -m pytest "$@"
if [ "${STUDY_TEST_DEFAULT_ONLY:-0}" = 1 ]; then exit 0; fi
echo "=== Run 2/2: PostgreSQL + Redis"
eval "$(bash scripts/services.sh)"
# Django's live test server (like runserver) starts a thread per request, unbounded, and the test's own
# thread holds a connection of the same process's pool: the pool sized for gunicorn's threads (4) made an
# analysis page's three figures wait for a connection (PoolTimeout). Production sizes it per process.
export DATABASE_POOL_MAX_SIZE=${DATABASE_POOL_MAX_SIZE:-16}
# Heavy model tests whose database and broker use is generic (marked first_run_only) ran in run 1;
# every flow, worker, fault and tampering test runs again here.
"$PYTHON" -m pytest tests/studyapp tests/browser -m "not first_run_only" "$@"
