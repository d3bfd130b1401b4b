#!/usr/bin/env bash
# Would a shared (Redis) cache of user lookups help order-service? (issue 17)
#
#   bench/run_user_check_bench.sh [BUILD_DIR]      default BUILD_DIR: build/default
#
# Creating an order confirms the user: order-service calls user-service's
# GET /api/users/me through discovery. A cache would replace that call with a
# Redis GET. This measures, in one run, on free loopback ports (etcd,
# user-service, order-service and redis-server, each stopped by PID on exit):
#   create_order     POST /api/orders (JWT check, the user check, the insert)
#   user_check       GET /api/users/me on user-service: what the check costs
#                    the caller, measured from outside (wrk)
#   redis_get        redis-benchmark GET: what the cache lookup would cost
#   get_order        GET /api/orders/1 without and with --redis (the revocation
#                    check: one MGET per authenticated request)
# each sequential (-c1: the path's own latency) and loaded (-cN: throughput).
# Environment: DURATION (default 5s), CONNECTIONS (default 16).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/default}
duration=${DURATION:-5s}
connections=${CONNECTIONS:-16}
user_bin=$build/services/user/user-service
order_bin=$build/services/order/order-service
for b in "$user_bin" "$order_bin"; do
  [ -x "$b" ] || { echo "missing $b: build first" >&2; exit 1; }
done
for tool in wrk redis-server redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done
. "$(dirname "$0")/lib.sh"

start_etcd bench
redis_port=$(free_port)
start redis redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no
export DISCO_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
user_port=$(free_port); order_port=$(free_port); order_redis_port=$(free_port)
common=(--host 127.0.0.1 --threads 1 --log-level warn --access-log false)
start user "$user_bin" "${common[@]}" --port "$user_port" --db "$work/users.db" --bcrypt-cost 4
start order "$order_bin" "${common[@]}" --port "$order_port" --db "$work/orders.db"
start order_redis "$order_bin" "${common[@]}" --port "$order_redis_port" --db "$work/orders.db" \
  --id order-redis --redis "redis://127.0.0.1:$redis_port"
for p in "$user_port" "$order_port" "$order_redis_port"; do wait_http "http://127.0.0.1:$p/health"; done

curl -fs -XPOST "http://127.0.0.1:$user_port/api/users/register" -H 'Content-Type: application/json' \
  -d '{"username":"bench","password":"bench-password-1","email":"bench@example.com"}' >/dev/null
token=$(curl -fs -XPOST "http://127.0.0.1:$user_port/api/users/login" -H 'Content-Type: application/json' \
  -d '{"username":"bench","password":"bench-password-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export TOKEN=$token
curl -fs -XPOST "http://127.0.0.1:$order_port/api/orders" -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $token" -d '{"product":"warm-up","quantity":1,"price":"1.00"}' >/dev/null

wrk_run() {  # wrk_run NAME CONNECTIONS wrk-args...: "NAME c rps p50 p99"
  local name=$1 c=$2; shift 2
  wrk -t1 -c"$c" -d"$duration" --latency "$@" > "$work/wrk.txt" 2>&1
  local rps p50 p99 bad
  read -r rps p50 p99 bad < <(wrk_figures "$work/wrk.txt")
  echo "| $name | $c | $rps | $p50 | $p99 | $bad |"
}
redis_run() {  # redis_run CONNECTIONS
  redis-benchmark -p "$redis_port" -c "$1" -n $(( $1 == 1 ? 20000 : 200000 )) -t get -d 120 --csv \
    > "$work/rb.csv" 2>/dev/null
  python3 - "$work/rb.csv" "$1" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
head, row = rows[0], rows[1]
v = dict(zip(head, row))
print(f"| redis_get (120 B) | {sys.argv[2]} | {float(v['rps']):.0f} | {float(v['p50_latency_ms']):.3f} | {float(v['p99_latency_ms']):.3f} | 0 |")
PY
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)  wrk -t1 -d$duration, services --threads 1"
echo
echo "| path | connections | requests/s | p50 ms | p99 ms | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for c in 1 "$connections"; do
  wrk_run create_order "$c" -s "$root/bench/wrk/create_order.lua" "http://127.0.0.1:$order_port"
  WRK_PATH=/api/users/me wrk_run user_check "$c" -s "$root/bench/wrk/get_with_token.lua" "http://127.0.0.1:$user_port"
  redis_run "$c"
  WRK_PATH=/api/orders/1 wrk_run "get_order" "$c" -s "$root/bench/wrk/get_with_token.lua" "http://127.0.0.1:$order_port"
  WRK_PATH=/api/orders/1 wrk_run "get_order --redis" "$c" -s "$root/bench/wrk/get_with_token.lua" "http://127.0.0.1:$order_redis_port"
done
