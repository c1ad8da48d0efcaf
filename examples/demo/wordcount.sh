#!/bin/sh
# An exec handler: the payload JSON arrives on stdin, the result is what we
# print on stdout; progress goes to the descriptor in DROVER_PROGRESS_FD.
payload=$(cat)
echo "PROGRESS 1 2 counting" >&"${DROVER_PROGRESS_FD:-2}"
words=$(printf '%s' "$payload" | sed 's/.*"text":"\([^"]*\)".*/\1/' | wc -w)
printf '{"words":%d,"job":"%s"}\n' "$words" "$DROVER_JOB_ID"
