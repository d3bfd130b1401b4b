#!/usr/bin/env bash
# CPU instructions per request on the two hot paths, counted by callgrind:
# unlike requests/s on a shared machine, instruction counts repeat to within
# a fraction of a percent from run to run, so they compare code before and
# after a change.
#
#   bench/callgrind_per_request.sh gateway     [BUILD_DIR] [SECONDS]
#   bench/callgrind_per_request.sh gateway-tls [BUILD_DIR] [SECONDS]
#   bench/callgrind_per_request.sh orders      [BUILD_DIR] [SECONDS]
#   (defaults: build/release 20)
#
# gateway: wrk → gateway (under callgrind; 1 I/O thread, no access log, rate
#   limiting off, route /up → user-service as in run_gateway_bench.sh) →
#   user-service (native) GET /health.
# gateway-tls: the same over TLS, as run_gateway_bench.sh TLS=1: a throwaway
#   CA (openssl CLI, EC P-256), wrk → gateway HTTPS (--tls-cert/--tls-key),
#   gateway → user-service HTTPS (user-service --tls-cert/--tls-key, verified
#   by the gateway against the CA: --tls-ca), keep-alive both sides, so the
#   count is the per-request record-layer cost (no handshakes after warm-up).
#   The gateway's /metrics is read over HTTPS too (curl trusts the CA).
# orders: wrk → order-service → user-service, both under callgrind (1 I/O
#   thread each, access logs on, as in run_services_bench.sh), POST /api/orders.
#
# Each process runs under `valgrind --tool=callgrind`; after a warm-up its
# counters are zeroed (callgrind_control -z), wrk -t1 -c10 runs for SECONDS,
# the counters are dumped (callgrind_control -d) and divided by the number of
# requests the server counted in between (its own /metrics). All threads of a
# process are counted (the db pool's too). Output: instructions per request
# per process, and the dumps (for callgrind_annotate) are kept in OUT_DIR
# (default: a temp dir that is printed). Everything started is stopped by PID.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:?usage: $0 gateway|gateway-tls|orders [BUILD_DIR] [SECONDS]}
build=${2:-$root/build/release}
seconds=${3:-20}
out=${OUT_DIR:-$(mktemp -d /tmp/disco-callgrind-XXXXXX)}
mkdir -p "$out"
for tool in etcd wrk valgrind callgrind_control python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

stop_wait=100 wait_tries=600  # valgrind starts and stops slowly
. "$(dirname "$0")/lib.sh"
callgrind() {  # name: the command line prefix for a process counted by callgrind
  echo valgrind --tool=callgrind --callgrind-out-file="$out/$1.%p.out"
}
# requests counted by a server's /metrics: sum of http_server_requests_total
# samples whose labels contain $2
served() {
  curl -fs "$1/metrics" | awk -v want="$2" \
    '$1 ~ /^http_server_requests_total\{/ && index($1, want) { s += $2 } END { printf "%d\n", s }'
}
# zero the counters of the callgrind'ed PIDs, run wrk, dump them
measure() {  # url count_filter metrics_base wrk-args...
  local url=$1 filter=$2 base=$3; shift 3
  wrk -t1 -c10 -d3s "$@" "$url" >/dev/null 2>&1  # warm-up: pools, caches, JIT-free but lazy init
  local before after
  before=$(served "$base" "$filter")
  for pid in "${counted[@]}"; do callgrind_control -z "$pid" >/dev/null 2>&1; done
  wrk -t1 -c10 -d"${seconds}s" "$@" "$url" >"$work/wrk.txt" 2>&1
  for pid in "${counted[@]}"; do callgrind_control -d "$pid" >/dev/null 2>&1; done
  after=$(served "$base" "$filter")
  echo $((after - before))
}
instructions() {  # pid: Ir of its last dump (all threads)
  local total=0 f n
  for f in "$out"/*."$1".out*; do
    [ -f "$f" ] || continue
    n=$(awk '/^summary:|^totals:/ {print $2; exit}' "$f")
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

start_etcd cg
export DISCO_JWT_SECRET=callgrind-secret-0123456789-abcdefghijklmnopqrstuvwxyz
user_port=$(free_port)
counted=()

if [ "$mode" = gateway ] || [ "$mode" = gateway-tls ]; then
  scheme=http user_tls=() gw_tls=()
  if [ "$mode" = gateway-tls ]; then
    make_bench_certs  # bench/lib.sh: as run_gateway_bench.sh TLS=1
    scheme=https
    user_tls=(--tls-cert "$work/user-service.pem" --tls-key "$work/user-service.key")
    gw_tls=(--tls-cert "$work/proxy.pem" --tls-key "$work/proxy.key" --tls-ca "$work/ca.pem")
  fi
  start user "$build/services/user/user-service" --port "$user_port" --db "$work/users.db" \
    --threads 1 --access-log false --log-level warn "${user_tls[@]}"
  wait_http "$scheme://127.0.0.1:$user_port/health"
  cat >"$work/routes.json" <<EOF
{"routes": [{"prefix": "/up", "service": "user-service", "strip_prefix": true}],
 "rate_limit": {"requests_per_second": 0}}
EOF
  gw_port=$(free_port)
  # shellcheck disable=SC2046
  start gateway $(callgrind gateway) "$build/services/gateway/gateway" --port "$gw_port" \
    --routes "$work/routes.json" --threads 1 --access-log false --log-level warn "${gw_tls[@]}"
  counted=("${pids[-1]}")
  wait_http "$scheme://127.0.0.1:$gw_port/up/health"
  n=$(measure "$scheme://127.0.0.1:$gw_port/up/health" 'route="/up/{rest...}"' "$scheme://127.0.0.1:$gw_port")
  ir=$(instructions "${counted[0]}")
  echo "$mode: $n requests, $ir instructions, $((ir / n)) instructions/request (dumps in $out)"
elif [ "$mode" = orders ]; then
  order_port=$(free_port)
  # shellcheck disable=SC2046
  start user $(callgrind user) "$build/services/user/user-service" --host 127.0.0.1 --port "$user_port" \
    --db "$work/users.db" --threads 1 --bcrypt-cost 4 --log-level warn
  user_pid=${pids[-1]}
  # shellcheck disable=SC2046
  start order $(callgrind order) "$build/services/order/order-service" --host 127.0.0.1 --port "$order_port" \
    --db "$work/orders.db" --threads 1 --log-level warn
  order_pid=${pids[-1]}
  counted=("$order_pid" "$user_pid")
  wait_http "http://127.0.0.1:$user_port/health"
  wait_http "http://127.0.0.1:$order_port/health"
  password=callgrind-password-1
  curl -fs -XPOST "http://127.0.0.1:$user_port/api/users/register" -H 'Content-Type: application/json' \
    -d "{\"username\":\"cgbench\",\"password\":\"$password\",\"email\":\"cg@example.com\"}" >/dev/null
  TOKEN=$(curl -fs -XPOST "http://127.0.0.1:$user_port/api/users/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"cgbench\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  export TOKEN
  n=$(measure "http://127.0.0.1:$order_port" 'status="201"' "http://127.0.0.1:$order_port" \
    -s "$root/bench/wrk/create_order.lua")
  ir_order=$(instructions "$order_pid")
  ir_user=$(instructions "$user_pid")
  echo "orders: $n created; order-service $((ir_order / n)) + user-service $((ir_user / n)) =" \
    "$(((ir_order + ir_user) / n)) instructions/order (dumps in $out)"
else
  echo "unknown mode $mode (gateway|gateway-tls|orders)" >&2
  exit 2
fi
