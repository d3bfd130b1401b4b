#!/usr/bin/env bash
# The services benchmark of issue 4: wrk -t1 -c50 on loopback against
# user-service and order-service, in the same run as bench/hello_server (a
# hello-world Beast server with the same threading: the ceiling).
#
#   bench/run_services_bench.sh [BUILD_DIR]      default BUILD_DIR: build/release
#
# Environment: DURATION (wrk -d, default 10s), CONNECTIONS (default 50),
# SERVER_THREADS (I/O threads of every server, default 1), SQLITE_SYNC (normal|full,
# default: the services' default, normal), BCRYPT_COST (default 12), DB_CONNECTIONS (database threads and
# connections of each service; default: the services' default), DB (a --db URL
# both services use, e.g. a mysql:// or postgresql:// server of your own; default:
# SQLite files in the temp dir).
# Starts its own etcd, hello_server, user-service and order-service on free
# 127.0.0.1 ports in a temp dir, and stops each by its PID on exit.
# Prints a Markdown table (requests/s, p50, p99, ratio to the ceiling). ROUNDS
# (default 3): each target runs that many times, each right after a ceiling
# run; the median pair (by ratio) is reported.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/release}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-50}
threads=${SERVER_THREADS:-1}
sqlite_sync=${SQLITE_SYNC:-normal}
bcrypt_cost=${BCRYPT_COST:-12}
db_connections=${DB_CONNECTIONS:-}
user_bin=$build/services/user/user-service
order_bin=$build/services/order/order-service
hello_bin=$build/bench/hello_server
for b in "$user_bin" "$order_bin" "$hello_bin"; do
  [ -x "$b" ] || { echo "missing $b: build first (cmake --preset release && cmake --build --preset release)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"

start_etcd bench

export DISCO_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
hello_port=$(free_port); user_port=$(free_port); order_port=$(free_port)
start hello "$hello_bin" --port "$hello_port" --threads "$threads"
common=(--host 127.0.0.1 --threads "$threads" --sqlite-sync "$sqlite_sync" --log-level warn)
[ -n "$db_connections" ] && common+=(--db-connections "$db_connections")
start user "$user_bin" "${common[@]}" --port "$user_port" --db "${DB:-$work/users.db}" --bcrypt-cost "$bcrypt_cost"
start order "$order_bin" "${common[@]}" --port "$order_port" --db "${DB:-$work/orders.db}"
wait_http "http://127.0.0.1:$hello_port/"
wait_http "http://127.0.0.1:$user_port/health"
wait_http "http://127.0.0.1:$order_port/health"

password="bench-password-1"
curl -fs -XPOST "http://127.0.0.1:$user_port/api/users/register" -H 'Content-Type: application/json' \
  -d "{\"username\":\"bench\",\"password\":\"$password\",\"email\":\"bench@example.com\"}" > "$work/user.json"
user_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/user.json")
token=$(curl -fs -XPOST "http://127.0.0.1:$user_port/api/users/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"bench\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export TOKEN=$token USERNAME=bench PASSWORD=$password
# One order through discovery before measuring: the resolver and pools are warm.
curl -fs -XPOST "http://127.0.0.1:$order_port/api/orders" -H 'Content-Type: application/json' \
  -H "Authorization: Bearer $token" -d '{"product":"warm-up","quantity":1,"price":"1.00"}' >/dev/null

# run NAME wrk-args...: runs wrk, prints "NAME rps p50 p99"
run() {
  local name=$1; shift
  wrk -t1 -c"$connections" -d"$duration" --latency "$@" > "$work/wrk-$name.txt" 2>&1
  python3 - "$work/wrk-$name.txt" "$name" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n = float(m.group(1)); return n / 1000 if m.group(2) == "us" else n * 1000 if m.group(2) == "s" else n
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)

print(sys.argv[2], f"{rps:.0f}", f"{p50:.2f}", f"{p99:.2f}", errors.group(1) if errors else "0")
PY
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# The machine is shared, so load drifts: each target runs ROUNDS times, each
# time right after a ceiling run, and the ratio is taken per pair; the table
# gives the median pair (by ratio).
rounds=${ROUNDS:-3}
pair() {  # pair NAME wrk-args... : prints the median "name rps p50 p99 errs | hello_rps"
  local name=$1; shift
  local lines=()
  for _ in $(seq "$rounds"); do
    local hello target
    hello=$(run hello "http://127.0.0.1:$hello_port/")
    target=$(run "$name" "$@")
    lines+=("$target $(echo "$hello" | awk '{print $4, $2}')")
  done
  printf '%s\n' "${lines[@]}" | awk '{ print $2 / $NF, $0 }' | sort -g | awk -v n="$rounds" 'NR == int((n + 1) / 2) { $1 = ""; print }'
}
results=()
results+=("$(pair health "http://127.0.0.1:$user_port/health")")
results+=("$(WRK_PATH=/api/users/$user_id pair get_user -s "$root/bench/wrk/get_with_token.lua" "http://127.0.0.1:$user_port")")
results+=("$(pair create_order -s "$root/bench/wrk/create_order.lua" "http://127.0.0.1:$order_port")")
# /health while logins (bcrypt cost $bcrypt_cost) run flat out on the same instance.
wrk -t1 -c8 -d"$(( ${duration%s} * rounds * 2 + 4 ))s" -s "$root/bench/wrk/login.lua" "http://127.0.0.1:$user_port" \
  > "$work/wrk-logins.txt" 2>&1 &
login_wrk=$!
sleep 2
results+=("$(pair health_during_logins "http://127.0.0.1:$user_port/health")")
wait "$login_wrk" || true
logins=$(sed -n 's/Requests\/sec:[[:space:]]*//p' "$work/wrk-logins.txt")
login_errors=$(sed -n 's/.*Non-2xx or 3xx responses: //p' "$work/wrk-logins.txt")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  host: $(nproc) cores, $(uname -r)  wrk -t1 -c$connections -d$duration, $rounds rounds"
case "${DB:-}" in mysql://*) db_label=MariaDB ;; postgres*) db_label=PostgreSQL ;; *) db_label=SQLite ;; esac
echo "storage: $db_label  server I/O threads: $threads  sqlite synchronous: $sqlite_sync  bcrypt cost: $bcrypt_cost  db connections: ${db_connections:-default}"
echo "load average before: $load_before  after: $load_after"
echo
echo "| target | requests/s | p50 ms | p99 ms | ceiling req/s (same pair) | ceiling p99 ms | vs ceiling | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for line in "${results[@]}"; do
  read -r name rps p50 p99 errs ceiling_p99 ceiling <<<"$line"
  ratio=$(python3 -c "print(f'{100*$rps/$ceiling:.0f} %')")
  case $name in
    health) label="user-service GET /health" ;;
    get_user) label="user-service GET /api/users/{id} (JWT)" ;;
    create_order) label="order-service POST /api/orders (JWT, user check via discovery, ${db_label} insert)" ;;
    health_during_logins) label="user-service GET /health while logins run flat out" ;;
  esac
  echo "| $label | $rps | $p50 | $p99 | $ceiling | $ceiling_p99 | $ratio | $errs |"
done
echo
echo "logins alongside: ${logins:-?} req/s (bcrypt cost $bcrypt_cost, wrk -c8), non-2xx: ${login_errors:-0}"
