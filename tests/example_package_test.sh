#!/usr/bin/env bash
# Installs libdisco into a temp prefix and uses it as another CMake project
# would, through find_package(disco):
#   1. every installed header compiles on its own (one translation unit each,
#      with only disco::disco's usage requirements);
#   2. examples/resolve (registry + resolver) builds and runs;
#   3. examples/http_service (HTTP server, router, discovery-aware client)
#      builds and runs.
#   example_package_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null

# 1. Each public header alone.
headers=$(cd "$tmp/prefix/include" && find disco -name '*.h' | sort)
mkdir -p "$tmp/headers"
{
  echo 'cmake_minimum_required(VERSION 3.25)'
  echo 'project(disco_header_check LANGUAGES CXX)'
  echo 'set(CMAKE_CXX_STANDARD 23)'
  echo 'set(CMAKE_CXX_STANDARD_REQUIRED ON)'
  echo 'add_compile_options(-Wall -Wextra -Wpedantic -Werror)'
  echo 'find_package(disco 0.2 REQUIRED)'
  echo 'add_library(header_check OBJECT)'
  echo 'target_link_libraries(header_check PRIVATE disco::disco)'
} > "$tmp/headers/CMakeLists.txt"
for h in $headers; do
  tu="$tmp/headers/$(echo "$h" | tr '/.' '__').cpp"
  echo "#include <$h>" > "$tu"
  echo "target_sources(header_check PRIVATE $tu)" >> "$tmp/headers/CMakeLists.txt"
done
cmake -S "$tmp/headers" -B "$tmp/headers/build" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/headers/build" >/dev/null
echo "$(echo "$headers" | wc -w) installed headers compile on their own"

# 2. and 3. The examples, against the installed package.
for example in resolve http_service; do
  cmake -S "$src/examples/$example" -B "$tmp/$example" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
  cmake --build "$tmp/$example" >/dev/null
done
out=$("$tmp/resolve/resolve_example")
echo "$out"
# Round robin over two instances: both addresses appear.
grep -q '127.0.0.1:7001' <<<"$out" && grep -q '127.0.0.1:7002' <<<"$out"

out=$("$tmp/http_service/http_service_example")
echo "$out"
# Four calls through discovery, answered by both instances, all 200.
[ "$(grep -c ' 200 {"hello":"world"}$' <<<"$out")" = 4 ]
grep -q '^hello-1 ' <<<"$out" && grep -q '^hello-2 ' <<<"$out"
