#!/usr/bin/env bash
# Install (Debian packages) and start PostgreSQL and Redis on loopback for the second test run.
# Prints the environment to use: eval "$(scripts/services.sh)"
set -euo pipefail
need=""
command -v pg_ctlcluster >/dev/null || need="$need postgresql"
command -v redis-server >/dev/null || need="$need redis-server"
if [ -n "$need" ]; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$ver main"; then pg_createcluster "$ver" main >/dev/null; fi
pg_ctlcluster "$ver" main start >/dev/null 2>&1 || true
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='study'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE study LOGIN SUPERUSER PASSWORD 'study'\"" >/dev/null
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='study'\"" | grep -q 1 \
  || su postgres -c "createdb -O study study" >/dev/null
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 30); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
echo "export DATABASE_URL=postgres://study:study@127.0.0.1:5432/study"
echo "export CELERY_BROKER_URL=redis://127.0.0.1:6379/0"
echo "export CACHE_URL=redis://127.0.0.1:6379/1"
