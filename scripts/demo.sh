#!/usr/bin/env bash
# The main job: installs what is missing, builds, then runs a content-
# generation batch: 2,000 prompts as `http` jobs through a broker (embedded
# SQLite store in a temp dir) and two workers sharing four API keys, against
# a local stand-in for an LLM API: one key revoked, all rate limited, one far
# below what the workers were told (the fleet learns its real limit).
# Results land in demo-out/results.jsonl; at the end, a summary of keys as
# the broker and the API saw them, retries and failures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
BUILD_DIR=build scripts/build.sh
out=demo-out
rm -rf "$out" && mkdir -p "$out"
work=$(mktemp -d /tmp/drover-demo-XXXXXX)
port=${DEMO_PORT:-7700}
n=${DEMO_JOBS:-2000}

examples/demo/make-prompts.sh "$n" > "$out/prompts.jsonl"
# Four keys: the API allows 3,000 requests a minute on the first two, 100 on
# the third (the worker thinks 3,000: it will meet 429s), and has revoked the
# fourth (401).
printf 'sk-demo-1111\nsk-demo-2222\nsk-demo-3333\nsk-demo-4444\n' > "$work/keys.txt"
build/tests/fixtures/llm_stub --port 0 --port-file "$work/stub.port" \
    --latency 40 --jitter 40 --record "$work/stub.jsonl" \
    --key sk-demo-1111:3000 --key sk-demo-2222:3000 --key sk-demo-3333:100 \
    --revoked sk-demo-4444 > "$work/stub.log" 2>&1 &
stub=$!
trap 'kill $stub 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$work/stub.port" ] && break; sleep 0.05; done
api_port=$(cat "$work/stub.port")
cat > "$work/worker.json" <<JSON
{
  "http_concurrency": 200,
  "http": {
    "title": {
      "url": "http://127.0.0.1:$api_port/v1/chat/completions",
      "method": "POST",
      "headers": {"Content-Type": "application/json"},
      "auth_header": "Authorization: Bearer {key}",
      "body": {"model": "stub-1",
               "messages": [{"role": "user", "content": "{{payload.prompt}}"}]},
      "result": "/choices/0/message/content",
      "timeout": 10,
      "rpm": 3000,
      "keys": {"file": "$work/keys.txt"}
    }
  }
}
JSON
echo "demo: $n prompts in $out/prompts.jsonl; stand-in LLM API on 127.0.0.1:$api_port"
echo "demo: two workers share the keys; one key is revoked and one is rate limited"
echo "      below what the workers expect: the fleet learns its real limit, and jobs"
echo "      that meet a 429 wait out its Retry-After before their retry"
cat > "$work/run.sh" <<SH
#!/bin/sh
build/cli/drover submit --file "$out/prompts.jsonl" --batch titles --wait \
  --progress --backoff-base 0.5 --out "$out/results.jsonl"
rc=\$?
echo
echo "API keys as the broker holds them for the fleet (LIMIT: the working limit;"
echo "learned when the API allowed less than the key file says):"
build/cli/drover keys
exit \$rc
SH
chmod +x "$work/run.sh"
set +e
build/cli/drover up --workers 2 --concurrency 2 --dir "$work" --port "$port" \
  --worker-arg --config --worker-arg "$work/worker.json" -- "$work/run.sh"
rc=$?
set -e
echo
echo "API keys as the stand-in API saw them (key-N = line N of the keys file):"
for i in 1 2 3 4; do
  key=$(sed -n "${i}p" "$work/keys.txt")
  awk -v k="\"key\":\"$key\"" -v id="key-$i" '
    index($0, k) { n++; if ($0 ~ /"status":200/) ok++; else if ($0 ~ /"status":429/) rl++;
                   else if ($0 ~ /"status":40[13]/) au++; else other++ }
    END { printf "  %-6s requests %5d  ok %5d  429 %4d  401/403 %3d  other %3d\n", id, n, ok, rl, au, other }' \
    "$work/stub.jsonl"
done
echo "An example result: $(head -1 "$out/results.jsonl")"
echo "demo: results in $out/results.jsonl (submit exit code $rc: 0 all succeeded, 1 some ended dead)"
# A few prompts are malformed on purpose and end dead; anything else is a
# failure of the demo.
[ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]
