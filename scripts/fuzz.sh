#!/usr/bin/env bash
# Builds the libFuzzer targets (preset "fuzz": clang 16, ASan + UBSan) and
# runs each: first once over its seed corpus (fuzz/corpus/<target>/, a
# regression check), then fuzzing for a bounded time on a copy of that
# corpus in a temp dir. Any crash, sanitizer report, failed property or
# timeout fails the script; the input that caused it is saved and printed.
#
#   scripts/fuzz.sh                      every target, 30 s each
#   scripts/fuzz.sh --time 300 jwt       one target, 5 minutes
#   scripts/fuzz.sh --seeds-only         only the regression run over the seeds
#   scripts/fuzz.sh --no-build           use build/fuzz as it is
#   scripts/fuzz.sh --list               the target names
# Crashing inputs go to build/fuzz/artifacts/ (--artifacts DIR to change);
# reproduce one with: build/fuzz/fuzz/fuzz_<target> <file>
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

seconds=30
seeds_only=0
build=1
list=0
artifacts="$root/build/fuzz/artifacts"
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) seconds="${2:?--time needs seconds}"; shift ;;
    --time=*) seconds="${1#--time=}" ;;
    --seeds-only) seeds_only=1 ;;
    --no-build) build=0 ;;
    --list) list=1 ;;
    --artifacts) artifacts="${2:?--artifacts needs a directory}"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --time takes whole seconds" >&2; exit 2 ;; esac

bin_dir="$root/build/fuzz/fuzz"
if [ ${#targets[@]} -eq 0 ]; then
  for source in fuzz/*_fuzz.cpp; do
    name=$(basename "$source" _fuzz.cpp)
    targets+=("$name")
  done
fi
if [ "$list" = 1 ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
for t in "${targets[@]}"; do
  [ -f "fuzz/${t}_fuzz.cpp" ] || { echo "fuzz.sh: no target '$t' (try --list)" >&2; exit 2; }
done

start=$(date +%s)
if ! command -v clang++-16 >/dev/null; then
  echo "fuzz.sh: clang++-16 is missing: scripts/install-deps.sh installs it" >&2
  exit 1
fi
if [ "$build" = 1 ]; then
  echo "== configure (fuzz)"; cmake --preset fuzz >/dev/null
  echo "== build"; cmake --build --preset fuzz -j "$(nproc 2>/dev/null || echo 2)"
fi
echo "== built in $(( $(date +%s) - start )) s"

# A sanitizer report aborts (so libFuzzer saves the input); leaks count too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Stack traces with file:line: clang 16's runtime does not find Debian's
# llvm-symbolizer through its relative symlink, so name the real file.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  for s in /usr/lib/llvm-16/bin/llvm-symbolizer "$(command -v llvm-symbolizer || true)"; do
    if [ -n "$s" ] && [ -x "$s" ]; then
      export ASAN_SYMBOLIZER_PATH UBSAN_SYMBOLIZER_PATH
      ASAN_SYMBOLIZER_PATH=$(readlink -f "$s")
      UBSAN_SYMBOLIZER_PATH=$ASAN_SYMBOLIZER_PATH
      break
    fi
  done
fi

dict_for() {
  case "$1" in
    http_*) echo "$root/fuzz/dict/http.dict" ;;
    json_body|consul_codec|etcd_codec|jwt) echo "$root/fuzz/dict/json.dict" ;;
  esac
}

# Prints the failing input (short ones as text, every one as base64) so the
# CI log alone is enough to reproduce.
show_input() {
  local file=$1
  echo "   saved at: $file"
  echo "   reproduce: $2 $file"
  echo "   bytes: $(wc -c <"$file"); as text (first 512 bytes):"
  head -c 512 "$file" | od -An -c | sed 's/^/     /'
  echo "   base64: $(base64 -w0 <"$file")"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/disco-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"
failed=()
summary=()
for t in "${targets[@]}"; do
  bin="$bin_dir/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz.sh: $bin is missing (build failed?)" >&2; exit 1; }
  seeds="$root/fuzz/corpus/$t"
  dict=$(dict_for "$t")
  log="$work/$t.log"

  echo "== $t: the seed corpus, once"
  mapfile -t seed_files < <(find "$seeds" -type f | sort)
  if ! "$bin" "${seed_files[@]}" >"$log" 2>&1; then
    cat "$log"
    echo "!! $t fails on a seed input (a regression): see the report above"
    failed+=("$t (seeds)")
    continue
  fi
  [ "$seeds_only" = 1 ] && { summary+=("$t: ${#seed_files[@]} seeds ok"); continue; }

  echo "== $t: fuzzing for $seconds s"
  corpus="$work/corpus-$t"
  mkdir -p "$corpus"
  cp "${seed_files[@]}" "$corpus/"
  args=(-max_total_time="$seconds" -max_len=4096 -timeout=25 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$artifacts/$t-")
  [ -n "$dict" ] && args+=(-dict="$dict")
  if "$bin" "${args[@]}" "$corpus" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    summary+=("$t: ${runs:-?} runs, ${cov:-cov: ?}, corpus $(find "$corpus" -type f | wc -l) files")
    echo "   ok: ${runs:-?} runs, ${cov:-cov: ?}"
  else
    # The report: what failed and where (the end of the log holds it).
    grep -v '^#[0-9]' "$log" | tail -60
    echo "!! $t failed"
    saved=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ -n "$saved" ] && [ -f "$saved" ]; then show_input "$saved" "$bin"; fi
    failed+=("$t")
  fi
done

echo "== summary ($(( $(date +%s) - start )) s)"
for line in "${summary[@]}"; do echo "   $line"; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "== FAILED: ${failed[*]}"
  exit 1
fi
echo "== all fuzz targets passed"
