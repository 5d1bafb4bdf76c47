#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine with Python 3.11.
#   scripts/install.sh          runtime (demo, server, worker)
#   scripts/install.sh --dev    + test tools, Chromium for the browser tests
# Python packages come from requirements.lock (requirements-dev.lock with --dev), hash-checked.
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

# The lock files pin every package (transitive ones too) with its sha256 hashes; they are generated
# from requirements.txt / requirements-dev.txt (the command is at the top of each lock, and in the
# README). They are for Linux x86_64 with CPython 3.11 and the CUDA build of torch on this machine's
# disk; elsewhere INSTALL_UNLOCKED=1 installs from the open ranges of requirements*.txt instead.
lock=requirements.lock; [ "$DEV" = 1 ] && lock=requirements-dev.lock
if [ "${INSTALL_UNLOCKED:-0}" = 1 ]; then
  args=(-r "${lock%.lock}.txt")
else
  args=(--require-hashes -r "$lock")
fi
echo "Python packages from ${args[*]} (torch comes from the wheels on this machine's disk; a no-op when installed)"
# (grep drops pip's notes about the local index folders that lack a package.)
set +e
"$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${args[@]}" 2>&1 | grep -v "is ignored: it is neither"
pip_status=${PIPESTATUS[0]}
set -e
[ "$pip_status" = 0 ] || { echo "pip install ${args[*]} failed (exit $pip_status)" >&2; exit 1; }
"$PYTHON" -c "import torch, django, celery" || { echo "Python packages failed to install" >&2; exit 1; }
