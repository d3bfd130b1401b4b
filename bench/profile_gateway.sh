#!/usr/bin/env bash
# Where the gateway's CPU goes under load (issues 13 and 14): perf samples
# with call graphs and a system-call count of the gateway process.
#
#   bench/profile_gateway.sh [BUILD_DIR] [DURATION_S] [OUT_DIR]
#   (defaults: build/default 6 ./gateway-profile; THREADS=n gives the
#   gateway --threads n; TLS=1 runs wrk → gateway → upstream over TLS with a
#   throwaway CA, as bench/run_gateway_bench.sh TLS=1 does)
#
# Starts etcd (temp data dir), one user-service (1 I/O thread) and the
# gateway routing /up/* to it on free loopback ports, each stopped by its
# PID at the end; warms up with wrk for 2 s; then, each during its own
# `wrk -t1 -c50` run: `perf record -F 2000 -g` of the gateway
# (PERF_CALL_GRAPH=dwarf: call graphs unwound from DWARF, through OpenSSL
# and other code built without frame pointers; OUT_DIR/
# perf.data; read it with `perf report -i OUT_DIR/perf.data --no-children
# --sort dso` or `--sort sym`) and `strace -c -f` (OUT_DIR/strace.txt:
# system calls per request = calls ÷ the requests in OUT_DIR/wrk-strace.txt,
# which strace slows down) and `perf stat` of the system calls that matter
# on the request path (OUT_DIR/syscalls.txt: counts per request, from
# tracepoints, which do not slow the process down the way strace does, so
# they also show the receives that fail with EAGAIN, which strace's
# slowdown hides). perf and strace come from Debian (linux-perf, strace).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/default}
duration=${2:-6}
out=${3:-$PWD/gateway-profile}
threads=${THREADS:-1}
tls=${TLS:-0}
for tool in etcd wrk perf strace python3 curl; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool (perf and strace: apt-get install linux-perf strace; the rest: scripts/install-deps.sh)" >&2
    exit 1
  }
done
mkdir -p "$out"
. "$root/bench/lib.sh"
start_etcd profile
registry=$DISCO_REGISTRY

scheme=http user_tls=() gw_tls=()
if [ "$tls" = 1 ]; then
  make_bench_certs  # bench/lib.sh
  scheme=https
  user_tls=(--tls-cert "$work/user-service.pem" --tls-key "$work/user-service.key")
  gw_tls=(--tls-cert "$work/proxy.pem" --tls-key "$work/proxy.key" --tls-ca "$work/ca.pem")
fi

user_port=$(free_port)
start user env DISCO_JWT_SECRET=bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz \
  "$build/services/user/user-service" --port "$user_port" --registry "$registry" \
  --db "$work/users.db" --threads 1 --access-log false --log-level warn "${user_tls[@]}"
wait_http "$scheme://127.0.0.1:$user_port/health"
cat >"$work/routes.json" <<JSON
{"routes": [{"prefix": "/up", "service": "user-service", "strip_prefix": true}],
 "rate_limit": {"requests_per_second": 0}}
JSON
gw_port=$(free_port)
start gateway "$build/services/gateway/gateway" --port "$gw_port" --registry "$registry" \
  --routes "$work/routes.json" --threads "$threads" --access-log false --log-level warn "${gw_tls[@]}"
gw_pid=$!
url="$scheme://127.0.0.1:$gw_port/up/health"
wait_http "$url"
wrk -t1 -c50 -d2s "$url" >/dev/null

# Wait on the sampler's PID only: a bare `wait` would wait for the servers.
call_graph=(-g)
[ -n "${PERF_CALL_GRAPH:-}" ] && call_graph=(--call-graph "$PERF_CALL_GRAPH")
perf record -F 2000 "${call_graph[@]}" -p "$gw_pid" -o "$out/perf.data" -- sleep "$duration" >/dev/null 2>&1 &
sampler=$!
wrk -t1 -c50 -d"${duration}s" "$url" >"$out/wrk-perf.txt"
wait "$sampler"
timeout "$((duration + 2))" strace -c -f -p "$gw_pid" -o "$out/strace.txt" 2>/dev/null &
sampler=$!
wrk -t1 -c50 -d"${duration}s" "$url" >"$out/wrk-strace.txt"
wait "$sampler" || true
calls=(recvfrom sendto sendmsg io_uring_enter epoll_wait epoll_ctl)
events=()
for call in "${calls[@]}"; do events+=(-e "syscalls:sys_enter_$call"); done
perf stat -x, -o "$out/perf-stat.txt" "${events[@]}" -e syscalls:sys_exit_recvfrom \
  --filter 'ret < 0' -p "$gw_pid" -- sleep "$duration" >/dev/null 2>&1 &
sampler=$!
wrk -t1 -c50 -d"${duration}s" "$url" >"$out/wrk-stat.txt"
wait "$sampler"
requests=$(awk '/requests in/ {print $1}' "$out/wrk-stat.txt")
awk -F, -v n="$requests" '$3 ~ /^syscalls:/ {
    name = $3; sub(/^syscalls:sys_(enter|exit)_/, "", name)
    if ($3 ~ /sys_exit_recvfrom/) name = "recvfrom failed (EAGAIN and others)"
    printf "%-40s %8.3f per request\n", name, $1 / n
  }' "$out/perf-stat.txt" >"$out/syscalls.txt"
echo "system calls per request ($requests requests, perf stat):"
cat "$out/syscalls.txt"
echo "perf: $out/perf.data ($(awk '/^Requests\/sec:/ {print $2}' "$out/wrk-perf.txt") requests/s while sampled)"
echo "strace: $out/strace.txt ($(awk '/requests in/ {print $1}' "$out/wrk-strace.txt") requests while traced)"
perf report -i "$out/perf.data" --no-children --sort dso -g none 2>/dev/null | grep -E '^ +[0-9]' | head -8
