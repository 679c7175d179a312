#!/usr/bin/env bash
# Runs the benchmarks of docs/BENCHMARKS.md: tlschat, ngIRCd and InspIRCd measured by the same
# chat-bench, each server pinned to one CPU and the load generator to the other.
#
#   docs/bench/run.sh [OUT_DIR]            (default: bench-results)
#
# Environment:
#   SERVERS ("tlschat ngircd inspircd")  which servers to measure
#   SCENARIOS ("saturate rate idle held logins rooms")  which measurements to run
#   RUNS (3)            repetitions of the saturation and fixed-rate runs (report medians)
#   SERVER_CPU (0)      CPU the server is pinned to
#   BENCH_CPU (1)       CPU chat-bench is pinned to
#   DURABILITY (power-loss)  tlschat's --durability
#   ROOM_SIZES ("10 100 1000 5000")  room sizes of the `rooms` scenario
# Every run writes OUT_DIR/<server>-<scenario>[-<n>].json; docs/bench/summary.py turns them
# into the tables and the chart. The accounts (10,200 of them, created once with
# `chat-admin import`, a few minutes of hashing) and the certificates live in OUT_DIR/work.
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT=${1:-bench-results}
SERVERS=${SERVERS:-"tlschat ngircd inspircd"}
SCENARIOS=${SCENARIOS:-"saturate rate idle held logins rooms"}
RUNS=${RUNS:-3}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
DURABILITY=${DURABILITY:-power-loss}
WORK=$OUT/work
BIN=target/release
TLSCHAT_PORT=7777
USERS=10200

cargo build --release --locked --bin chat-server --bin chat-admin --bin chat-bench
mkdir -p "$OUT" "$WORK"
if [[ ! -f $WORK/certs/server.pem ]]; then
    "$BIN/chat-admin" gen-cert --certs-dir "$WORK/certs"
fi
if [[ ! -f $WORK/chat.db ]]; then
    echo "creating $USERS benchmark accounts (minutes of password hashing)" >&2
    "$BIN/chat-bench" users --count "$USERS" | "$BIN/chat-admin" --db "$WORK/chat.db" --create import
fi
# The login storm's own accounts, as new as a new teammate's (only in #general), so the
# storm measures logging in rather than the history of rooms other scenarios left behind.
"$BIN/chat-bench" users --count 1002 --prefix s |
    "$BIN/chat-admin" --db "$WORK/chat.db" import --skip-existing >/dev/null

PID=
PORT=
SERVER=

# Starts $SERVER afresh (so memory figures start from a clean process); sets PID and PORT.
start() {
    stop
    case $SERVER in
        tlschat)
            PORT=$TLSCHAT_PORT
            # Loopback load from one address: lift the per-address, flood and queue limits
            # that protect a real server, and let thousands of logins wait for hashing.
            taskset -c "$SERVER_CPU" "$BIN/chat-server" --listen "127.0.0.1:$PORT" \
                --db "$WORK/chat.db" --certs-dir "$WORK/certs" --durability "$DURABILITY" \
                --max-connections 20000 --max-per-address 20000 \
                --new-per-address-burst 20000 --new-per-address-rate 100000 \
                --flood-burst 100000 --flood-rate 1000000 --flood-tolerated 100000 \
                --queue-lines 100000 --queue-bytes 16777216 \
                --hash-wait 600 --login-timeout 600 --log warn \
                2>>"$OUT/tlschat.log" &
            PID=$!
            for _ in $(seq 100); do
                ss -ltn "sport = :$PORT" | grep -q LISTEN && break
                sleep 0.1
            done
            ;;
        ngircd | inspircd)
            PID=$(docs/bench/irc-servers.sh start "$SERVER" "$WORK/certs" "$WORK/$SERVER" "$SERVER_CPU")
            if [[ $SERVER == ngircd ]]; then PORT=${NGIRCD_PORT:-6697}; else PORT=${INSPIRCD_PORT:-6698}; fi
            ;;
    esac
    sleep 1
}

stop() {
    if [[ -n $PID ]]; then
        case $SERVER in
            tlschat) kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true ;;
            *) docs/bench/irc-servers.sh stop "$WORK/$SERVER" "$SERVER" >/dev/null 2>&1 || true ;;
        esac
        PID=
    fi
}
trap stop EXIT

dialect() { [[ $SERVER == tlschat ]] && echo tlschat || echo irc; }

# bench NAME SCENARIO [ARGS...]: one chat-bench run, its report kept as OUT/SERVER-NAME.json.
bench() {
    local name=$1
    shift
    echo "== $SERVER $name" >&2
    # ngIRCd's listen backlog is 10: more connects in flight overflow it and wait for SYN
    # retries. Connection speed is not measured; the figures after it are.
    local concurrency=64
    [[ $SERVER == ngircd ]] && concurrency=8
    taskset -c "$BENCH_CPU" "$BIN/chat-bench" "$@" --connect-concurrency "$concurrency" \
        --server "localhost:$PORT" \
        --ca "$WORK/certs/ca.pem" --dialect "$(dialect)" --server-pid "$PID" \
        --label "$SERVER" --quiet --json "$OUT/$SERVER-$name.json" | tee -a "$OUT/$SERVER.txt"
}

wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }

for SERVER in $SERVERS; do
    : >"$OUT/$SERVER.txt"
    if wants saturate || wants rate; then
        start
        for run in $(seq "$RUNS"); do
            wants saturate && bench "saturate-$run" saturate --clients 200 --senders 10 --window 8 --duration 10
            wants rate && bench "rate-$run" rate --clients 500 --senders 10 --rate 200 --duration 10
        done
    fi
    if wants idle; then
        start
        bench idle idle --clients 2000
    fi
    if wants held; then
        start
        bench held idle --clients 10000 --room-size 100
    fi
    if wants logins; then
        start
        # The hashing bound: one hash's time on the server's CPU, measured while it is idle.
        hash_seconds=$(taskset -c "$SERVER_CPU" "$BIN/chat-bench" hash-time)
        bench logins logins --count 1000 --chat-rate 50 --hash-seconds "$hash_seconds" \
            --connect-timeout 600 --prefix s
    fi
    if wants rooms; then
        for size in ${ROOM_SIZES:-10 100 1000 5000}; do
            start
            senders=$((size < 10 ? size : 10))
            bench "room-$size" saturate --clients "$size" --senders "$senders" --window 8 \
                --duration 10 --room "#size$size"
        done
    fi
    stop
done
echo "results in $OUT; summarise with: python3 docs/bench/summary.py $OUT" >&2
