#!/usr/bin/env bash
# channel-fanout.sh — a dashboard-shaped fan-out: SUBSCRIBERS clients of one channel over 2
# Confab instances on one Redis, and a backend publishing to it through the server API.
#
#   server/bench/channel-fanout.sh [--subscribers 1000] [--rate 20] [--seconds 20]
#
# Builds the release server and the load generator (`make bench-tools`:
# server/examples/channel_fanout.rs),
# starts a Redis and 2 instances on free loopback ports (guest sessions per address
# unlimited, an API key made for the run), runs the generator, prints its JSON line (the
# instances' and Redis' CPU per 1,000 deliveries included), and stops what it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/confab-channel-fanout.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

make --no-print-directory bench-tools >&2

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
REDIS_PID=$!
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done

# `confab api-key new` prints `key: <key>` and `line: <name> <hash>`.
MADE=$(./target/release/confab api-key new bench)
KEY=$(awk '/^key:/ {print $2}' <<<"$MADE")
awk '/^line:/ {print $2, $3}' <<<"$MADE" >"$WORK/keys"
echo '{"dash": {"subscribe": "signed_in", "publish": "server"}}' >"$WORK/namespaces.json"

SERVERS=()
LABELS=()
for n in 1 2; do
  port=$(free_port)
  HOST=127.0.0.1 PORT=$port REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CONFAB_LOG=warn \
    CONFAB_GUESTS_PER_ADDRESS=0 CONFAB_API_KEYS_FILE="$WORK/keys" \
    CONFAB_NAMESPACES_FILE="$WORK/namespaces.json" ./target/release/confab >"$WORK/confab-$n.log" 2>&1 &
  PIDS+=($!)
  LABELS+=("confab-$n=$!")
  SERVERS+=("127.0.0.1:$port")
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
done

./target/release/examples/channel_fanout \
  --servers "$(IFS=,; echo "${SERVERS[*]}")" --key "$KEY" \
  --pids "$(IFS=,; echo "${LABELS[*]}"),redis=$REDIS_PID" "$@"
