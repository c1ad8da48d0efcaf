#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: once in a normal
# build (with the chaos suite, tests/chaos), once under AddressSanitizer +
# UndefinedBehaviorSanitizer (without it, the PostgreSQL suites, the fleet
# suites and the Python client's suite: labels chaos, pg, fleet and python
# run once, in the normal build).
# The Release build is compiled too (-Werror holds in every build type), not
# tested again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

echo "== format"
scripts/format.sh --check

echo "== build and test (RelWithDebInfo)"
BUILD_DIR=build scripts/build.sh
# Includes the chaos suite (label chaos; its tests run alone: RUN_SERIAL).
ctest --test-dir build --output-on-failure -j2 --timeout 600

echo "== build (Release, warnings are errors)"
BUILD_DIR=build-release BUILD_TYPE=Release scripts/build.sh

echo "== build and test (address,undefined sanitizers)"
BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DDROVER_SANITIZER=address,undefined
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j2 --timeout 900 -LE 'chaos|pg|fleet|python'
echo "== all tests passed"
