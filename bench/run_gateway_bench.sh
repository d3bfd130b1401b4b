#!/usr/bin/env bash
# Gateway vs nginx vs HAProxy vs direct, in one run (issues 7 and 19).
#
#   bench/run_gateway_bench.sh [BUILD_DIR] [DURATION_S] [CONNECTIONS]
#   (defaults: build/default 10 50; THREADS=n (default 1) gives the gateway
#   --threads n, nginx n worker processes and HAProxy nbthread n)
#   TLS=1: everything over TLS (issue 14): wrk → proxy HTTPS, proxy → upstream
#   HTTPS verified against a throwaway CA (openssl, EC P-256, TLS 1.3), the
#   proxies' upstream TLS sessions kept alive and resumed; then new TLS
#   handshakes per second per core of the gateway, nginx and HAProxy
#   answering /health themselves, every request on a new connection
#   (wrk -H 'Connection: close'; wrk resumes no session: full handshakes).
#   UNBATCHED=1: one more path, a second gateway with --send-batching false
#   (one send per message instead of sends in batches), in the same rounds.
#   UPSTREAM=static (plain HTTP only): the upstream is a second nginx (one
#   worker) answering /health itself, registered in etcd as
#   "static-upstream" with `disco register`, instead of user-service (it
#   costs CPU 0 more per request than user-service does). The direct path
#   then measures that nginx.
#   UPSTREAM=tiny (plain HTTP only): the upstream is bench/tiny_upstream.c
#   (compiled here with cc), a fixed answer from one epoll loop, registered
#   as "tiny-upstream". It costs about what user-service costs (most of it
#   is the loopback send), so pinned CPU 0 still fills first; with QUOTA it
#   takes user-service out of the comparison.
#   BASELINE=DIR: one more path, a gateway built in DIR (another checkout's
#   build, say the commit before a change), in the same rounds: a change's
#   effect measured against the code before it on the same noise.
#   PIN=1: each proxy runs alone on CPU 1, while wrk, user-service and etcd share CPU 0
#   (taskset). Unpinned, three busy processes share two cores as the
#   scheduler decides, round by round, and that sharing moves the ratios by
#   ±15 %; pinned, the proxy has a core of its own, but CPU 0 (wrk, the
#   upstream and the kernel's work for them) is then full behind every
#   proxy (docs/benchmarks.md, "Which core is full"), so requests/s
#   measures what each proxy's traffic costs CPU 0; the proxy's own cost is
#   its CPU per request. The direct path has wrk and user-service on one
#   core: no ceiling.
#   QUOTA=P (with PIN=1): each proxy may use P % of CPU 1 (a cgroup v1 CPU
#   quota, 10 ms periods, one cgroup per proxy), as a gateway with a
#   Kubernetes CPU limit of P/100 cores is: the proxy's own cost per
#   request is then the bound, so requests/s measures the
#   proxy. The "CPU 0 and CPU 1 busy" line shows which core was full.
#   ONLY=PATH (direct, nginx, haproxy, gateway, gateway-unbatched or
#   gateway-baseline): measures that path alone, its rounds back to back:
#   whether a slow stretch of the host (a minute or more, docs/benchmarks.md,
#   "A CPU limit, again") or the proxy itself moves its figures; the ratio
#   columns then show "—".
#   SYSCALLS=1: perf stat counts, in each proxied round, the proxy's system
#   calls, its epoll_wait calls (turns of its event loop, blocking or not)
#   and its context switches (times it slept), per request: how much work
#   each turn of its loop got. The tracepoints cost each system call a
#   little, so such a run's requests/s and CPU figures are not comparable
#   with a run without it. Needs root (or perf_event_paranoid ≤ -1).
#
# Starts on free loopback ports, each stopped by its PID at the end:
#   etcd (temp data dir), one user-service (the upstream unless UPSTREAM says otherwise, 1 I/O thread),
#   the gateway (1 I/O thread, rate limiting off, no access log) routing
#   /up/* to user-service with the prefix stripped, and Debian's nginx
#   (THREADS workers, access log off) and Debian's HAProxy (nbthread
#   THREADS, http-reuse always) as the equivalent reverse proxies: keep-alive
#   upstream pools, HTTP/1.1 to the upstream.
# Then wrk -t1 -cN --latency on GET /health: direct to user-service, through
# nginx, HAProxy and the gateway (/up/health), each after a short warm-up,
# rounds interleaved (direct, nginx, haproxy, gateway) ROUNDS times so that
# machine noise hits all alike; prints a markdown table (median of the
# rounds) with requests/s, p99, ratios to nginx and HAProxy, the gateway's
# overhead per request over direct, each round's tail (p95, p99.9, max;
# bench/wrk/percentiles.lua) and in how many rounds the gateway's p99 was at
# or below HAProxy's and nginx's of the same round, and the CPU time per request of the
# process that answers wrk (user-service for direct, else the proxy with its
# worker processes: user + system time from /proc, so the kernel's share is
# visible too).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/default}
duration=${2:-10}
connections=${3:-50}
rounds=${ROUNDS:-3}
threads=${THREADS:-1}
tls=${TLS:-0}
unbatched=${UNBATCHED:-0}
baseline=${BASELINE:-}
upstream=${UPSTREAM:-user-service}
case "$upstream" in
  user-service) ;;
  static | tiny) [ "$tls" = 0 ] || { echo "UPSTREAM=$upstream is plain HTTP only" >&2; exit 1; } ;;
  *) echo "UPSTREAM=$upstream: user-service, static or tiny" >&2; exit 1 ;;
