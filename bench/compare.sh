#!/usr/bin/env bash
# Compares two builds of drover end to end, interleaved, so that the noise of
# a shared machine falls on both alike: runs bench_e2e's throughput and
# latency parts alternately with each build, RUNS times, and prints the
# medians and the ratio new/base.
#
#   bench/compare.sh BASE_BUILD_DIR NEW_BUILD_DIR [RUNS] [JOBS]
#
# BASE_ARGS and NEW_ARGS (environment) add bench_e2e flags to one side, so
# one build can be compared with itself under another setting:
#
#   NEW_ARGS=--curve bench/compare.sh build-release build-release
#
# Defaults: 5 runs of 100,000 jobs. Each build dir needs cli/drover and
# bench/bench_e2e, built in that directory (bench_e2e loads the libdrover.so
# of the build it was linked in, so a copied build dir still uses the
# original's library).
set -euo pipefail
base=${1:?usage: compare.sh BASE_BUILD_DIR NEW_BUILD_DIR [RUNS] [JOBS]}
new=${2:?usage: compare.sh BASE_BUILD_DIR NEW_BUILD_DIR [RUNS] [JOBS]}
runs=${3:-5}
jobs=${4:-100000}

declare -A tput=([base]="" [new]="") p50=([base]="" [new]="") p99=([base]="" [new]="")
run() { # build label; a run that fails is reported and left out
    local out extra
    if [ "$2" = base ]; then extra=${BASE_ARGS:-}; else extra=${NEW_ARGS:-}; fi
    # shellcheck disable=SC2086 # the extra flags are words
    out=$(DROVER_BIN="$1/cli/drover" "$1/bench/bench_e2e" --only throughput \
            --jobs "$jobs" $extra 2>/dev/null | grep '^throughput' || true)
    if [ -n "$out" ]; then
        tput[$2]+="$(sed -E 's/.*end-to-end ([0-9]+) jobs\/s.*/\1/' <<<"$out") "
    else
        echo "$2: a throughput run failed" >&2
    fi
    # shellcheck disable=SC2086
    out=$(DROVER_BIN="$1/cli/drover" "$1/bench/bench_e2e" --only latency \
            $extra 2>/dev/null | grep '^dispatch latency' || true)
    if [ -n "$out" ]; then
        p50[$2]+="$(sed -E 's/.*p50 ([0-9]+) us.*/\1/' <<<"$out") "
        p99[$2]+="$(sed -E 's/.*p99 ([0-9]+) us.*/\1/' <<<"$out") "
    else
        echo "$2: a latency run failed" >&2
    fi
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {
    print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

for ((i = 1; i <= runs; i++)); do
    if ((i % 2)); then run "$base" base; run "$new" new
    else run "$new" new; run "$base" base; fi
    b=${tput[base]% }; n=${tput[new]% }
    echo "run $i: throughput base ${b##* } new ${n##* } jobs/s" >&2
done
for what in tput p50 p99; do
    declare -n m=$what
    b=$(median <<<"${m[base]}")
    n=$(median <<<"${m[new]}")
    printf '%-5s base %8s  new %8s  ratio %.3f   (base: %s| new: %s)\n' \
        "$what" "$b" "$n" "$(awk -v b="$b" -v n="$n" 'BEGIN {print n / b}')" \
        "${m[base]}" "${m[new]}"
done
