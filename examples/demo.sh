#!/usr/bin/env bash
# `make demo`: the passive-user checker in two replicas sharing one Redis lease.
# Ticks every 2 s; exactly one replica runs each tick. Ctrl-C stops everything.
# DEMO_SECONDS=N stops by itself after N seconds. After DEMO_KILL_AFTER seconds (default 10;
# empty disables) the lease holder gets SIGTERM, so you can watch the other replica take over.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
STATE=.demo-quick
mkdir -p "$STATE"
free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

export TICKWORK_EXAMPLE_DB="$PWD/$STATE/users.sqlite3"
args=(run examples.passive_users:PassiveUserCheckerWorker --period 2s --mode rate
      --run-on-start --lease-ttl 3s --metrics-host 127.0.0.1)

if command -v redis-server >/dev/null; then
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$PWD/$STATE" --logfile "$PWD/$STATE/redis.log" &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  URL="redis://127.0.0.1:$REDIS_PORT/0"
  M1=$(free_port); M2=$(free_port)
  echo "demo: Redis on $URL; replica a metrics http://127.0.0.1:$M1/metrics, replica b http://127.0.0.1:$M2/metrics"
  echo "demo: in another shell: .venv/bin/tickwork status --redis-url $URL"
  "$BIN/tickwork" "${args[@]}" --redis-url "$URL" --replica-id a --metrics-port "$M1" &
  pids+=($!)
  "$BIN/tickwork" "${args[@]}" --redis-url "$URL" --replica-id b --metrics-port "$M2" &
  pids+=($!)
  DEMO_KILL_AFTER=${DEMO_KILL_AFTER-10}
  if [[ -n "$DEMO_KILL_AFTER" ]]; then
    (
      sleep "$DEMO_KILL_AFTER"
      holder=$(redis-cli -p "$REDIS_PORT" hget 'tickwork:{PassiveUserCheckerWorker}:lease' owner)
      holder=${holder%%:*}
      echo "demo: SIGTERM to replica $holder, the lease holder; watch the other one take over"
      if [[ "$holder" == a ]]; then kill -TERM "${pids[1]}"; else kill -TERM "${pids[2]}"; fi
    ) &
  fi
else
  echo "demo: redis-server not found (make redis-server); running one replica with an in-process lease"
  "$BIN/tickwork" "${args[@]}" --metrics-port 0 &
  pids+=($!)
fi

if [[ -n "${DEMO_SECONDS:-}" ]]; then
  sleep "$DEMO_SECONDS"
else
  wait "${pids[@]}"
fi