esac
syscalls=${SYSCALLS:-0}
only=${ONLY:-}
case "$only" in
  '' | direct | nginx | haproxy | gateway | gateway-unbatched | gateway-baseline) ;;
  *) echo "ONLY=$only: direct, nginx, haproxy, gateway, gateway-unbatched or gateway-baseline" >&2; exit 1 ;;
esac
count_syscalls=0  # on only in the proxied rounds, not the TLS handshake ones
pin=${PIN:-0}
quota=${QUOTA:-}
if [ -n "$quota" ]; then
  [ "$pin" = 1 ] || { echo "QUOTA needs PIN=1" >&2; exit 1; }
  [[ "$quota" =~ ^[1-9][0-9]*$ ]] && [ "$quota" -ge 10 ] && [ "$quota" -le 100 ] ||
    { echo "QUOTA=$quota: a percentage of one core, 10 to 100" >&2; exit 1; }
  [ -w /sys/fs/cgroup/cpu ] || { echo "QUOTA needs cgroup v1's cpu controller at /sys/fs/cgroup/cpu (root)" >&2; exit 1; }
fi
# Commands prefixed with this run on CPU 1 (PIN=1), else anywhere; the rest
# inherit this script's CPU 0.
on_proxy_core=()
if [ "$pin" = 1 ]; then
  [ "$(nproc)" -ge 2 ] || { echo "PIN=1 needs two cores" >&2; exit 1; }
  [ "$threads" = 1 ] || { echo "PIN=1 gives the proxy one core: THREADS=1 only" >&2; exit 1; }
  on_proxy_core=(taskset -c 1)
  taskset -pc 0 $$ >/dev/null  # this script and all it starts (etcd, wrk, user-service, curl)
fi

