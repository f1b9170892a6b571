#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Records dirty-memory traces of real workloads with `resilire trace record`.
# Installs nothing: needs the Debian packages redis-server, redis-tools,
# postgresql (initdb, pg_ctl, pgbench), gcc, and root (runuser for postgres).
# Every server listens on loopback only and is stopped on exit, even on error.
#
# Environment:
#   OUT=traces        output folder (one trace directory per workload)
#   EPOCHS=80         epochs per trace        INTERVAL=50ms   epoch period
#   SIZE=full|small   small = the low-memory configurations of the committed fixtures
#   WORKLOADS="redis pgbench gcc ep"         which traces to record
#   RESILIRE=bin/resilire                    the CLI binary
#   REDIS_PORT=26379 PG_PORT=25432           loopback ports
set -euo pipefail

OUT=${OUT:-traces}
EPOCHS=${EPOCHS:-80}
INTERVAL=${INTERVAL:-50ms}
SIZE=${SIZE:-full}
WORKLOADS=${WORKLOADS:-redis pgbench gcc ep}
RESILIRE=$(realpath "${RESILIRE:-bin/resilire}")
REDIS_PORT=${REDIS_PORT:-26379}
PG_PORT=${PG_PORT:-25432}
HERE=$(cd "$(dirname "$0")/.." && pwd)/testenv/workloads
# A hard bound on every load generator, whatever happens to the recorder.
LOAD_SECONDS=${LOAD_SECONDS:-120}

TMP=$(mktemp -d /tmp/resilire-traces.XXXXXX)
PIDS=()
PGDATA=""
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	if [[ -n $PGDATA ]]; then
		runuser -u postgres -- pg_ctl -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
	fi
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	[[ -n ${KEEP_TMP:-} ]] || rm -rf "$TMP"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "traces: $1 not found (install $2)" >&2; exit 1; }; }
record() { # record NAME ARGS... : the recorder's flags then -- CMD or --pid
	local name=$1; shift
	rm -rf "${OUT:?}/$name"
	"$RESILIRE" trace record --out "$OUT/$name" --name "$name" --interval "$INTERVAL" --epochs "$EPOCHS" "$@"
}

# redis-server under redis-benchmark: the server is preloaded with keys,
# then a looping benchmark (sets, gets, list and hash updates) runs while the
# server process is recorded.
trace_redis() {
	need redis-server redis-server; need redis-benchmark redis-tools
	local keys=200000 size=256
	[[ $SIZE == small ]] && keys=5000 size=64
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --protected-mode yes \
		--dir "$TMP" >"$TMP/redis.log" 2>&1 &
	local srv=$!; PIDS+=("$srv")
	for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
	redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t set -n "$keys" -r "$keys" -d "$size" -q >/dev/null
	timeout "$LOAD_SECONDS" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t set,get,incr,lpush,hset \
		-r "$keys" -d "$size" -c 8 -n 100000000 -l -q >/dev/null 2>&1 &
	local load=$!; PIDS+=("$load")
	sleep 1
	record redis --pid "$srv"
	kill "$load" "$srv" 2>/dev/null || true
}

# PostgreSQL under pgbench (TPC-B-like, 4 clients). The recorded process is
# the backend serving the first pgbench connection: its mappings hold the
# shared buffers, WAL buffers and lock tables (dirtied by every backend and
# by the background writer) plus its own private memory, so it sees the most
# dirtying of any single postgres process; the postmaster maps the same
# shared memory but dirties little of its own.
trace_pgbench() {
	need pgbench postgresql
	local bin scale=10 sb=128MB
	bin=$(dirname "$(command -v pg_ctl 2>/dev/null || printf '%s\n' /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")
	export PATH=$bin:$PATH
	[[ $SIZE == small ]] && scale=1 sb=8MB
	PGDATA=$TMP/pg
	mkdir -p "$PGDATA" && chown postgres "$TMP" "$PGDATA"
	runuser -u postgres -- initdb -D "$PGDATA" -A trust --no-sync -U postgres >"$TMP/initdb.log"
	runuser -u postgres -- pg_ctl -D "$PGDATA" -l "$TMP/pg.log" -w -o \
		"-p $PG_PORT -k $TMP -c listen_addresses=127.0.0.1 -c shared_buffers=$sb -c fsync=off" start >/dev/null
	local conn=(-h 127.0.0.1 -p "$PG_PORT" -U postgres)
	pgbench "${conn[@]}" -i -s "$scale" -q postgres >"$TMP/pgbench-init.log" 2>&1
	pgbench "${conn[@]}" -c 4 -j 1 -T "$LOAD_SECONDS" postgres >"$TMP/pgbench.log" 2>&1 &
	local load=$! backend=""; PIDS+=("$load")
	# pgbench first connects once to check the tables, then opens its 4
	# client connections: wait for those and take the oldest.
	for _ in $(seq 100); do
		backend=$(psql "${conn[@]}" -At -c "select case when count(*) >= 4 then min(pid) end
			from pg_stat_activity where application_name = 'pgbench'" postgres)
		[[ -n $backend ]] && break; sleep 0.1
	done
	[[ -n $backend ]] || { echo "traces: no pgbench backend" >&2; exit 1; }
	sleep 1
	record pgbench --pid "$backend"
	kill "$load" 2>/dev/null || true
	runuser -u postgres -- pg_ctl -D "$PGDATA" -m immediate stop >/dev/null
	PGDATA=""
}

# gcc: cc1 itself (the compiler proper, where the memory is) compiling a
# generated translation unit at -O2, started by the recorder.
trace_gcc() {
	need gcc gcc
	local n=400 cc1
	[[ $SIZE == small ]] && n=150
	cc1=$(gcc -print-prog-name=cc1)
	awk -v n="$n" -f "$HERE/gen-compile.awk" >"$TMP/big.c"
	record gcc -- "$cc1" -quiet -imultiarch x86_64-linux-gnu "$TMP/big.c" -O2 -o "$TMP/big.s"
}

# NPB-EP-like compute-bound loop, built here, started by the recorder.
trace_ep() {
	need gcc gcc
	local batch=16
	[[ $SIZE == small ]] && batch=12
	gcc -O2 -o "$TMP/ep" "$HERE/ep.c" -lm
	record ep -- "$TMP/ep" 40 "$batch"
}

mkdir -p "$OUT"
for w in $WORKLOADS; do
	"trace_$w"
done
