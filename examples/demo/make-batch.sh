#!/usr/bin/env bash
# Writes a demo batch as JSON Lines on stdout: N jobs (default 2400) of a
# content pipeline in miniature. Most succeed; some fail once and are retried;
# a few are broken inputs that end dead; some run an exec handler in shell.
set -euo pipefail
n=${1:-2400}
awk -v n="$n" 'BEGIN {
  srand(42)
  for (i = 1; i <= n; i++) {
    r = i % 20
    if (r < 11)
      printf "{\"type\":\"echo\",\"payload\":{\"prompt\":\"write a title for article %d\"}}\n", i
    else if (r < 13)
      printf "{\"type\":\"sleep\",\"payload\":{\"seconds\":0.02,\"steps\":2},\"priority\":7}\n"
    else if (r < 16)
      printf "{\"type\":\"fail\",\"payload\":{\"times\":1,\"message\":\"upstream hiccup\",\"category\":\"upstream\"},\"backoff\":{\"base\":0.2}}\n"
    else if (r < 17)
      printf "{\"type\":\"fail\",\"payload\":{\"message\":\"prompt %d is empty\",\"retryable\":false,\"category\":\"invalid_input\"}}\n", i
    else if (r < 18)
      printf "{\"type\":\"fail\",\"payload\":{\"message\":\"model overloaded\"},\"max_attempts\":3,\"backoff\":{\"base\":0.1,\"cap\":0.5}}\n"
    else
      printf "{\"type\":\"wordcount\",\"payload\":{\"text\":\"the quick brown fox jumps over the lazy dog %d\"}}\n", i
  }
}'
