#!/usr/bin/env bash
# directory.sh — the room directory (the home page, GET /api/rooms) with many active rooms.
#
#   server/bench/directory.sh [ROOMS]      (default 10000)
#
# Starts a redis-server on a free loopback port, fills it with ROOMS rooms that each have
# one person present (on an instance whose lease is live), starts target/release/confab on
# it, and times: the first GET /api/rooms (a fresh computation), then 50 requests of the
# home page and the API, 10 at a time, within the directory's second (served from the
# computation), and one more after it expired. Prints each figure and the Redis commands
# each part cost (INFO commandstats).
#
# Environment: CONFAB_BIN (target/release/confab).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/release/confab}
ROOMS=${1:-10000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/confab-directory.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done

# ROOMS rooms with one person each, on the live instance "elsewhere".
{
  echo "SET bench:instance:elsewhere 1 EX 3600"
  for ((n = 0; n < ROOMS; n++)); do
    echo "HSET bench:room:busy-$n:members elsewhere/$n \"u$n	Person $n\""
    echo "SADD bench:active-rooms busy-$n"
  done
} | redis-cli -p "$REDIS_PORT" >/dev/null

PORT=$(free_port)
REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CONFAB_REDIS_PREFIX=bench PORT=$PORT \
  CONFAB_LOG=warn CONFAB_HISTORY_RATE=0 "$CONFAB_BIN" >"$WORK/confab.log" 2>&1 &
PIDS+=($!)
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do sleep 0.05; done

commands() {
  redis-cli -p "$REDIS_PORT" info commandstats | awk -F'calls=' 'NF > 1 { split($2, a, ","); n += a[1] } END { print n }'
}
seconds() { curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT$1"; }

sleep 1.2 # the instance's own start-up commands are done
before=$(commands)
cold=$(seconds /api/rooms)
after_cold=$(commands)
start=$(date +%s.%N)
for ((batch = 0; batch < 5; batch++)); do
  visits=()
  for ((i = 0; i < 5; i++)); do
    seconds /api/rooms >/dev/null &
    visits+=($!)
    seconds / >/dev/null &
    visits+=($!)
  done
  wait "${visits[@]}"
done
end=$(date +%s.%N)
after_warm=$(commands)
sleep 1.1
expired=$(seconds /)
listed=$(curl -s "http://127.0.0.1:$PORT/api/rooms" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["rooms"]))')

echo "active rooms: $ROOMS (listed: $listed)"
echo "first GET /api/rooms: ${cold} s, $((after_cold - before)) Redis commands"
echo "50 more within the second (home page and API, 10 at a time): $(python3 -c "print(round(($end - $start) * 1000))") ms for all 50, $((after_warm - after_cold)) Redis commands in all"
echo "the home page once the directory expired: ${expired} s"
