#!/usr/bin/env bash
# Installs the Debian 12 packages drover builds and tests with, if missing.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libzmq3-dev libmsgpack-dev libjansson-dev libsqlite3-dev
  libcurl4-openssl-dev libpq-dev libmicrohttpd-dev libncurses-dev
  libcmocka-dev sqlite3
  libczmq-dev  # zcert: CurveZMQ certificate files (drover keygen, broker)
  clang-format  # scripts/format.sh --check
  prometheus  # promtool: test_collector checks /metrics with it
  tmux        # test_collector runs `drover top` in a real terminal
  openssl     # test_collector_auth makes a test certificate with it
  postgresql  # the server store_test pg starts of its own (initdb, pg_ctl)
  python3-pytest python3-setuptools python3-venv  # clients/python: tests, install
  python3-jsonschema  # tests/json: every --json output against docs/json/*.schema.json
  zsh         # cli_cmd_test checks the zsh completion script parses
  groff-base  # cli_install_test renders the man pages (groff -ww)
  tzdata      # cron_test reads its zones (Europe/Berlin, ...) from the tzfiles
  python3-yaml  # deploy_*_check: scripts/check_compose.py, check_k8s.py
  shellcheck  # deploy_image_check: deploy/image.sh
)
# deploy_k8s_check renders deploy/k8s with `kubectl kustomize`: Debian's
# kubectl (1.20, kustomize v2), unless a kubectl is installed already
# (another package's /usr/bin/kubectl would conflict with it).
command -v kubectl >/dev/null || packages+=(kubernetes-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
