#!/usr/bin/env bash
# The whole test suite (what CI runs): installs the test tools, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh --dev
if [ -z "${KANNADA_MNIST_DIR:-}" ] && [ -d ../shared/data/kannada_mnist ]; then
  export KANNADA_MNIST_DIR="$(cd ../shared/data/kannada_mnist && pwd)"
fi
exec "$PYTHON" -m pytest "$@"
