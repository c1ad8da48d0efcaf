#!/usr/bin/env bash
# Writes a content-generation batch as JSON Lines on stdout: N prompts
# (default 2000) for the `title` http handler. One line in a hundred has no
# prompt, which the handler refuses as invalid input.
set -euo pipefail
n=${1:-2000}
awk -v n="$n" 'BEGIN {
  split("gardening,databases,sourdough,astronomy,cycling,typography,chess,beekeeping", topic, ",")
  for (i = 1; i <= n; i++) {
    if (i % 100 == 0)
      printf "{\"type\":\"title\",\"payload\":{\"text\":\"no prompt field in line %d\"}}\n", i
    else
      printf "{\"type\":\"title\",\"payload\":{\"prompt\":\"write a catchy title for an article about %s, part %d\"}}\n", topic[i % 8 + 1], i
  }
}'
