#!/usr/bin/env bash
# daemon_doc_test DROVER - the daemons' help, man pages and completion, from
# the real executable: `drover broker --help` is `drover help broker` (one
# table), names every flag with its variable and default, usage errors show
# the flag's help, and the bash completion knows every daemon flag.
set -euo pipefail
drover=$1
fails=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
# The help on one line, for phrases that wrap.
flat() { "$drover" "$@" | tr -s ' \n' ' '; }
has() { # has PHRASE CMD...: CMD's output, flattened, holds PHRASE
    local phrase=$1
    shift
    [[ $(flat "$@") == *"$phrase"* ]] || fail "'$*' lacks '$phrase'"
}

for d in broker worker collector; do
    diff <("$drover" "$d" --help) <("$drover" help "$d") >/dev/null ||
        fail "drover $d --help differs from drover help $d"
    has "usage: drover $d [OPTIONS]" "$d" --help
    has "--log-level LEVEL" "$d" --help
    has "--log-format FORMAT" "$d" --help
    has "-h, --help show this help" "$d" --help
    has "exit status: 0" "$d" --help
    has ".SH OPTIONS" man "$d"
    has ".SH NOTES" man "$d"
done

has '--store URL' broker --help
has '($DROVER_STORE; else drover.db)' broker --help
has '--clients ENDPOINT' broker --help
has '(default tcp://127.0.0.1:7700)' broker --help
has '--queue-rate Q=R' broker --help
has 'repeatable' broker --help
has '--key-probe SECONDS how often a disabled API key is probed with one request (0: never) (default 300)' broker --help
has '($DROVER_CURVE_OPERATORS)' broker --help
has 'SIGHUP reloads' broker --help
has '--exec TYPE=COMMAND' worker --help
has '($DROVER_WORKER_ENDPOINT; else tcp://127.0.0.1:7701)' worker --help
has '--soft-timeout SECONDS|P%' worker --help
has '(default 80%)' worker --help
has '--events ENDPOINT[,...]' collector --help
has '($DROVER_EVENTS; else tcp://127.0.0.1:7702)' collector --help
has '--retention DURATION' collector --help
has '(default 7d)' collector --help
has '(default 127.0.0.1:7780)' collector --help
has '(default tcp://127.0.0.1:7703)' collector --help
has '\fB\-\-store\fR \fIURL\fR' man broker

# Usage errors: exit 2, the reason, the usage line, the flag's help line.
set +e
err=$("$drover" broker --heartbeat soon 2>&1 >/dev/null)
rc=$?
set -e
[[ $rc == 2 ]] || fail "broker --heartbeat soon: exit $rc, not 2"
[[ $err == "drover broker: --heartbeat: 'soon' is not a duration in seconds"$'\n'"usage: drover broker [OPTIONS]"$'\n'"  --heartbeat SECONDS "* ]] ||
    fail "broker --heartbeat soon said: $err"
[[ $err == *"(drover broker --help: every option)" ]] ||
    fail "broker --heartbeat soon said: $err"
set +e
err=$("$drover" worker --concurency 2 2>&1 >/dev/null)
rc=$?
set -e
[[ $rc == 2 && $err == *"did you mean --concurrency?"* ]] ||
    fail "worker --concurency: exit $rc: $err"

# Completion: bash, with the script `drover completion bash` prints.
complete_words() { # complete_words WORD...: what bash offers for the last
    local script
    script=$("$drover" completion bash)
    bash -c "$script"'
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _drover
        echo "${COMPREPLY[*]}"' drover "$@"
}
want() { # want EXPECTED WORD...
    local expected=$1
    shift
    local got
    got=$(complete_words "$@")
    [[ $got == "$expected" ]] || fail "completing '$*': '$got', not '$expected'"
}
want "--store" drover broker --st
want "--sync" drover broker --sy
want "full normal off" drover broker --sync ""
want "--retention" drover collector --ret
want "--exec" drover worker --exe
want "--log-level --log-format" drover worker --log-
want "warn" drover collector --log-level w
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/state.db"
want "$tmp/state.db" drover broker --store "$tmp/st"
mkdir "$tmp/certs"
want "$tmp/certs" drover broker --curve-clients "$tmp/ce"
zsh_script=$("$drover" completion zsh)
[[ $zsh_script == *"'--store[where jobs are kept\\:"* ]] ||
    fail "the zsh completion lacks the broker's --store"
if command -v zsh >/dev/null; then
    zsh -n <<<"$zsh_script" ||
        fail "the zsh completion does not parse"
fi

if ((fails)); then
    echo "$fails failed" >&2
    exit 1
fi
echo "ok"
