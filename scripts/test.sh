#!/usr/bin/env bash
# The test command (README quick start, and CI through .ci/run):
# installs what it needs, builds, and runs every test suite.
#
#   scripts/test.sh                 install deps, build (preset "default"), run all tests
#   scripts/test.sh --sanitize      the same under AddressSanitizer + UBSan (preset "sanitize")
#   scripts/test.sh --tsan          ThreadSanitizer (preset "tsan": the unit and integration
#                                   test binaries; suppressions in tests/tsan.supp)
#   scripts/test.sh -- -L unit      extra arguments after -- go to ctest
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

preset=default
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) preset=sanitize ;;
    --tsan) preset=tsan ;;
    --) shift; ctest_args=("$@"); break ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

jobs=$(nproc 2>/dev/null || echo 2)
start=$(date +%s)
echo "== install dependencies"; scripts/install-deps.sh
echo "== configure ($preset)"; cmake --preset "$preset" >/dev/null
echo "== build"; cmake --build --preset "$preset" -j "$jobs"
echo "== test"
# Tests start their own etcd/Consul/PostgreSQL on free loopback ports; they
# never need the system services, and stop everything they start by PID.
ctest --preset "$preset" -j "$jobs" --timeout 600 "${ctest_args[@]}"
echo "== all tests passed in $(( $(date +%s) - start )) s"
