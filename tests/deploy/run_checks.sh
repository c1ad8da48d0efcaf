#!/usr/bin/env bash
# The static checks of the deploy files (no container engine or cluster
# needs to run), one mode each:
#   image    deploy/image.sh parses and passes ShellCheck (when installed);
#            deploy/Dockerfile has its stages, HEALTHCHECK and ENTRYPOINT
#   compose  deploy/compose.yaml against scripts/check_compose.py
#   k8s      deploy/k8s and deploy/k8s/hpa rendered by `kubectl kustomize`
#            (KUBECTL overrides; exit 77, skipped, without one) against
#            scripts/check_k8s.py
# compose and k8s also check that the checker finds every problem of a
# broken fixture (tests/deploy/bad_*.yaml).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/deploy
py=/usr/bin/python3
fail=0

expect_problems() { # checker fixture pattern...
  local out
  out=$("$py" "$1" "$2" 2>&1 >/dev/null) && {
    echo "FAIL: $1 passed $2"; fail=1; return; }
  shift 2
  for p in "$@"; do
    grep -qF -- "$p" <<<"$out" || { echo "FAIL: no '$p' in:"; echo "$out"; fail=1; }
  done
}

if ! "$py" -c 'import yaml' 2>/dev/null; then
  echo "skipped: python3-yaml is not installed (scripts/deps.sh)"
  exit 77
fi

case ${1:-} in
image)
  # deploy/image.sh parses, and shellcheck (if installed) finds nothing;
  # the Dockerfile's stages are the ones docs/deploy.md names.
  bash -n "$root/deploy/image.sh" || fail=1
  if command -v shellcheck >/dev/null; then
    shellcheck "$root/deploy/image.sh" "$0" || fail=1
  else
    echo "shellcheck is not installed: only bash -n"
  fi
  df=$root/deploy/Dockerfile
  for p in '^FROM debian:12-slim AS build' '^FROM debian:12-slim$' \
           '^HEALTHCHECK ' '^ *CMD .*drover health --self' '^ENTRYPOINT \["drover"\]' \
           '^USER 10001'; do
    grep -q "$p" "$df" || { echo "FAIL: deploy/Dockerfile has no line $p"; fail=1; }
  done
  ;;
compose)
  "$py" "$root/scripts/check_compose.py" "$root/deploy/compose.yaml" \
    "$root/docs/deploy.md" || fail=1
  expect_problems "$root/scripts/check_compose.py" "$here/bad_compose.yaml" \
    "broker: no restart policy" \
    "DROVER_HTTP_TOKEN holds a value inline" \
    "DROVER_STORE holds a URL with a password" \
    "SOMETHING's value looks like a secret" \
    "secret undeclared is not declared" \
    "healthcheck is not \`drover health --self broker\`" \
    "publishes 7703" \
    "--clients tcp://*:7799" \
    "nothing: neither image nor build" \
    "nothing: no healthcheck"
  ;;
k8s)
  expect_problems "$root/scripts/check_k8s.py" "$here/bad_k8s.yaml" \
    "ConfigMap/None: no apiVersion" \
    "ConfigMap/None: no metadata.name" \
    "container worker: no image" \
    "container worker: no resource requests and limits" \
    "container worker: not runAsNonRoot" \
    "container worker: no readinessProbe" \
    "livenessProbe is not drover health --self worker" \
    "terminationGracePeriodSeconds 30 is not above --grace 30" \
    "container worker: no preStop hook" \
    "Service/nobody: its selector" \
    "PodDisruptionBudget/nobody: its selector" \
    "ScaledObject/x: its target Deployment/nowhere"
  kubectl=${KUBECTL:-kubectl}
  if ! command -v "$kubectl" >/dev/null; then
    echo "skipped: kubectl is not installed (scripts/deps.sh: kubernetes-client)"
    [ "$fail" = 0 ] && exit 77
    exit 1
  fi
  "$kubectl" version --client 2>/dev/null | head -n1
  for dir in deploy/k8s deploy/k8s/hpa; do
    if ! rendered=$("$kubectl" kustomize "$root/$dir" 2>/dev/null); then
      echo "FAIL: kubectl kustomize $dir"
      "$kubectl" kustomize "$root/$dir" >/dev/null
      fail=1
      continue
    fi
    "$py" "$root/scripts/check_k8s.py" <<<"$rendered" || { echo "FAIL: $dir"; fail=1; }
  done
  ;;
*)
  echo "usage: run_checks.sh image|compose|k8s" >&2
  exit 2
  ;;
esac
[ "$fail" = 0 ] && echo "ok"
exit "$fail"
