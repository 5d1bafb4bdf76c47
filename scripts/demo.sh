#!/usr/bin/env bash
# The main job: install, build the Kannada-MNIST learning study end to end, serve it.
#   scripts/demo.sh [--port 8000] [--no-serve]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
start=$(date +%s)
bash scripts/install.sh
mkdir -p var
[ -s var/secret_key ] || "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-$(cat var/secret_key)}"
export DJANGO_SECURE_COOKIES="${DJANGO_SECURE_COOKIES:-0}"   # the demo serves plain http on loopback
if [ -z "${KANNADA_MNIST_DIR:-}" ] && [ -d ../shared/data/kannada_mnist ]; then
  export KANNADA_MNIST_DIR="$(cd ../shared/data/kannada_mnist && pwd)"
fi
echo "Install step took $(( $(date +%s) - start ))s"
exec "$PYTHON" manage.py demo "$@"
