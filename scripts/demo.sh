#!/usr/bin/env bash
# The main job: installs what is missing, builds, then runs a batch of 2,400
# jobs through a broker (embedded SQLite store in a temp dir), two worker
# supervisors, with a progress bar and a summary. Results land in
# demo-out/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
BUILD_DIR=build scripts/build.sh
mkdir -p demo-out
examples/demo/make-batch.sh "${DEMO_JOBS:-2400}" > demo-out/batch.jsonl
echo "demo: $(wc -l < demo-out/batch.jsonl) jobs in demo-out/batch.jsonl"
set +e
build/cli/drover up --workers 2 --concurrency 4 --dir "$(mktemp -d /tmp/drover-demo-XXXXXX)" \
  --port "${DEMO_PORT:-7700}" \
  --exec "wordcount=sh $PWD/examples/demo/wordcount.sh" \
  -- build/cli/drover submit --file demo-out/batch.jsonl --batch demo --wait \
       --progress --out demo-out/results.jsonl
rc=$?
set -e
echo "demo: results in demo-out/results.jsonl (submit exit code $rc: 0 all succeeded, 1 some ended dead)"
# Some jobs are meant to end dead; anything else is a failure of the demo.
[ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]
