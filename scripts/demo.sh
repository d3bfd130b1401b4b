#!/usr/bin/env bash
# The demo command (README quick start): installs, builds (Release), starts a
# local registry and registers instances, then shows discovery at work.
#
#   scripts/demo.sh            start the demo (etcd) and leave it running
#   scripts/demo.sh stop       stop everything the demo started (by PID)
#   scripts/demo.sh status     show what the demo runs
#
# Environment: DISCO_DEMO_ETCD_PORT (default 2379; the peer port is +1).
# Everything it starts is recorded in .run/demo/*.pid and logs in .run/demo/*.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run="$root/.run/demo"
build="$root/build/release"
etcd_port=${DISCO_DEMO_ETCD_PORT:-2379}
registry="etcd://127.0.0.1:$etcd_port"

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# A PID file holds "pid command-name"; a process is ours only if both match,
# so a recycled PID is never signalled.
ours() {
  local file=$1 pid name
  read -r pid name < "$file" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ] && echo "$pid"
}

start_bg() {  # start_bg NAME COMMAND... : runs in the background, logs to NAME.log
  local name=$1; shift
  "$@" >"$run/$name.log" 2>&1 &
  local pid=$!
  disown "$pid"  # the shell must not report its death: the demo kills some on purpose
  echo "$pid $(basename "$1" | cut -c1-15)" > "$run/$name.pid"
}

stop_all() {
  [ -d "$run" ] || { echo "demo: nothing to stop"; return 0; }
  local file pid
  # Registrants first (they deregister on SIGTERM), the registry last.
  for file in $(ls "$run"/*.pid 2>/dev/null | grep -v registry) "$run"/registry.pid; do
    [ -f "$file" ] || continue
    if pid=$(ours "$file"); then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      echo "stopped $(basename "$file" .pid) (pid $pid)"
    fi
    rm -f "$file"
  done
}

status() {
  local file pid any=0
  for file in "$run"/*.pid; do
    [ -f "$file" ] || continue
    any=1
    if pid=$(ours "$file"); then echo "running  $(basename "$file" .pid) (pid $pid)"; else echo "gone     $(basename "$file" .pid)"; fi
  done
  [ $any = 1 ] || echo "demo: nothing running"
}

case "${1:-start}" in
  stop) stop_all; exit 0 ;;
  status) status; exit 0 ;;
  start) ;;
  -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
  *) fail "unknown command '$1' (start, stop, status)" ;;
esac

say "install dependencies"
scripts/install-deps.sh
say "build (Release)"
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" || fail "build failed"
disco="$build/tools/disco/disco"

stop_all >/dev/null 2>&1 || true
mkdir -p "$run"
say "start etcd on 127.0.0.1:$etcd_port"
if (exec 3<>/dev/tcp/127.0.0.1/"$etcd_port") 2>/dev/null; then
  fail "port $etcd_port is taken; set DISCO_DEMO_ETCD_PORT to a free port"
fi
rm -rf "$run/etcd-data"
start_bg registry etcd --name demo --data-dir "$run/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
  --initial-cluster "demo=http://127.0.0.1:$((etcd_port + 1))"
for _ in $(seq 100); do
  "$disco" --registry "$registry" --timeout-ms 500 list >/dev/null 2>&1 && break
  sleep 0.1
done
"$disco" --registry "$registry" list >/dev/null || fail "etcd did not start; see $run/registry.log"

export DISCO_REGISTRY="$registry"
say "register two instances of 'hello' (each a 'disco register' process keeping its lease alive)"
start_bg hello-1 "$disco" register hello --id hello-1 --address 127.0.0.1 --port 7001 --ttl 3 --tag v1
start_bg hello-2 "$disco" register hello --id hello-2 --address 127.0.0.1 --port 7002 --ttl 3 --tag v1 --weight 3
start_bg watch "$disco" watch hello
for _ in $(seq 50); do [ "$("$disco" list hello --json | grep -o '"id"' | wc -l)" = 2 ] && break; sleep 0.1; done

say "disco list hello"
"$disco" list hello
say "disco pick hello --count 4                          (round robin)"
"$disco" pick hello --count 4
say "disco pick hello --policy weighted_round_robin --count 8   (hello-2 has weight 3)"
"$disco" pick hello --policy weighted_round_robin --count 8 2>/dev/null || echo "(policy not built yet)"

say "kill -9 hello-1: its lease expires after the TTL (3 s) and every watcher sees it go"
kill -KILL "$(ours "$run/hello-1.pid")"; rm -f "$run/hello-1.pid"
for _ in $(seq 100); do [ "$("$disco" list hello --json | grep -o '"id"' | wc -l)" = 1 ] && break; sleep 0.1; done
say "what 'disco watch hello' printed"
cat "$run/watch.log"

cat <<SUMMARY

The demo is running:
  etcd          $registry      (log: $run/registry.log)
  hello-2       registered by 'disco register' (log: $run/hello-2.log)
  disco watch   following 'hello' (log: $run/watch.log)
Try:   export DISCO_REGISTRY=$registry
       $disco list hello
       $disco register hello --id hello-3 --address 127.0.0.1 --port 7003
Stop:  scripts/demo.sh stop
SUMMARY
