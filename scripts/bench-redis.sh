#!/usr/bin/env bash
# rabia-kv (3 nodes, one process each, on loopback) against a single
# redis-server on the same machine, all driven by redis-benchmark.
#
#   scripts/bench-redis.sh            # RUNS=3 by default
#   RUNS=5 scripts/bench-redis.sh
#
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server
# redis-tools). The servers take turns, one run each per round. Prints one
# line per run, each round's ratios, a markdown table of medians, the ratios
# of the medians and the medians of the per-round ratios.
set -euo pipefail

RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-50}
N_P1=${N_P1:-100000}
N_P16=${N_P16:-1000000}
N_FILE_P1=${N_FILE_P1:-50000}
REDIS_PORT=16400
KV_RESP=16381
WORK=$(mktemp -d /tmp/rabia-bench.XXXXXX)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KV="$ROOT/target/release/rabia-kv"

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
(cd "$ROOT" && cargo build --release -q -p rabia-kv)

cleanup() {
  pkill -INT -f "rabia-kv local-cluster --nodes 3 --dir $WORK" 2>/dev/null || true
  redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT

# bench PORT P N -> "SET GET" requests per second
bench() {
  redis-benchmark -p "$1" -t set,get -c "$CLIENTS" -n "$3" -P "$2" -q 2>/dev/null \
    | tr '\r' '\n' | grep 'requests per second' | awk '{print $2}' | tr '\n' ' '
}

wait_port() {
  for _ in $(seq 300); do
    [[ $(redis-cli -p "$1" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.1
  done
  echo "port $1 did not answer" >&2; exit 1
}

declare -A RESULTS
record() { # name p set get
  if [[ -z $3 || -z $4 ]]; then
    echo "$1 -P $2 round $5: redis-benchmark reported nothing" >&2; exit 1
  fi
  RESULTS["$1 P$2 SET"]+="$3 "
  RESULTS["$1 P$2 GET"]+="$4 "
  printf '%-22s P%-2s run %s: SET %10.0f  GET %10.0f\n' "$1" "$2" "$5" "$3" "$4"
}

run_redis() { # name extra-args...
  local name=$1; shift
  # A fresh directory each run: an AOF left by the previous round would
  # be loaded at start (seconds), and the benchmark would meet LOADING.
  rm -rf "${WORK:?}/$name"
  mkdir -p "$WORK/$name"
  redis-server --port $REDIS_PORT --save '' --dir "$WORK/$name" --daemonize yes \
    --logfile "$WORK/$name.log" "$@"
  wait_port $REDIS_PORT
  local n1=$N_P1; [[ $name == *always* ]] && n1=$N_FILE_P1
  read -r s g <<<"$(bench $REDIS_PORT 1 "$n1")"; record "$name" 1 "$s" "$g" "$ROUND"
  read -r s g <<<"$(bench $REDIS_PORT 16 "$N_P16")"; record "$name" 16 "$s" "$g" "$ROUND"
  redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true
  sleep 0.5
}

run_kv() { # persistence
  local name="rabia-kv-$1"
  rm -rf "$WORK/kv"
  "$KV" local-cluster --nodes 3 --dir "$WORK/kv" --persistence "$1" \
    --resp-base $KV_RESP --peer-base 17001 --metrics-base 19101 >"$WORK/$name.out" 2>&1 &
  for p in $KV_RESP $((KV_RESP + 1)) $((KV_RESP + 2)); do wait_port $p; done
  local n1=$N_P1; [[ $1 == file ]] && n1=$N_FILE_P1
  read -r s g <<<"$(bench $KV_RESP 1 "$n1")"; record "$name" 1 "$s" "$g" "$ROUND"
  read -r s g <<<"$(bench $KV_RESP 16 "$N_P16")"; record "$name" 16 "$s" "$g" "$ROUND"
  if [[ $ROUND == "$RUNS" ]]; then
    "$KV" status --resp 127.0.0.1:$KV_RESP | sed 's/^/    /'
  fi
  pkill -INT -f "rabia-kv local-cluster --nodes 3 --dir $WORK/kv" || true
  wait || true
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
last() { echo "${RESULTS["$1"]}" | awk '{print $NF}'; }

# The servers take turns, one run each per round, so that the machine's
# drift (this one is shared and noisy) falls on all of them alike; each
# round's ratios pair measurements taken a minute apart at most.
ONLY=${ONLY:-all} # all | redis | memory | file
declare -A PAIRED
for ROUND in $(seq "$RUNS"); do
  if [[ $ONLY == all || $ONLY == redis ]]; then
    run_redis redis-no-persistence --appendonly no
    run_redis redis-aof-always --appendonly yes --appendfsync always
  fi
  [[ $ONLY == all || $ONLY == memory ]] && run_kv memory
  [[ $ONLY == all || $ONLY == file ]] && run_kv file
  if [[ $ONLY == all ]]; then
    m=$(ratio "$(last "rabia-kv-memory P16 SET")" "$(last "redis-no-persistence P16 SET")")
    f1=$(ratio "$(last "rabia-kv-file P1 SET")" "$(last "redis-aof-always P1 SET")")
    f16=$(ratio "$(last "rabia-kv-file P16 SET")" "$(last "redis-aof-always P16 SET")")
    PAIRED[memory16]+="$m "; PAIRED[file1]+="$f1 "; PAIRED[file16]+="$f16 "
    echo "round $ROUND ratios: memory -P 16 $m, file -P 1 $f1, file -P 16 $f16"
  fi
done

echo
echo "| server | pipeline | SET ops/s | GET ops/s |"
echo "|---|---|---:|---:|"
for name in redis-no-persistence redis-aof-always rabia-kv-memory rabia-kv-file; do
  for p in 1 16; do
    [[ -n ${RESULTS["$name P$p SET"]:-} ]] || continue
    s=$(echo "${RESULTS["$name P$p SET"]}" | median)
    g=$(echo "${RESULTS["$name P$p GET"]}" | median)
    printf '| %s | -P %s | %.0f | %.0f |\n' "$name" "$p" "$s" "$g"
    declare "M_${name//-/_}_$p=$s"
  done
done
echo
[[ $ONLY == all ]] || exit 0
echo "rabia-kv memory SET -P 16 / redis (no persistence) SET -P 16: $(ratio "$M_rabia_kv_memory_16" "$M_redis_no_persistence_16") (target >= 0.50)"
echo "rabia-kv file   SET -P 1  / redis appendfsync always SET -P 1: $(ratio "$M_rabia_kv_file_1" "$M_redis_aof_always_1") (target >= 1.00)"
echo "rabia-kv file   SET -P 16 / redis appendfsync always SET -P 16: $(ratio "$M_rabia_kv_file_16" "$M_redis_aof_always_16") (target >= 1.00)"
echo "(ratios of the medians of $RUNS runs; $CLIENTS clients; redis-benchmark drives rabia-kv node 1)"
echo "paired (median of the per-round ratios): memory -P 16 $(echo "${PAIRED[memory16]}" | median), file -P 1 $(echo "${PAIRED[file1]}" | median), file -P 16 $(echo "${PAIRED[file16]}" | median)"