for tool in etcd nginx haproxy wrk python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done
gateway=$build/services/gateway/gateway
user_service=$build/services/user/user-service
[ -x "$gateway" ] && [ -x "$user_service" ] || { echo "build first: $gateway, $user_service" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"

# A proxy is its process and that process's children (nginx's workers).
proxy_pids() { echo "$1" $(ps -o pid= --ppid "$1"); }
# QUOTA: the cgroup of path $1 (this run's own, removed at exit).
cgroup_of() { echo "/sys/fs/cgroup/cpu/$(basename "$work")-$1"; }

# QUOTA: puts proxy $2 into a cgroup of its own that may use $quota % of a
# core.
limit_cpu() {
  [ -n "$quota" ] || return 0
  local group pid
  group=$(cgroup_of "$1")
  mkdir "$group"
  rmdirs+=("$group")
  echo 10000 >"$group/cpu.cfs_period_us"
  echo $((quota * 100)) >"$group/cpu.cfs_quota_us"
  for pid in $(proxy_pids "$2"); do echo "$pid" >"$group/cgroup.procs"; done
}

start_etcd bench
registry=$DISCO_REGISTRY

scheme=http user_tls=() gw_tls=() nginx_listen='' nginx_upstream='' haproxy_bind='' haproxy_server=''
if [ "$tls" = 1 ]; then
  # A CA, user-service's certificate and the proxies' (bench/lib.sh).
  make_bench_certs
  cat "$work/proxy.pem" "$work/proxy.key" >"$work/proxy-haproxy.pem"
  scheme=https
  user_tls=(--tls-cert "$work/user-service.pem" --tls-key "$work/user-service.key")
  gw_tls=(--tls-cert "$work/proxy.pem" --tls-key "$work/proxy.key" --tls-ca "$work/ca.pem")
  nginx_listen=" ssl;
    ssl_certificate $work/proxy.pem;
    ssl_certificate_key $work/proxy.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m"
  nginx_upstream="
      proxy_ssl_trusted_certificate $work/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name user-service;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;"
  haproxy_bind=" ssl crt $work/proxy-haproxy.pem"
  haproxy_server=" ssl verify required ca-file $work/ca.pem verifyhost user-service sni str(user-service)"
fi

user_port=$(free_port)
start user env DISCO_JWT_SECRET=bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz \
  "$user_service" --port "$user_port" --registry "$registry" --db "$work/users.db" --threads 1 \
  --access-log false --log-level warn "${user_tls[@]}"
user_pid=$!
wait_http "$scheme://127.0.0.1:$user_port/health"

# The start of an nginx.conf for an nginx in "$work/$1" with $2 workers;
# the caller makes "$work/$1/logs" first and adds the http block.
nginx_conf_head() {
  cat <<EOF
worker_processes $2;
daemon off;
user root;
error_log $work/$1/logs/error.log warn;
pid $work/$1/nginx.pid;
events { worker_connections 4096; }
EOF
}

# What every proxy forwards to, and what the direct path measures.
up_port=$user_port up_pid=$user_pid up_service=user-service
if [ "$upstream" = static ]; then
  up_port=$(free_port)
  mkdir -p "$work/static/logs"
  { nginx_conf_head static 1; cat <<EOF; } >"$work/static/nginx.conf"
http {
  access_log off;
  server {
    listen 127.0.0.1:$up_port;
    location = /health { return 200 '{"status":"ok"}'; }
  }
}
EOF
  start static-upstream nginx -p "$work/static" -c "$work/static/nginx.conf" -e "$work/static/logs/error.log"
  up_pid=$!
  wait_http "http://127.0.0.1:$up_port/health"
  up_service=static-upstream
fi
if [ "$upstream" = tiny ]; then
  up_port=$(free_port)
  command -v cc >/dev/null || { echo "UPSTREAM=tiny needs a C compiler (cc)" >&2; exit 1; }
  cc -O2 "$root/bench/tiny_upstream.c" -o "$work/tiny_upstream"
  start tiny-upstream "$work/tiny_upstream" "$up_port"
  up_pid=$!
  wait_http "http://127.0.0.1:$up_port/health"
  up_service=tiny-upstream
fi
if [ "$upstream" != user-service ]; then
  start register "$build/tools/disco/disco" --registry "$registry" register "$up_service" \
    --id "$up_service-1" --address 127.0.0.1 --port "$up_port"
fi

cat >"$work/routes.json" <<EOF
{"routes": [{"prefix": "/up", "service": "$up_service", "strip_prefix": true}],
 "rate_limit": {"requests_per_second": 0}}
EOF
gw_port=$(free_port)
start gateway "${on_proxy_core[@]}" "$gateway" --port "$gw_port" --registry "$registry" --routes "$work/routes.json" \
  --threads "$threads" --access-log false --log-level warn "${gw_tls[@]}"
gw_pid=$!
wait_http "$scheme://127.0.0.1:$gw_port/health"
wait_http "$scheme://127.0.0.1:$gw_port/up/health"
limit_cpu gateway "$gw_pid"
if [ "$unbatched" = 1 ]; then
  gw1_port=$(free_port)
  start gateway-unbatched "${on_proxy_core[@]}" "$gateway" --port "$gw1_port" --registry "$registry" \
    --routes "$work/routes.json" --threads "$threads" --access-log false --log-level warn \
    --send-batching false "${gw_tls[@]}"
  gw1_pid=$!
  wait_http "$scheme://127.0.0.1:$gw1_port/up/health"
  limit_cpu gateway-unbatched "$gw1_pid"
fi

if [ -n "$baseline" ]; then
  [ -x "$baseline/services/gateway/gateway" ] || { echo "BASELINE=$baseline: no services/gateway/gateway there" >&2; exit 1; }
  gw2_port=$(free_port)
  start gateway-baseline "${on_proxy_core[@]}" "$baseline/services/gateway/gateway" --port "$gw2_port" \
    --registry "$registry" --routes "$work/routes.json" --threads "$threads" --access-log false \
    --log-level warn "${gw_tls[@]}"
  gw2_pid=$!
  wait_http "$scheme://127.0.0.1:$gw2_port/up/health"
  limit_cpu gateway-baseline "$gw2_pid"
fi

nginx_port=$(free_port)
# Idle upstream connections nginx keeps: at least the connections wrk
# opens, as the gateway's pool (256) and HAProxy (no limit) keep them;
# fewer, and every answer past the limit closes its upstream connection.
nginx_keepalive=$((connections > 64 ? connections : 64))
mkdir -p "$work/nginx/logs"
{ nginx_conf_head nginx "$threads"; cat <<EOF; } >"$work/nginx/nginx.conf"
http {
  access_log off;
  upstream backend {
    server 127.0.0.1:$up_port;
    keepalive $nginx_keepalive;
  }
  server {
    listen 127.0.0.1:$nginx_port$nginx_listen;
    location = /health { return 200 '{"status":"ok"}'; }
    location /up/ {
      proxy_pass $scheme://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";$nginx_upstream
    }
  }
}
EOF
start nginx "${on_proxy_core[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log"
nginx_pid=$!
wait_http "$scheme://127.0.0.1:$nginx_port/up/health"
limit_cpu nginx "$nginx_pid"

haproxy_port=$(free_port)
cat >"$work/haproxy.cfg" <<EOF
global
  nbthread $threads
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend bench
  bind 127.0.0.1:$haproxy_port$haproxy_bind
  http-request return status 200 content-type application/json string '{"status":"ok"}' if { path /health }
  default_backend user
backend user
  http-request replace-path /up(/.*) \\1
  server user1 127.0.0.1:$up_port$haproxy_server
EOF
start haproxy "${on_proxy_core[@]}" haproxy -db -f "$work/haproxy.cfg"
haproxy_pid=$!
wait_http "$scheme://127.0.0.1:$haproxy_port/up/health"
limit_cpu haproxy "$haproxy_pid"

# CPU time (user and system, in clock ticks) proxy $1 has used so far.
cpu_ticks() {
  local pid
  for pid in $(proxy_pids "$1"); do awk '{print $14, $15}' "/proc/$pid/stat"; done |
    awk '{u += $1; s += $2} END {print u, s}'
}
# Busy and total clock ticks of CPU 0 and of CPU 1 so far (/proc/stat: busy
# is user, nice, system, irq and softirq; total adds idle, iowait and steal):
# whether a round's bound was the proxy's core or the core wrk and the
# upstream share, and what the path cost that core per request.
cores_ticks() {
  awk '/^cpu[01] / {printf "%d %d ", $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}
# QUOTA: periods the proxy's cgroup has run in, been throttled in, and its
# time throttled (ns) so far; "0 0 0" without a quota or a cgroup (direct).
throttle_stat() {
  local group
  group=$(cgroup_of "$1")
  if [ -n "$quota" ] && [ -r "$group/cpu.stat" ]; then
    awk '{v[$1] = $2} END {print v["nr_periods"] + 0, v["nr_throttled"] + 0, v["throttled_time"] + 0}' "$group/cpu.stat"
  else
    echo 0 0 0
  fi
}
# wrk's summary: "Requests/sec: N" and the latency distribution's "99% X".
wrk_extra=()                 # more wrk options (the handshake runs: Connection: close)
results=$work/results.txt
tails=$work/tails.txt  # each round's tail (bench/wrk/percentiles.lua), "-" where wrk gave none
run_wrk() {  # name url pid-whose-CPU-time-is-measured
  wrk -t1 -c"$connections" -d2s "${wrk_extra[@]}" "$2" >/dev/null 2>&1  # warm-up: pools, caches
  local cpu_before cpu_after cores_before cores_after
  local throttle_before throttle_after
  cpu_before=$(cpu_ticks "$3")
  cores_before=$(cores_ticks)
  throttle_before=$(throttle_stat "$1")
  local counter=''
  if [ "$count_syscalls" = 1 ] && [ "$1" != direct ]; then
    perf stat -x, -o "$work/$1.perf" -e raw_syscalls:sys_enter -e syscalls:sys_enter_epoll_wait \
      -e context-switches -p "$(proxy_pids "$3" | tr ' ' ,)" \
      -- sleep "$duration" >/dev/null 2>"$work/$1.perf.err" &
    counter=$!
  fi
  wrk -t1 -c"$connections" -d"${duration}s" --latency -s "$root/bench/wrk/percentiles.lua" "${wrk_extra[@]}" "$2" \
    >"$work/$1.txt" 2>&1
  if [ -n "$counter" ] && ! wait "$counter"; then
    echo "$1: perf stat failed: $(head -c 300 "$work/$1.perf.err")" >&2
    exit 1
  fi
  throttle_after=$(throttle_stat "$1")
  cores_after=$(cores_ticks)
  cpu_after=$(cpu_ticks "$3")
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/$1.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$work/$1.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/$1.txt")
  local errors
  errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/$1.txt")
  [ -z "$errors" ] || echo "$1: $errors" >&2
  local requests
  requests=$(awk '/requests in/ {print $1}' "$work/$1.txt")
  if [ -n "$counter" ]; then
    # A count perf could not take ("<not counted>") shows as n/a, not 0.
    awk -F, -v name="$1" -v n="${requests:-0}" '
      function per(x, digits) { return (x ~ /^[0-9]+$/ && n > 0) ? sprintf("%." digits "f", x / n) : "n/a" }
      $3 ~ /raw_syscalls:sys_enter/ {all = $1} $3 ~ /epoll_wait/ {ew = $1} $3 ~ /context-switches/ {cs = $1}
      END {print name, per(all, 2), per(ew, 3), per(cs, 3)}' "$work/$1.perf" >>"$work/syscalls.txt"
  fi
  # A round wrk saw errors in (fast 502s make a short tail) is marked, and
  # left out of the p99 comparison.
  awk -v name="$1" -v errors="${errors:+1}" '
    $1 == "PERCENTILES" {line = name " " $2 " " $3 " " $4 " " $5}
    END {print (line ? line : name " - - - -"), (errors ? "errors" : "ok")}' "$work/$1.txt" >>"$tails"
  echo "$1 $rps $p50 $p99 $requests $cpu_before $cpu_after $cores_before $cores_after $throttle_before $throttle_after" >>"$results"
}

if [ "$syscalls" = 1 ]; then
  perf stat -e raw_syscalls:sys_enter -e syscalls:sys_enter_epoll_wait -e context-switches -- true \
    >/dev/null 2>"$work/perf-check.err" ||
    { echo "SYSCALLS=1: perf cannot count system calls here (root?): $(head -c 300 "$work/perf-check.err")" >&2; exit 1; }
  count_syscalls=1
fi
# A path of the rounds: all of them, or the ONLY one.
measure() {  # name url pid
  [ -z "$only" ] || [ "$only" = "$1" ] || return 0
  run_wrk "$@"
}
[ "$only" != gateway-unbatched ] || [ "$unbatched" = 1 ] || { echo "ONLY=gateway-unbatched needs UNBATCHED=1" >&2; exit 1; }
[ "$only" != gateway-baseline ] || [ -n "$baseline" ] || { echo "ONLY=gateway-baseline needs BASELINE" >&2; exit 1; }
for round in $(seq 1 "$rounds"); do
  measure direct "$scheme://127.0.0.1:$up_port/health" "$up_pid"
  measure nginx "$scheme://127.0.0.1:$nginx_port/up/health" "$nginx_pid"
  measure haproxy "$scheme://127.0.0.1:$haproxy_port/up/health" "$haproxy_pid"
  measure gateway "$scheme://127.0.0.1:$gw_port/up/health" "$gw_pid"
  if [ "$unbatched" = 1 ]; then measure gateway-unbatched "$scheme://127.0.0.1:$gw1_port/up/health" "$gw1_pid"; fi
  if [ -n "$baseline" ]; then measure gateway-baseline "$scheme://127.0.0.1:$gw2_port/up/health" "$gw2_pid"; fi
done
count_syscalls=0

python3 - "$work/results.txt" "$rounds" "$duration" "$connections" "$(getconf CLK_TCK)" "$threads" "$tls" "$pin" "$quota" <<'EOF'
import os, statistics, sys
path, rounds, duration, connections = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
tick_us = 1e6 / float(sys.argv[5])
threads = sys.argv[6]
def us(text):
    units = {"us": 1, "ms": 1000, "s": 1_000_000}
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(text)
runs = {}
cores = {}  # name -> [(CPU 0 busy %, CPU 1 busy %, CPU 0 µs/request)] per round
throttles = {}  # QUOTA: name -> [(% of periods throttled, mean ms throttled when throttled)] per round
for line in open(path):
    name, rps, p50, p99, requests, user0, sys0, user1, sys1, *rest = line.split()
    n = float(requests)
    ticks, throttle = rest[:-6], list(map(float, rest[-6:]))
    if throttle[0] != throttle[3]:
        periods, throttled, ns = (throttle[i + 3] - throttle[i] for i in range(3))
        throttles.setdefault(name, []).append((100 * throttled / periods, ns / 1e6 / max(throttled, 1)))
    if len(ticks) != 8:  # a one-CPU machine: no CPU 1
        ticks = ["0"] * 8
    b0, t0, b1, t1, b0_, t0_, b1_, t1_ = map(float, ticks)
    cores.setdefault(name, []).append((100 * (b0_ - b0) / max(t0_ - t0, 1),
                                       100 * (b1_ - b1) / max(t1_ - t1, 1),
                                       (b0_ - b0) * tick_us / n))
    cpu_user = (float(user1) - float(user0)) * tick_us / n
    cpu_sys = (float(sys1) - float(sys0)) * tick_us / n
    runs.setdefault(name, []).append((float(rps), us(p99), us(p50), cpu_user, cpu_sys))
med = {n: tuple(statistics.median(x[i] for x in v) for i in range(5)) for n, v in runs.items()}
print(f"THREADS={threads}: wrk -t1 -c{connections} -d{duration}s, {rounds} "
      f"{'interleaved rounds' if len(runs) > 1 else 'rounds back to back'}, median shown "
      f"(each round: {', '.join(f'{n} ' + '/'.join(f'{x[0]:.0f}' for x in v) for n, v in runs.items())} req/s)")
print()
print(f"CPU µs/request, each round: {', '.join(f'{n} ' + '/'.join(f'{x[3] + x[4]:.1f}' for x in v) for n, v in runs.items())}")
print()
print(f"p99 µs, each round: {', '.join(f'{n} ' + '/'.join(f'{x[1]:.0f}' for x in v) for n, v in runs.items())}")
print()
print(f"CPU 0 and CPU 1 busy %, each round: {', '.join(f'{n} ' + ' '.join(f'{x[0]:.0f}/{x[1]:.0f}' for x in v) for n, v in cores.items())}")
print()
print(f"CPU 0's time per request (µs; with PIN=1 wrk's, the upstream's and the kernel's there), each round: "
      f"{', '.join(f'{n} ' + '/'.join(f'{x[2]:.1f}' for x in v) for n, v in cores.items())}")
print()
def per_round(file, convert=list):
    """name -> one entry per round, from a file of "name value..." lines beside results.txt."""
    rows = {}
    full = os.path.join(os.path.dirname(path), file)
    if os.path.exists(full):
        for line in open(full):
            name, *values = line.split()
            rows.setdefault(name, []).append(convert(values))
    return rows
calls = per_round("syscalls.txt")
if calls:
    print("SYSCALLS: the proxy's system calls / epoll_wait calls / context switches per request, each round: "
          f"{', '.join(f'{n} ' + ' '.join('/'.join(x) for x in v) for n, v in calls.items())}")
    print()
# (p95, p99, p99.9, max) µs, or None for a round wrk gave no tail for or saw errors in
tails = per_round("tails.txt", lambda v: tuple(map(int, v[:4])) if v[4] == "ok" and "-" not in v else None)
if tails:
    print("Tail µs, p95/p99/p99.9/max, each round (n/a: wrk errors or no tail): "
          f"{', '.join(f'{n} ' + ' '.join('/'.join(map(str, x)) if x else 'n/a' for x in v) for n, v in tails.items())}")
    print()
    # The medians of one binary measured twice in one run were 43 % apart in
    # p99 (docs/benchmarks.md, "the same binary twice"): what a slow stretch
    # of the host does to whichever rounds it overlaps. So p99s are compared
    # round by round, each pair on the same stretch.
    for mine in ("gateway", "gateway-unbatched", "gateway-baseline"):
        for ref in ("haproxy", "nginx"):
            if mine not in tails or ref not in tails:
                continue
            pairs = [(g, r) for g, r in zip(tails[mine], tails[ref]) if g and r]
            left_out = max(len(tails[mine]), len(tails[ref])) - len(pairs)
            lower = sum(g[1] <= r[1] for g, r in pairs)
            print(f"Rounds with the {mine}'s p99 at or below {ref}'s in the same round: {lower} of {len(pairs)}"
                  + (f" ({left_out} round(s) left out: wrk errors or no tail)" if left_out else ""))
    print()
if throttles:
    print("QUOTA: % of 10 ms periods throttled / mean time throttled when throttled (ms; a throttle "
          "within one period lasts at most 10 − quota/10 ms, a longer one paid back a run past the "
          "quota), each round: "
          f"{', '.join(f'{n} ' + ' '.join(f'{x[0]:.0f}%/{x[1]:.2f}' for x in v) for n, v in throttles.items())}")
    print()
print(f"TLS={'1: HTTPS to the proxy and from the proxy to user-service' if sys.argv[7] == '1' else '0'}, "
      f"PIN={'1: each proxy alone on CPU 1; wrk, the upstream and etcd on CPU 0' if sys.argv[8] == '1' else '0'}"
      f"{f', QUOTA={sys.argv[9]}: each proxy may use {sys.argv[9]} % of CPU 1' if sys.argv[9] else ''}")
print()
print("| path | requests/s | p50 (µs) | p99 (µs) | vs nginx | vs HAProxy | CPU µs/request (user + sys) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name in ("direct", "nginx", "haproxy", "gateway", "gateway-unbatched", "gateway-baseline"):
    if name not in med:
        continue
    rps, p99, p50, cpu_user, cpu_sys = med[name]
    ratio = lambda ref: f"{rps / med[ref][0]:.2f}×" if ref in med else "—"
    print(f"| {name} | {rps:,.0f} | {p50:,.0f} | {p99:,.0f} | {ratio('nginx')} "
          f"| {ratio('haproxy')} | {cpu_user + cpu_sys:.1f} ({cpu_user:.1f} + {cpu_sys:.1f}) |")
if not all(n in med for n in ("direct", "nginx", "haproxy", "gateway")):
    sys.exit(0)  # ONLY: no ratios
overhead = lambda n: 1e6 / med[n][0] - 1e6 / med["direct"][0]
print()
print(f"gateway/nginx throughput {med['gateway'][0] / med['nginx'][0]:.2f}×, "
      f"gateway/HAProxy {med['gateway'][0] / med['haproxy'][0]:.2f}×, "
      f"p99 gateway {med['gateway'][1]:,.0f} µs vs nginx {med['nginx'][1]:,.0f} µs; "
      f"time per request over direct (1/throughput): gateway +{overhead('gateway'):.1f} µs, "
      f"nginx +{overhead('nginx'):.1f} µs")
EOF

[ "$tls" = 1 ] || exit 0
# New TLS handshakes: each proxy answers /health itself, every request on a
# new connection; CPU time of the answering process per handshake gives
# handshakes per second per core.
wrk_extra=(-H 'Connection: close')
results=$work/handshakes.txt
tails=/dev/null  # handshake rounds' tails are not compared
for _ in $(seq 1 "$rounds"); do
  run_wrk nginx "https://127.0.0.1:$nginx_port/health" "$nginx_pid"
  run_wrk haproxy "https://127.0.0.1:$haproxy_port/health" "$haproxy_pid"
  run_wrk gateway "https://127.0.0.1:$gw_port/health" "$gw_pid"
done
python3 - "$results" "$(getconf CLK_TCK)" "$connections" "$duration" <<'EOF'
import statistics, sys
path, ticks, connections, duration = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = {}
for line in open(path):
    name, rps, p50, p99, requests, user0, sys0, user1, sys1, *_ = line.split()
    cpu_s = (float(user1) - float(user0) + float(sys1) - float(sys0)) / ticks
    runs.setdefault(name, []).append((float(rps), float(requests) / cpu_s if cpu_s else 0))
med = {n: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
       for n, v in runs.items()}
print()
print(f"New TLS handshakes (full, TLS 1.3, ECDSA P-256; wrk -t1 -c{connections} -d{duration}s "
      "-H 'Connection: close' on /health answered by the server itself), median of the rounds "
      f"(each round: {', '.join(f'{n} ' + '/'.join(f'{x[0]:.0f}' for x in v) for n, v in runs.items())}/s):")
print()
print("| server | handshakes/s | per core (handshakes per CPU second of the server) | vs nginx per core |")
print("| --- | ---: | ---: | ---: |")
for name in ("nginx", "haproxy", "gateway"):
    rps, per_core = med[name]
    print(f"| {name} | {rps:,.0f} | {per_core:,.0f} | {per_core / med['nginx'][1]:.2f}× |")
EOF
