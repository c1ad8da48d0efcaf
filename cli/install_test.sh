#!/usr/bin/env bash
# install_test BUILD MANDIR DATADIR - `cmake --install BUILD` into a scratch
# DESTDIR puts the man pages (MANDIR/man1) and the bash and zsh completion
# scripts (DATADIR/...) where they belong, and groff renders every page
# without a warning.
set -euo pipefail
build=$1 mandir=$2 datadir=$3
tmp=$(mktemp -d /tmp/drover-install-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
DESTDIR=$tmp cmake --install "$build" --prefix /usr >/dev/null
under() { # under DIR: DIR as installed into the scratch root
    case $1 in
    /*) echo "$tmp$1" ;;
    *) echo "$tmp/usr/$1" ;;
    esac
}
man1=$(under "$mandir")/man1
share=$(under "$datadir")
fails=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
for page in drover drover-broker drover-worker drover-collector drover-jobs \
    drover-completion; do
    [[ -s $man1/$page.1 ]] || fail "$man1/$page.1 is missing"
done
[[ -x $(under bin)/drover ]] || fail "bin/drover is missing"
bash_file=$share/bash-completion/completions/drover
zsh_file=$share/zsh/vendor-completions/_drover
[[ -s $bash_file ]] && grep -q '^complete -F _drover drover$' "$bash_file" ||
    fail "$bash_file is missing or not the bash completion"
[[ -s $zsh_file ]] && [[ $(head -n1 "$zsh_file") == "#compdef drover" ]] ||
    fail "$zsh_file is missing or not the zsh completion"
grep -q -- '--store' "$bash_file" ||
    fail "the bash completion lacks the daemons' flags"

if command -v groff >/dev/null; then
    for page in "$man1"/*.1; do
        warnings=$(groff -man -Tutf8 -ww "$page" 2>&1 >/dev/null)
        [[ -z $warnings ]] || fail "groff warns on $(basename "$page"): $warnings"
    done
    text=$(groff -man -Tascii -P-cbou "$man1/drover-broker.1" 2>/dev/null)
    [[ $text == *"--store URL"* && $text == *"DROVER_STORE"* ]] ||
        fail "drover-broker.1 does not render --store URL"
elif command -v man >/dev/null; then
    warnings=$(man -l "$man1/drover-broker.1" 2>&1 >/dev/null)
    [[ -z $warnings ]] || fail "man warns on drover-broker.1: $warnings"
else
    echo "no groff nor man: the pages are not rendered" >&2
fi

if ((fails)); then
    echo "$fails failed" >&2
    exit 1
fi
echo "ok"
