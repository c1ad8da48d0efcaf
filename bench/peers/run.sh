#!/usr/bin/env bash
# Runs the same no-op work (N jobs, 1 producer, 2 consumers, timed from the
# first put to the last job done) on beanstalkd, on Celery with Redis, and
# on drover twice (the default user path, `drover up` + `drover submit
# --file --wait`, and bench_e2e's throughput part), R rounds, one system
# after the other in each round, and prints one table: each system's median
# jobs/s and drover's ratio to each peer. See bench/peers/README.md.
#
#   bench/peers/run.sh                 # N=100000 R=3
#   N=20000 R=1 bench/peers/run.sh
#
# Environment:
#   N, R              jobs per run (100000), rounds (3)
#   BUILD_DIR         the build with cli/drover, bench/bench_e2e and
#                     bench/beanstalk_bench (build-release)
#   DROVER_BIN        the drover executable (BUILD_DIR/cli/drover)
#   BEANSTALK_FSYNC   beanstalkd's -f MS (default 50, beanstalkd's own
#                     default: fsync at most every 50 ms; 0: fsync every
#                     binlog write); "never": -F
#   REDIS_FSYNC       Redis's appendfsync: always, everysec (default), no
#   SYSTEMS           which to run, comma-separated (default all:
#                     beanstalkd,celery,drover-up,bench_e2e)
#   KEEP=1            keep the work directory (logs) at the end
#
# Everything listens on 127.0.0.1 on free ports and keeps its data in one
# temp dir; every process is started in a process group of its own and
# ended by that PID, at the end of its run and, on failure or Ctrl-C, by
# the exit trap. Needs beanstalkd, redis-server, python3-celery and
# python3-redis (Debian packages).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$root/build-release}
case $build in /*) ;; *) build=$root/$build ;; esac
drover=${DROVER_BIN:-$build/cli/drover}
n=${N:-100000}
rounds=${R:-3}
bfsync=${BEANSTALK_FSYNC:-50}
rfsync=${REDIS_FSYNC:-everysec}
systems=${SYSTEMS:-beanstalkd,celery,drover-up,bench_e2e}
python=/usr/bin/python3

need() { # the file or command $1 must exist
    if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$1" ]; then
        echo "run.sh: $1 not found${2:+ ($2)}" >&2
        exit 2
    fi
}
need beanstalkd "apt-get install beanstalkd"
need redis-server "apt-get install redis-server"
need "$drover" "build drover, or set DROVER_BIN"
need "$build/bench/bench_e2e" "cmake --build $build"
need "$build/bench/beanstalk_bench" "cmake --build $build"
if ! "$python" -c 'import celery, redis' 2>/dev/null; then
    echo "run.sh: needs python3-celery and python3-redis" >&2
    exit 2
fi

work=$(mktemp -d /tmp/peers-run-XXXXXX)
live=() # process group leaders started and not yet ended

# Ends the process group pid leads: SIGTERM, up to 10 s, then SIGKILL.
stop() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do # until only zombies are left
        # shellcheck disable=SC2009 # pgrep cannot tell zombies apart
        ps -o stat= -g "$pid" 2>/dev/null | grep -qv '^Z' || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${live[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    live=("${keep[@]+"${keep[@]}"}")
}
cleanup() {
    local p
    for p in "${live[@]+"${live[@]}"}"; do stop "$p"; done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "run.sh: logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in a process group of its own, output to log $1; the group's
# PID goes to $started (and to live).
started=
spawn() {
    local log=$1
    shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    started=$!
    live+=("$started")
}

# A free TCP port on 127.0.0.1; with a count, the first of count+1 free
# ports in a row, and also port+80 (drover up's /metrics).
free_port() {
    "$python" - "${1:-0}" <<'EOF'
import random, socket, sys
span = int(sys.argv[1])
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
            return True
        except OSError:
            return False
if span == 0:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    sys.exit(0)
for _ in range(200):
    p = random.randrange(20000, 60000)
    if all(free(p + i) for i in range(span + 1)) and free(p + 80):
        print(p)
        sys.exit(0)
sys.exit("no free ports")
EOF
}

# Waits up to $2 seconds for command $1 (a function) to succeed.
wait_for() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        if "$1"; then return 0; fi
        sleep 0.1
    done
    echo "run.sh: $1: not within $2 s" >&2
    return 1
}

# Each run_SYSTEM ROUND sets result to its jobs/s, or returns 1. They run
# in this shell (not in $(...)), so that what they start is in live.
result=
rate_of() { # the end-to-end rate of a bench's line $1
    result=$(sed -nE 's/.*end-to-end ([0-9]+) jobs\/s.*/\1/p' <<<"$1")
    [ -n "$result" ]
}

bport=
beanstalkd_up() { (exec 3<>"/dev/tcp/127.0.0.1/$bport") 2>/dev/null; }
run_beanstalkd() {
    local d=$work/beanstalkd-$1 pid out
    mkdir -p "$d/binlog"
    bport=$(free_port)
    local sync=(-f "$bfsync")
    [ "$bfsync" = never ] && sync=(-F)
    spawn "$d/beanstalkd.log" beanstalkd -l 127.0.0.1 -p "$bport" \
        -b "$d/binlog" "${sync[@]}"
    pid=$started
    wait_for beanstalkd_up 10 || { stop "$pid"; return 1; }
    out=$("$build/bench/beanstalk_bench" --port "$bport" --jobs "$n" \
        --consumers 2 2>>"$d/bench.log") || { stop "$pid"; return 1; }
    echo "$out" >>"$d/bench.log"
    stop "$pid"
    rate_of "$out"
}

rport=
redis_up() { "$python" -c "import redis, sys; redis.Redis(port=$rport).ping()" \
    2>/dev/null; }
