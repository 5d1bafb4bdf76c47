#!/usr/bin/env bash
# Install (Debian packages) and start PostgreSQL and Redis on loopback for the second test run.
# Prints the environment to use: eval "$(scripts/services.sh)"
# STUDY_PG_CLUSTER / STUDY_PG_PORT (default main / 5432) pick another cluster of the same tuning, e.g.
# a private one for benchmarks/load_participants.py --chaos, which restarts it.
set -euo pipefail
cluster=${STUDY_PG_CLUSTER:-main}
port=${STUDY_PG_PORT:-5432}
need=""
command -v pg_ctlcluster >/dev/null || need="$need postgresql"
command -v redis-server >/dev/null || need="$need redis-server"
if [ -n "$need" ]; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$ver $cluster "; then pg_createcluster -p "$port" "$ver" "$cluster" >/dev/null; fi
# A small server (2 cores, a few GB) shared with gunicorn, Celery and Redis. Same values as the db
# service of docker-compose.yml. Written to conf.d; the cluster restarts only when the file changes.
conf=/etc/postgresql/$ver/$cluster/conf.d/study.conf
tuned=$(cat <<'CONF'
# Written by scripts/services.sh (keep in step with docker-compose.yml's db service).
# gunicorn 4 workers x 4 threads (16 pooled connections) + Celery + tests + psql: 100 is ample, and
# each idle backend still costs memory, so no more.
max_connections = 100
# 128MB by default; 256MB holds a study's hot tables and indexes many times over.
shared_buffers = 256MB
# The page cache PostgreSQL can count on besides its own buffers (planner estimate only).
effective_cache_size = 1GB
# WAL written by a burst of answers stays in memory until its commit's flush (default: 1/32 of
# shared_buffers = 8MB).
wal_buffers = 16MB
# Every acknowledged answer must survive a crash: each commit waits for its WAL flush (on is the
# default; written down so that nobody turns it off for speed). Durability is not traded away:
# no fsync = off, no synchronous_commit = off.
synchronous_commit = on
# Group commit: with 5+ other transactions open, a commit waits 0.2 ms so that their WAL flushes
# share one fsync. Still durable: nobody is acknowledged before the flush that covers them.
commit_delay = 200
commit_siblings = 5
# Fewer, spread checkpoints: a checkpoint's burst of writes and fsyncs was one of the stalls behind
# the tail. 15 min or 2 GB of WAL, whichever first, spread over 90% of the interval.
checkpoint_timeout = 15min
max_wal_size = 2GB
checkpoint_completion_target = 0.9
# On 2 cores a parallel query's helpers compete with the web workers; the study's queries are small.
max_parallel_workers_per_gather = 0
# JIT compiling pays only for long analytical queries; here it would add compile time to requests.
jit = off
# A transaction left open (a killed client) must not hold row locks for long.
idle_in_transaction_session_timeout = 60s
# SSD storage.
random_page_cost = 1.1
CONF
)
if [ "$(cat "$conf" 2>/dev/null || true)" != "$tuned" ]; then
  printf '%s\n' "$tuned" > "$conf"
  pg_ctlcluster "$ver" "$cluster" restart >/dev/null 2>&1 || true
fi
pg_ctlcluster "$ver" "$cluster" start >/dev/null 2>&1 || true
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 1; done
psql_="psql -p $port"
su postgres -c "$psql_ -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='study'\"" | grep -q 1 \
  || su postgres -c "$psql_ -qc \"CREATE ROLE study LOGIN SUPERUSER PASSWORD 'study'\"" >/dev/null
su postgres -c "$psql_ -qtAc \"SELECT 1 FROM pg_database WHERE datname='study'\"" | grep -q 1 \
  || su postgres -c "createdb -p $port -O study study" >/dev/null
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 30); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
echo "export DATABASE_URL=postgres://study:study@127.0.0.1:$port/study"
echo "export CELERY_BROKER_URL=redis://127.0.0.1:6379/0"
echo "export CACHE_URL=redis://127.0.0.1:6379/1"
