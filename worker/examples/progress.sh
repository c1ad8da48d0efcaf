#!/bin/sh
# An exec handler in plain sh: counts to the payload's "steps" (default 5),
# reporting progress, and fails retryably now and then (exit 75) to show
# how retries look. Run it with:
#
#   drover worker --exec count=/path/to/progress.sh
#   drover submit --type count --payload '{"steps": 8, "flaky": true}' --wait
#
# Contract (docs/handlers.md): payload JSON on stdin, result on stdout,
# exit 0 = success, 75 = retry later, anything else = give up; the last
# line on stderr is the failure message; progress lines go to the file
# descriptor named in DROVER_PROGRESS_FD.
set -eu

payload=$(cat)

# Crude field extraction keeps this example free of dependencies; a real
# handler would use jq or a proper language.
steps=$(printf '%s' "$payload" | sed -n 's/.*"steps"[^0-9]*\([0-9][0-9]*\).*/\1/p')
steps=${steps:-5}
flaky=false
case $payload in *'"flaky"'*true*) flaky=true ;; esac

# Writes one progress line to the worker; without the descriptor (run by
# hand) it is a no-op.
progress() {
    if [ -n "${DROVER_PROGRESS_FD:-}" ]; then
        echo "PROGRESS $1 $2 $3" >&"$DROVER_PROGRESS_FD"
    fi
}

# A flaky upstream: one attempt in three fails, but only on early attempts,
# so the job succeeds after a retry or two.
if [ "$flaky" = true ] && [ "${DROVER_ATTEMPT:-1}" -lt 3 ] &&
   [ $(( $(od -An -N1 -tu1 /dev/urandom) % 3 )) -eq 0 ]; then
    echo "RETRY_AFTER 2" >&"${DROVER_PROGRESS_FD:-2}"
    echo "upstream busy, try again later" >&2
    exit 75
fi

i=1
while [ "$i" -le "$steps" ]; do
    sleep 0.2
    progress "$i" "$steps" "step $i of $steps"
    i=$((i + 1))
done

printf '{"counted": %d, "job": "%s", "attempt": %d}\n' \
    "$steps" "${DROVER_JOB_ID:-none}" "${DROVER_ATTEMPT:-1}"