run_celery() {
    local d=$work/celery-$1 rpid wpid out
    mkdir -p "$d"
    rport=$(free_port)
    spawn "$d/redis.log" redis-server --bind 127.0.0.1 --port "$rport" \
        --dir "$d" --save "" --appendonly yes --appendfsync "$rfsync" \
        --daemonize no
    rpid=$started
    wait_for redis_up 10 || { stop "$rpid"; return 1; }
    export PEERS_REDIS_URL=redis://127.0.0.1:$rport/0
    spawn "$d/worker.log" env PYTHONPATH="$here" "$python" -m celery \
        -A celery_bench worker --pool prefork --concurrency 2 \
        --without-gossip --without-mingle --without-heartbeat \
        --loglevel WARNING --hostname "bench@%h"
    wpid=$started
    out=$(PYTHONPATH="$here" "$python" "$here/celery_bench.py" --jobs "$n" \
        2>>"$d/bench.log") || { stop "$wpid"; stop "$rpid"; return 1; }
    echo "$out" >>"$d/bench.log"
    stop "$wpid"
    stop "$rpid"
    rate_of "$out"
}

uport=
drover_up() { [ -s "$work/up.json" ]; }
run_drover_up() {
    local d=$work/up-$1 pid t0 t1 rc=0
    mkdir -p "$d"
    uport=$(free_port 3)
    rm -f "$work/up.json"
    # The defaults but for where: its dir and free ports.
    # shellcheck disable=SC2016 # expanded by that sh
    spawn "$d/up.log" sh -c 'exec "$1" up --dir "$2" --port "$3" --json \
        >"$4"' sh "$drover" "$d" "$uport" "$work/up.json"
    pid=$started
    wait_for drover_up 30 || { stop "$pid"; return 1; }
    t0=$(date +%s.%N)
    DROVER_BROKER=tcp://127.0.0.1:$uport "$drover" submit \
        --file "$work/jobs.jsonl" --wait --quiet --no-progress \
        >"$d/results.jsonl" 2>>"$d/submit.log" || rc=$?
    t1=$(date +%s.%N)
    stop "$pid"
    [ "$rc" = 0 ] || return 1
    local ok
    ok=$(grep -c '"succeeded"' "$d/results.jsonl" || true)
    if [ "$ok" != "$n" ]; then
        echo "run.sh: drover up: $ok of $n succeeded" >&2
        return 1
    fi
    result=$(awk -v n="$n" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "%.0f\n", n / (b - a) }')
}

run_bench_e2e() {
    local out
    out=$(DROVER_BIN="$drover" "$build/bench/bench_e2e" --only throughput \
        --jobs "$n" 2>>"$work/bench_e2e.log") || return 1
    echo "$out" >>"$work/bench_e2e.log"
    rate_of "$out"
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {
    if (NR == 0) print 0; else
    print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

for ((i = 0; i < n; i++)); do echo '{"type":"noop"}'; done >"$work/jobs.jsonl"

IFS=, read -r -a names <<<"$systems"
declare -A rates=()
for s in "${names[@]}"; do
    case $s in beanstalkd | celery | drover-up | bench_e2e) rates[$s]="" ;;
    *) echo "run.sh: unknown system '$s'" >&2; exit 2 ;; esac
done
for ((r = 1; r <= rounds; r++)); do
    for s in "${names[@]}"; do
        if "run_${s//-/_}" "$r"; then
            rates[$s]+="$result "
            echo "round $r: $s $result jobs/s" >&2
        else
            echo "round $r: $s failed (logs: KEEP=1)" >&2
        fi
    done
done

label() {
    case $1 in
    beanstalkd)
        local f="-f $bfsync: fsync every binlog write"
        [ "$bfsync" = never ] && f="-F: no fsync"
        [ "$bfsync" != never ] && [ "$bfsync" != 0 ] &&
            f="-f $bfsync: fsync at most every $bfsync ms"
        [ "$bfsync" = 50 ] && f="$f, its default"
        echo "beanstalkd $(beanstalkd -v | awk '{print $2}') (binlog, $f)" ;;
    celery)
        echo "Celery $("$python" -c 'import celery; print(celery.__version__)')" \
            "+ Redis $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')" \
            "(AOF, appendfsync $rfsync)" ;;
    drover-up) echo "drover up + submit --file --wait (sync full)" ;;
    bench_e2e) echo "drover bench_e2e --only throughput (sync full)" ;;
    esac
}
declare -A med=()
for s in "${names[@]}"; do med[$s]=$(median <<<"${rates[$s]}"); done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b;
    else printf "-" }'; }

echo
echo "$n no-op jobs, 1 producer, 2 consumers; median of $rounds run(s);" \
    "$(nproc) CPUs; $(date -u +%Y-%m-%d)"
printf '| %-58s | %8s | %-22s |' "system" "jobs/s" "runs"
for d in drover-up bench_e2e; do
    [ -n "${med[$d]+x}" ] && printf ' %-15s |' "$d / it"
done
echo
printf '|%s|%s|%s|' "$(printf -- '-%.0s' {1..60})" "----------" \
    "------------------------"
for d in drover-up bench_e2e; do
    [ -n "${med[$d]+x}" ] && printf '%s|' "-----------------"
done
echo
for s in "${names[@]}"; do
    printf '| %-58s | %8s | %-22s |' "$(label "$s")" "${med[$s]}" \
        "${rates[$s]% }"
    for d in drover-up bench_e2e; do
        if [ -n "${med[$d]+x}" ]; then
            if [ "$d" = "$s" ]; then printf ' %-15s |' "1"
            else printf ' %-15s |' "$(ratio "${med[$d]}" "${med[$s]}")"; fi
        fi
    done
    echo
done
