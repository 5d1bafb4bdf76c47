#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine with Python 3.11.
#   scripts/install.sh          runtime (demo, server, worker)
#   scripts/install.sh --dev    + test tools, Chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEV=0; [ "${1:-}" = "--dev" ] && DEV=1

apt_packages="fonts-lohit-knda"
[ "$DEV" = 1 ] && apt_packages="$apt_packages chromium"
missing=""
for pkg in $apt_packages; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian packages:$missing"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "WARNING: missing Debian packages:$missing (run as root: apt-get install$missing)" >&2
  fi
fi

req=requirements.txt; [ "$DEV" = 1 ] && req=requirements-dev.txt
echo "Python packages from $req (torch comes from the wheels on this machine's disk; a no-op when installed)"
"$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore -r "$req" 2>&1 | grep -v "is ignored: it is neither" || true
"$PYTHON" -c "import torch, django, celery" || { echo "Python packages failed to install" >&2; exit 1; }
