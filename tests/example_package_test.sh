#!/usr/bin/env bash
# Installs libdisco into a temp prefix, builds examples/resolve against the
# installed package with find_package(disco), and runs it.
#   example_package_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/examples/resolve" -B "$tmp/build" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/build" >/dev/null
out=$("$tmp/build/resolve_example")
echo "$out"
# Round robin over two instances: both addresses appear.
grep -q '127.0.0.1:7001' <<<"$out" && grep -q '127.0.0.1:7002' <<<"$out"
