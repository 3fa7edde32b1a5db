#!/usr/bin/env bash
# redis-topologies.sh — the fan-out benchmark through 2 Confab instances on one Redis, on
# 2 Redis shards, or on a 3-master Redis Cluster, with every Redis process's CPU measured.
#
#   server/bench/redis-topologies.sh one|shards|cluster [loadgen flags...]
#   server/bench/redis-topologies.sh publish-cost
#
# The fan-out runs ../shared/bench/run-fanout.sh (its load generator, its 2 instances of
# target/release/confab); for `shards` and `cluster` this script starts the Redis processes,
# points the instances at them (--redis-url, --redis-mode) and has the load generator sample
# each one (labels redis-1, redis-2, ...; run-fanout's own Redis, `redis`, then stays idle).
# Prints the load generator's JSON line, then one line per Redis process: its CPU seconds
# per 1,000 messages published.
#
# `publish-cost` shows why cluster mode uses sharded pub/sub: 100,000 PUBLISH and then
# 100,000 SPUBLISH sent to one node of a 3-master cluster, and the CPU each node spent.
#
# Environment: BENCH (default ../shared/bench), CONFAB_BIN (target/release/confab),
# BENCH_NICE (passed on; also applied to the Redis processes started here).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
CONFAB_BIN=${CONFAB_BIN:-$ROOT/target/release/confab}
TOPOLOGY=${1:?usage: redis-topologies.sh one|shards|cluster|publish-cost [loadgen flags...]}
shift
WORK=$(mktemp -d "${TMPDIR:-/tmp}/confab-topologies.XXXXXX")
NICE=()
[[ -n ${BENCH_NICE:-} ]] && NICE=(nice -n "$BENCH_NICE")

REDIS_PIDS=()
stop_redis() {
  local pid
  for pid in "${REDIS_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${REDIS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap stop_redis EXIT

# A port P with P and its cluster bus port P + 10000 free, both below the ephemeral range
# (32768-60999), where an outgoing connection may hold a port no listener shows.
free_port() {
  local port
  while :; do
    port=$((10000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
      ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

PORTS=()
start_redis() { # start_redis [extra redis-server flags...]
  local port dir pid attempt
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    dir=$WORK/$port
    mkdir -p "$dir"
    "${NICE[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$dir" --loglevel warning "$@" >"$dir/log" 2>&1 &
    pid=$!
    until [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]]; do
      kill -0 "$pid" 2>/dev/null || break # it exited (its port was taken after all)
      sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
      REDIS_PIDS+=("$pid")
      PORTS+=("$port")
      return
    fi
  done
  echo "redis-server did not start; last log: $(tail -n 2 "$dir/log")" >&2
  exit 1
}

start_cluster() {
  local n
  for n in 1 2 3; do start_redis --cluster-enabled yes --cluster-config-file nodes.conf; done
  redis-cli --cluster create "${PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
  for port in "${PORTS[@]}"; do
    until redis-cli -p "$port" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
  done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

if [[ $TOPOLOGY == publish-cost ]]; then
  start_cluster
  payload=$(head -c 200 /dev/zero | tr '\0' x)
  for command in PUBLISH SPUBLISH; do
    before=()
    for pid in "${REDIS_PIDS[@]}"; do before+=("$(cpu_ticks "$pid")"); done
    # The channel's slot is the first node's (redis-cli -c follows a MOVED once, then
    # sends everything to the owner).
    for ((n = 0; n < 100; n++)); do
      printf "%s {bench}:ch %s\n" "$command" "$payload"
    done >"$WORK/batch"
    for ((n = 0; n < 1000; n++)); do cat "$WORK/batch"; done |
      redis-cli -c -p "${PORTS[0]}" >/dev/null
    line="$command x 100000 (one channel, {bench}:ch), CPU per node:"
    for i in "${!REDIS_PIDS[@]}"; do
      ticks=$(($(cpu_ticks "${REDIS_PIDS[i]}") - before[i]))
      line+=" node$((i + 1)) $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t/hz}') s"
    done
    echo "$line"
  done
  exit 0
fi

EXTRA_PIDS=()
case $TOPOLOGY in
  one) ARGS="" ;;
  shards)
    start_redis
    start_redis
    ARGS="--redis-url redis://127.0.0.1:${PORTS[0]},redis://127.0.0.1:${PORTS[1]} --redis-mode shards"
    ;;
  cluster)
    start_cluster
    ARGS="--redis-url redis://127.0.0.1:${PORTS[0]},redis://127.0.0.1:${PORTS[1]},redis://127.0.0.1:${PORTS[2]} --redis-mode cluster"
    ;;
  *) echo "unknown topology $TOPOLOGY (one, shards, cluster, publish-cost)" >&2; exit 2 ;;
esac
for i in "${!REDIS_PIDS[@]}"; do EXTRA_PIDS+=("redis-$((i + 1))=${REDIS_PIDS[i]}"); done
if ((${#EXTRA_PIDS[@]})); then set -- "$@" --pids "$(IFS=,; echo "${EXTRA_PIDS[*]}")"; fi

result=$(PROJECT_SERVER_BIN=$CONFAB_BIN PROJECT_SERVER_ARGS=$ARGS \
  CONFAB_SEND_RATE=0 CONFAB_GUESTS_PER_ADDRESS=0 CONFAB_LOG=warn CONFAB_WORKER_THREADS=1 \
  "$BENCH/run-fanout.sh" project --path /ws --login-url /api/session \
  --login-body '{"name":"{user}"}' "$@")
echo "$result"
# Each process's share of the rooms: their Streams' lengths (the runs stay under
# --history-max, so a Stream holds every message its room got, warm-up included).
SHARES=""
for port in "${PORTS[@]}"; do
  rooms=0 messages=0
  for key in $(redis-cli -p "$port" --scan --pattern '*:log'); do
    rooms=$((rooms + 1))
    messages=$((messages + $(redis-cli -p "$port" xlen "$key")))
  done
  SHARES+="$rooms:$messages "
done
python3 - "$result" "$SHARES" <<'EOF'
import json, sys
run = json.loads(sys.argv[1])
shares = [tuple(map(int, share.split(":"))) for share in sys.argv[2].split()]
stored = sum(messages for _, messages in shares) or 1
sent = run["messages_sent"]
redis = [proc for proc in run["procs"] if proc["label"].startswith("redis") and proc["cpu_s"] > 0.05]
for index, proc in enumerate(redis):
    line = f'{proc["label"]}: {proc["cpu_s"]:.2f} CPU s = {proc["cpu_s"] / sent * 1000:.4f} per 1,000 messages published'
    if index < len(shares):  # (one Redis: run-fanout's own, gone by now, carried everything)
        rooms, messages = shares[index]
        carried = sent * messages / stored
        line += f'; {rooms} rooms, {messages / stored:.0%} of the messages: {proc["cpu_s"] / carried * 1000:.4f} per 1,000 it carried'
    print(line)
EOF
