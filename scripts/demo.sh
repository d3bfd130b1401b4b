#!/usr/bin/env bash
# The demo (the README's first command). On a fresh Debian 12 machine it
# installs what it needs, builds (Release), starts a local registry, two
# user-service and two order-service instances and the gateway, runs the demo
# client through the gateway, kills one user-service instance with kill -9
# while the client keeps calling (failover), and leaves everything running.
#
#   scripts/demo.sh [start] [options]   start the demo (stops a previous run first)
#   scripts/demo.sh stop                stop everything the demo started (by PID)
#   scripts/demo.sh status              what runs where, and whether it is healthy
#
# Options of start:
#   --registry etcd|consul   the registry to start (default etcd; consul is a dev
#                            agent from .tools/consul, see scripts/install-consul.sh)
#   --db sqlite|mysql        the services' storage (default sqlite: one file per
#                            service in the run dir; mysql: a MariaDB server of its
#                            own, on a free port with its data in the run dir)
#   --no-install             do not run scripts/install-deps.sh
#   --no-build               use the binaries already in the build dir
#   --no-failover            skip the kill -9 scene (the client runs once)
#   --redis                  also start a redis-server (free port, AOF in the run dir)
#                            and give every service --redis: shared rate limits, logout
#   --tls                    everything over TLS: a throwaway CA and one certificate
#                            per service made with openssl in <run dir>/tls, the
#                            registry with client certificates and its access control
#                            on (etcd: one user per service, may write only its own
#                            keys; Consul: ACLs, one token per service likewise),
#                            mutual TLS between the services, the gateway on HTTPS
#                            (scripts/demo-tls.sh)
#
# Environment (defaults in brackets):
#   DISCO_DEMO_REGISTRY         etcd or consul, like --registry [etcd]
#   DISCO_DEMO_DB               sqlite or mysql, like --db [sqlite]
#   DISCO_DEMO_MYSQL_PORT       MariaDB's port with --db mysql [a free one]
#   DISCO_DEMO_BUILD_DIR        the build dir to build into / take binaries from [build/release]
#   DISCO_DEMO_RUN_DIR          PID files, logs, databases, JWT secret [.run/demo]
#   DISCO_DEMO_JOBS             parallel build jobs [nproc]
#   DISCO_DEMO_ETCD_PORT        etcd client port [2379]
#   DISCO_DEMO_ETCD_PEER_PORT   etcd peer port [client port + 1]
#   DISCO_DEMO_CONSUL_PORT      Consul HTTP port [8500]
#   DISCO_DEMO_CONSUL_SERVER_PORT, DISCO_DEMO_CONSUL_SERF_PORT
#                               Consul's server RPC and Serf LAN ports [8300, 8301]
#   DISCO_DEMO_USER_PORTS       the two user-service ports [5001,5011]
#   DISCO_DEMO_ORDER_PORTS      the two order-service ports [5002,5012]
#   DISCO_DEMO_GATEWAY_PORT     the gateway's port [8080]
#   DISCO_DEMO_PORTS=free       pick free ports for every port not set above
#   DISCO_DEMO_TTL              registration TTL in seconds: how soon a killed
#                               instance leaves the registry [5]
#   DISCO_DEMO_REDIS_PORT       redis-server's port with --redis [a free one]
# Everything runs on 127.0.0.1. A start records each process it starts in
# <run dir>/<name>.pid ("PID command-name start-time"); PID and start time (from
# /proc/PID/stat) name that process from its fork on, and never a later one
# that reuses the PID. start waits for each process to answer (registry 15 s,
# each instance 20 s) and reports "exited at start" only once it is really
# gone; on failure it stops what it started. stop sends SIGTERM to the
# recorded processes only, waits up to 10 s, then SIGKILL and up to 5 s more,
# and removes a PID file only once its process is gone. status shows each as
# running, starting (not yet at its exec) or gone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

run=${DISCO_DEMO_RUN_DIR:-$root/.run/demo}
case "$run" in /*) ;; *) run="$root/$run" ;; esac
build=${DISCO_DEMO_BUILD_DIR:-$root/build/release}
case "$build" in /*) ;; *) build="$root/$build" ;; esac

bold=; dim=; red=; green=; reset=
if [ -t 1 ]; then bold=$'\033[1m'; dim=$'\033[2m'; red=$'\033[31m'; green=$'\033[32m'; reset=$'\033[0m'; fi

# Paths inside the checkout are shown relative to it.
rel() { case "$1" in "$root"/*) echo "${1#"$root"/}" ;; *) echo "$1" ;; esac; }
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$reset"; }
note() { printf '%s>>> %s%s\n' "$bold" "$*" "$reset"; }
fail() {  # fail MESSAGE [LOG]: what failed and where to look, then stop what this run started
  printf '\n%sdemo: FAILED: %s%s\n' "$red" "$1" "$reset" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    printf '%s--- last lines of %s ---%s\n' "$dim" "$(rel "$2")" "$reset" >&2
    tail -n 15 "$2" >&2
    printf '%s--- full log: %s%s\n' "$dim" "$(rel "$2")" "$reset" >&2
  fi
  if [ "${started_any:-0}" = 1 ]; then
    echo "demo: stopping what this run started (logs stay in $(rel "$run"))" >&2
    stop_all >/dev/null 2>&1 || true
  fi
  exit 1
}

# A PID file holds "PID command-name start-time". The start time (field 22 of
# /proc/PID/stat, clock ticks after boot) is set at fork and kept across exec,
# so PID and start time name one process for its whole life: from the fork,
# while /proc/PID/comm still shows this script (a loaded machine can take a
# while to reach the exec), to its exit, and never a later process that reuses
# the PID. A zombie (killed, not yet reaped by its parent) counts as gone.

# proc_stat PID: sets p_state and p_start from /proc/PID/stat; false if no such process.
proc_stat() {
  local line rest f
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
  rest=${line##*) }  # the command name in (...) may hold spaces
  read -ra f <<<"$rest"
  p_state=${f[0]} p_start=${f[19]:-}
  [ -n "$p_start" ]
}

# alive PID START NAME: true while the recorded process exists and is not a zombie.
alive() {
  local comm
  proc_stat "$1" || return 1
  case "$p_state" in Z|X|x) return 1 ;; esac
  if [ -n "$2" ]; then
    [ "$p_start" = "$2" ]
  else
    # A PID file from an older demo.sh has no start time: the command must match.
    { read -r comm < "/proc/$1/comm"; } 2>/dev/null && [ "$comm" = "$3" ]
  fi
}

# read_pid_file FILE: sets r_pid r_name r_start (empty for an old two-field file).
read_pid_file() {
  r_pid='' r_name='' r_start=''
  { read -r r_pid r_name r_start < "$1"; } 2>/dev/null || [ -n "$r_pid" ] || return 1
  [[ "$r_pid" =~ ^[0-9]+$ ]]
}

# ours FILE: prints the recorded PID while that process is alive.
ours() {
  read_pid_file "$1" && alive "$r_pid" "$r_start" "$r_name" && echo "$r_pid"
}

# phase FILE: running, or starting (alive but not yet its recorded command:
# between the fork and the exec), or gone.
phase() {
  local comm=
  if ! { read_pid_file "$1" && alive "$r_pid" "$r_start" "$r_name"; }; then echo gone; return 0; fi
  { read -r comm < "/proc/$r_pid/comm"; } 2>/dev/null || true
  if [ "$comm" = "$r_name" ]; then echo running; else echo starting; fi
}

# record NAME PID COMMAND: writes NAME.pid (whole, by rename: a reader never
# sees half a file). An instant exit already reaped leaves no start time: "-"
# matches no process, so the file reads as gone.
record() {
  local start=-
  proc_stat "$2" && start=$p_start
  echo "$2 ${3:0:15} $start" > "$run/.$1.pid.tmp"
  mv -f "$run/.$1.pid.tmp" "$run/$1.pid"
}

# forget FILE PID: removes a PID file, only if it still names PID and that
# process is gone.
forget() {
  read_pid_file "$1" || { rm -f "$1"; return 0; }
  [ "$r_pid" = "$2" ] || return 0
  alive "$r_pid" "$r_start" "$r_name" && return 1
  rm -f "$1"
}

# start_bg NAME COMMAND...: runs COMMAND in the background (stdin /dev/null,
# output to NAME.log, immune to the terminal's hangup) and records its PID.
start_bg() {
  local name=$1; shift
  ( trap '' HUP; exec "$@" ) </dev/null >"$run/$name.log" 2>&1 &
  local pid=$!
  disown "$pid"  # no "Killed" report from the shell: the demo kills one on purpose
  record "$name" "$pid" "${1##*/}"
  started_any=1
}

pid_of() { ours "$run/$1.pid" 2>/dev/null || true; }

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# stop_files FILE...: SIGTERM to every recorded process still alive, up to
# 10 s for them to go, SIGKILL to the rest, up to 5 s more. Only recorded
# PIDs are signalled, each checked (PID and start time) just before; a PID
# file is removed only once its process is gone. False if one survives.
stop_files() {
  local file name pids=() starts=() names=() files=() killed=() i stage deadline rc=0 left
  for file in "$@"; do
    [ -f "$file" ] || continue
    name=${file##*/}; name=${name%.pid}
    if ! read_pid_file "$file"; then rm -f "$file"; continue; fi
    if alive "$r_pid" "$r_start" "$r_name"; then
      kill -TERM "$r_pid" 2>/dev/null || true
      pids+=("$r_pid"); starts+=("$r_start"); names+=("$name"); files+=("$file"); killed+=("")
    else
      echo "$name (pid $r_pid) had exited already"
      forget "$file" "$r_pid" || true
    fi
  done
  for stage in TERM KILL; do
    deadline=$(($(now_ms) + 5000))
    [ "$stage" = TERM ] && deadline=$((deadline + 5000))
    while :; do
      left=0
      for i in "${!pids[@]}"; do alive "${pids[$i]}" "${starts[$i]}" "${names[$i]}" && left=1; done
      [ $left = 0 ] && break
      [ "$(now_ms)" -ge $deadline ] && break
      sleep 0.1
    done
    [ $left = 0 ] && break
    if [ "$stage" = TERM ]; then
      for i in "${!pids[@]}"; do
        if alive "${pids[$i]}" "${starts[$i]}" "${names[$i]}"; then
          kill -KILL "${pids[$i]}" 2>/dev/null || true
          killed[i]=" with SIGKILL (SIGTERM left it running for 10 s)"
        fi
      done
    fi
  done
  for i in "${!pids[@]}"; do
    if alive "${pids[$i]}" "${starts[$i]}" "${names[$i]}"; then
      echo "demo: ${names[$i]} (pid ${pids[$i]}) still runs after SIGKILL; $(rel "${files[$i]}") stays" >&2
      rc=1
    else
      echo "stopped ${names[$i]} (pid ${pids[$i]})${killed[$i]}"
      stopped_any=1
      forget "${files[$i]}" "${pids[$i]}" || true
    fi
  done
  return $rc
}

stop_all() {
  [ -d "$run" ] || { echo "demo: nothing to stop"; return 0; }
  local file files=() rc=0
  stopped_any=0
  # Everything that registers (services deregister on SIGTERM) before the registry.
  for file in "$run"/*.pid; do
    [ -f "$file" ] && [ "$file" != "$run/registry.pid" ] && [ "$file" != "$run/mariadb.pid" ] && files+=("$file")
  done
  stop_files "${files[@]}" || rc=1
  stop_files "$run/mariadb.pid" || rc=1  # after the services that use it
  stop_files "$run/registry.pid" || rc=1
  [ $stopped_any = 1 ] || echo "demo: nothing was running"
  return $rc
}

# wait_gone PID START TENTHS: true once the recorded process is gone.
wait_gone() {
  local _
  for _ in $(seq "$3"); do alive "$1" "$2" "" || return 0; sleep 0.1; done
  ! alive "$1" "$2" ""
}

status() {
  if ! compgen -G "$run/*.pid" >/dev/null || [ ! -f "$run/demo.env" ]; then
    echo "demo: nothing running (no PID files in $(rel "$run"))"
    return 0
  fi
  local registry_url='' port_gateway_1='' redis_url='' tls_dir='' scheme=http
  # shellcheck disable=SC1091
  . "$run/demo.env"
  local tls_args=()
  [ -n "$tls_dir" ] && scheme=https tls_args=(--cacert "$tls_dir/ca.pem" --cert "$tls_dir/client.pem" --key "$tls_dir/client.key")
  printf '  %-16s %s\n' registry "$registry_url"
  if [ -n "$redis_url" ]; then printf '  %-16s %s\n' redis "$redis_url"; fi
  local file name port health state
  for file in "$run"/*.pid; do
    [ -f "$file" ] || continue
    name=$(basename "$file" .pid)
    port=$(sed -n "s/^port_${name//-/_}=//p" "$run/demo.env")
    state=$(phase "$file")
    read_pid_file "$file" || true
    if [ "$state" != gone ]; then
      health=
      if [ -n "$port" ]; then
        health=$(curl "${tls_args[@]}" -s -m 2 -o /dev/null -w '%{http_code}' "$scheme://127.0.0.1:$port/health" || true)
        health="  /health $health"
      fi
      printf '  %-16s %-8s pid %-7s %s%s\n' "$name" "$state" "$r_pid" "${port:+$scheme://127.0.0.1:$port}" "$health"
    else
      printf '  %-16s %sgone%s     pid %s exited\n' "$name" "$red" "$reset" "${r_pid:-?}"
    fi
  done
  [ -n "${port_gateway_1:-}" ] && printf '  %-16s %s\n' dashboard "$scheme://127.0.0.1:$port_gateway_1/dashboard"
  return 0
}

# --- arguments -----------------------------------------------------------------
command=start
registry_kind=${DISCO_DEMO_REGISTRY:-etcd}
db_kind=${DISCO_DEMO_DB:-sqlite}
install=1 do_build=1 failover=1 with_redis=0 with_tls=0
while [ $# -gt 0 ]; do
  case "$1" in
    start|stop|status) command=$1 ;;
    --registry) [ $# -ge 2 ] || fail "--registry needs etcd or consul"; registry_kind=$2; shift ;;
    --registry=*) registry_kind=${1#--registry=} ;;
    --db) [ $# -ge 2 ] || fail "--db needs sqlite or mysql"; db_kind=$2; shift ;;
    --db=*) db_kind=${1#--db=} ;;
    --no-install) install=0 ;;
    --no-build) do_build=0 ;;
    --no-failover) failover=0 ;;
    --redis) with_redis=1 ;;
    --tls) with_tls=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$command" in
  stop) stop_all || exit 1; exit 0 ;;
  status) status; exit 0 ;;
esac
case "$registry_kind" in etcd|consul) ;; *) echo "demo: --registry must be etcd or consul" >&2; exit 2 ;; esac
case "$db_kind" in sqlite|mysql) ;; *) echo "demo: --db must be sqlite or mysql" >&2; exit 2 ;; esac

trap 'fail "interrupted"' INT TERM
set -E
trap 'fail "line $LINENO: \"$BASH_COMMAND\" failed (exit $?)"' ERR
mkdir -p "$run"
steps=6
[ $failover = 1 ] && steps=7
step=0
next() { step=$((step + 1)); say "$step/$steps $*"; }

over_tls=
[ $with_tls = 0 ] || over_tls=", everything over TLS"
printf '%sdisco demo%s: registry %s, storage %s, run dir %s%s\n' "$bold" "$reset" "$registry_kind" "$db_kind" "$(rel "$run")" "$over_tls"

# --- 1. dependencies -------------------------------------------------------------
next "dependencies"
if [ $install = 1 ]; then
  start_s=$SECONDS
  echo "Debian packages and Consul (the first time takes a few minutes; log: $(rel "$run/install.log"))"
  scripts/install-deps.sh --demo >"$run/install.log" 2>&1 || fail "installing dependencies failed" "$run/install.log"
  grep -h '^install-deps: installing' "$run/install.log" | cut -c1-160 || true
  echo "ok ($((SECONDS - start_s)) s; log: $(rel "$run/install.log"))"
else
  echo "skipped (--no-install)"
fi
[ "$registry_kind" = consul ] && [ ! -x "$root/.tools/consul/bin/consul" ] &&
  fail "no Consul at .tools/consul/bin/consul: run scripts/install-consul.sh (or drop --no-install)"
[ "$db_kind" = mysql ] && ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ] &&
  fail "no mariadbd: install Debian's mariadb-server (scripts/install-deps.sh, or drop --no-install)"

# --- 2. build ----------------------------------------------------------------------
next "build (Release)"
disco="$build/tools/disco/disco"
user_bin="$build/services/user/user-service"
order_bin="$build/services/order/order-service"
gateway_bin="$build/services/gateway/gateway"
if [ $do_build = 1 ]; then
  start_s=$SECONDS
  jobs=${DISCO_DEMO_JOBS:-$(nproc 2>/dev/null || echo 2)}
  echo "building into $(rel "$build") with $jobs jobs (a few minutes the first time; log: $(rel "$run/build.log"))"
  # The release preset; a DISCO_DEMO_BUILD_DIR that is configured already is
  # built as it is (never reconfigured), a new one is configured for Release.
  {
    if [ -z "${DISCO_DEMO_BUILD_DIR:-}" ]; then cmake --preset release
    elif [ -f "$build/CMakeCache.txt" ]; then echo "using the configured $build"
    else cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISCO_BUILD_TESTS=OFF
    fi
  } >"$run/build.log" 2>&1 || fail "cmake configure failed" "$run/build.log"
  # The build's output goes to the log; a terminal sees its [n/m] counter.
  show_progress() {
    local line
    while IFS= read -r line; do
      printf '%s\n' "$line" >>"$run/build.log"
      if [ -t 1 ] && [[ "$line" =~ ^\[([0-9]+/[0-9]+)\] ]]; then
        printf '\r  [%s] %s s ' "${BASH_REMATCH[1]}" "$((SECONDS - start_s))"
      fi
    done
    if [ -t 1 ]; then printf '\r\033[K'; fi
  }
  if ! cmake --build "$build" -j "$jobs" --target disco_cli user_service order_service gateway 2>&1 | show_progress; then
    fail "the build failed" "$run/build.log"
  fi
  echo "ok ($((SECONDS - start_s)) s)"
else
  echo "skipped (--no-build); binaries from $(rel "$build")"
fi
for bin in "$disco" "$user_bin" "$order_bin" "$gateway_bin"; do
  [ -x "$bin" ] || fail "missing $(rel "$bin"): build first (drop --no-build, or set DISCO_DEMO_BUILD_DIR)"
done

# --- 3. ports, registry ------------------------------------------------------------
next "registry ($registry_kind)"
if compgen -G "$run/*.pid" >/dev/null; then
  stop_rc=0
  previous=$(stop_all 2>&1) || stop_rc=$?
  if grep -q '^stopped\|had exited\|still runs' <<<"$previous"; then
    echo "stopping the previous demo run first:"
    grep -v '^demo: nothing' <<<"$previous" | while read -r line; do echo "  $line"; done
  fi
  # Never start over a process that may still hold a port or the databases.
  [ $stop_rc = 0 ] || fail "a process of the previous run survived SIGKILL (see above); not starting over it"
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
chosen=" "
# pick_port OUT VARIABLE DEFAULT: OUT=$VARIABLE if set, else a free port with
# DISCO_DEMO_PORTS=free, else DEFAULT.
pick_port() {
  local value=${!2:-} _
  if [ -z "$value" ] && [ "${DISCO_DEMO_PORTS:-}" = free ]; then
    for _ in $(seq 500); do
      value=$((20000 + RANDOM % 12000))
      case "$chosen" in *" $value "*) value=; continue ;; esac
      port_in_use "$value" || break
      value=
    done
    [ -n "$value" ] || fail "no free port found"
  fi
  value=${value:-$3}
  if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
    fail "$2: '$value' is not a port"
  fi
  chosen+="$value "
  printf -v "$1" '%s' "$value"
}
# pick_two OUT1 OUT2 VARIABLE DEFAULT1 DEFAULT2: VARIABLE holds "PORT,PORT".
pick_two() {
  local value=${!3:-} first second
  if [ -n "$value" ]; then
    [[ "$value" =~ ^[0-9]+,[0-9]+$ ]] || fail "$3 must be two ports, like $4,$5"
    # shellcheck disable=SC2034  # read by pick_port through ${!2}
    first=${value%,*} second=${value#*,}
    pick_port "$1" first "$4"
    pick_port "$2" second "$5"
  else
    pick_port "$1" __none__ "$4"
    pick_port "$2" __none__ "$5"
  fi
}
etcd_port='' etcd_peer_port='' consul_port='' consul_server_port='' consul_serf_port=''
user_port_1='' user_port_2='' order_port_1='' order_port_2='' gateway_port=''
pick_port etcd_port DISCO_DEMO_ETCD_PORT 2379
pick_port etcd_peer_port DISCO_DEMO_ETCD_PEER_PORT $((etcd_port + 1))
pick_port consul_port DISCO_DEMO_CONSUL_PORT 8500
pick_port consul_server_port DISCO_DEMO_CONSUL_SERVER_PORT 8300
pick_port consul_serf_port DISCO_DEMO_CONSUL_SERF_PORT 8301
pick_two user_port_1 user_port_2 DISCO_DEMO_USER_PORTS 5001 5011
pick_two order_port_1 order_port_2 DISCO_DEMO_ORDER_PORTS 5002 5012
pick_port gateway_port DISCO_DEMO_GATEWAY_PORT 8080
mysql_port=''
# MariaDB gets a free port unless one is set: a MySQL of the machine's own
# often holds 3306.
if [ "$db_kind" = mysql ]; then DISCO_DEMO_PORTS=free pick_port mysql_port DISCO_DEMO_MYSQL_PORT 3306; fi
redis_port=''
[ $with_redis = 1 ] && DISCO_DEMO_PORTS=free pick_port redis_port DISCO_DEMO_REDIS_PORT 6379
ttl=${DISCO_DEMO_TTL:-5}

# Every port must be free before anything starts: say which one and what to set.
check_port() {  # check_port PORT WHAT VARIABLE
  port_in_use "$1" || return 0
  local holder
  holder=$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 |
           sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/\1, pid \2/' || true)
  fail "port $1 ($2) is taken${holder:+ by $holder}: set $3 to a free port, or DISCO_DEMO_PORTS=free to pick free ports"
}
if [ "$registry_kind" = etcd ]; then
  check_port "$etcd_port" "etcd" DISCO_DEMO_ETCD_PORT
  check_port "$etcd_peer_port" "etcd peer" DISCO_DEMO_ETCD_PEER_PORT
  registry="etcd://127.0.0.1:$etcd_port"
else
  check_port "$consul_port" "Consul HTTP" DISCO_DEMO_CONSUL_PORT
  check_port "$consul_server_port" "Consul server RPC" DISCO_DEMO_CONSUL_SERVER_PORT
  check_port "$consul_serf_port" "Consul Serf LAN" DISCO_DEMO_CONSUL_SERF_PORT
  registry="consul://127.0.0.1:$consul_port"
fi
check_port "$user_port_1" "user-service-1" DISCO_DEMO_USER_PORTS
check_port "$user_port_2" "user-service-2" DISCO_DEMO_USER_PORTS
check_port "$order_port_1" "order-service-1" DISCO_DEMO_ORDER_PORTS
check_port "$order_port_2" "order-service-2" DISCO_DEMO_ORDER_PORTS
check_port "$gateway_port" "gateway" DISCO_DEMO_GATEWAY_PORT
if [ "$db_kind" = mysql ]; then check_port "$mysql_port" "MariaDB" DISCO_DEMO_MYSQL_PORT; fi
[ $with_redis = 1 ] && check_port "$redis_port" "redis" DISCO_DEMO_REDIS_PORT

# The PID files left are only those of processes that are gone (stop_all
# removed the rest once they were); a live process never loses its file.
rm -f "$run"/*.log.prev "$run"/.*.pid.tmp
cat > "$run/demo.env" <<ENV
registry_kind=$registry_kind
registry_url=$registry
port_user_service_1=$user_port_1
port_user_service_2=$user_port_2
port_order_service_1=$order_port_1
port_order_service_2=$order_port_2
port_gateway_1=$gateway_port
db_kind=$db_kind
mysql_port=$mysql_port
redis_url=${redis_port:+redis://127.0.0.1:$redis_port}
tls_dir=${over_tls:+$run/tls}
ENV

# The disco CLI's registry URL, in its environment: with --tls it holds a password.
cli_registry=$registry
disco_reg() { DISCO_REGISTRY="$cli_registry" "$disco" "$@"; }
scheme=http
if [ "$registry_kind" = etcd ]; then
  rm -rf "$run/etcd-data"
  tls_etcd=(--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port")
  if [ $with_tls = 1 ]; then
    # shellcheck source=scripts/demo-tls.sh
    . "$root/scripts/demo-tls.sh"
    tls_make_certs
    tls_etcd_args "$etcd_port" "$etcd_peer_port"
    cli_registry="$registry?$(tls_query)"
    scheme=https
    echo "a throwaway CA and certificates for ${tls_names[*]} in $(rel "$tls_dir")"
  fi
  start_bg registry etcd --name demo --data-dir "$run/etcd-data" "${tls_etcd[@]}" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "demo=http://127.0.0.1:$etcd_peer_port"
else
  rm -rf "$run/consul-data"
  consul_http=(-http-port "$consul_port")
  if [ $with_tls = 1 ]; then
    # shellcheck source=scripts/demo-tls.sh
    . "$root/scripts/demo-tls.sh"
    tls_make_certs
    tls_consul_args "$consul_port"
    consul_http=("${tls_consul[@]}")
    cli_registry="$registry?$(tls_query)"
    scheme=https
    echo "a throwaway CA and certificates for ${tls_names[*]} in $(rel "$tls_dir")"
  fi
  start_bg registry "$root/.tools/consul/bin/consul" agent -dev -client 127.0.0.1 -bind 127.0.0.1 \
    -data-dir "$run/consul-data" "${consul_http[@]}" -server-port "$consul_server_port" \
    -serf-lan-port "$consul_serf_port" -serf-wan-port -1 -dns-port -1 -grpc-port -1
fi
# wait_ready NAME SECONDS WHAT COMMAND...: waits until COMMAND succeeds, for at
# most SECONDS. "exited at start" only once the process recorded as NAME is
# really gone (by PID and start time: one that has not reached its exec yet
# is still starting, not gone); at the deadline, says whether it still runs.
wait_ready() {
  local name=$1 seconds=$2 what=$3; shift 3
  local file="$run/$name.pid" t0 pid start comm
  t0=$(now_ms)
  read_pid_file "$file" || fail "$name: no PID file $(rel "$file")"
  pid=$r_pid start=$r_start comm=$r_name
  while :; do
    alive "$pid" "$start" "$comm" ||
      fail "$name (pid $pid) exited at start (gone after $(since "$t0") s of waiting for it)" "$run/$name.log"
    if "$@" >/dev/null 2>&1; then
      # Whoever answered, the recorded process must still be there.
      alive "$pid" "$start" "$comm" ||
        fail "$name (pid $pid) exited at start (gone after $(since "$t0") s of waiting for it)" "$run/$name.log"
      return 0
    fi
    [ "$(now_ms)" -lt $((t0 + seconds * 1000)) ] || break
    sleep 0.1
  done
  fail "$name (pid $pid, $(phase "$file")) did not $what within $seconds s" "$run/$name.log"
}
since() { local ms=$(($(now_ms) - $1)); echo "$((ms / 1000)).$((ms % 1000 / 100))"; }
wait_ready registry 15 "answer at $registry" disco_reg --timeout-ms 500 list
echo "$registry_kind answers at $registry (pid $(pid_of registry); log: $(rel "$run/registry.log"))"
if [ $with_tls = 1 ] && [ "$registry_kind" = etcd ]; then
  tls_etcd_auth "$etcd_port"
  cli_registry="$registry?$(tls_query viewer)"
  echo "etcd over TLS with client certificates (--client-cert-auth), access control on: users root," \
    "viewer (read-only) and one per service, which may write only under services/<service>/"
elif [ $with_tls = 1 ]; then
  tls_consul_acl "$consul_port"
  cli_registry="$registry?$(tls_query viewer)"
  echo "Consul over HTTPS with client certificates (verify_incoming), ACLs on (default deny): tokens" \
    "for viewer (read-only) and one per service, which may write only its own service"
fi

# --- 4. services --------------------------------------------------------------------
next "services: 2 × user-service, 2 × order-service, gateway"
# One secret for every instance: a token from either user-service verifies
# at both order-services and at the gateway's edge check.
if [ ! -s "$run/jwt-secret" ]; then
  (umask 077 && head -c 48 /dev/urandom | base64 -w0 > "$run/jwt-secret")
fi
common=(--registry-ttl "$ttl" --jwt-secret-file "$run/jwt-secret")
# start_service NAME BINARY ARGS...: an instance; its registry URL (with --tls,
# its own etcd user and password) in its environment, its certificate with --tls.
start_service() {
  local name=$1 service=${1%-[0-9]*} bin=$2; shift 2
  local tls_flags=()
  if [ $with_tls = 1 ]; then
    tls_flags=(--tls-cert "$tls_dir/$service.pem" --tls-key "$tls_dir/$service.key" --tls-ca "$tls_dir/ca.pem")
    # The services require client certificates (mutual TLS); the gateway
    # serves HTTPS to anyone (browsers, curl).
    [ "$service" != gateway ] && tls_flags+=(--tls-client-ca "$tls_dir/ca.pem")
    DISCO_REGISTRY="$registry?$(tls_query "$service")" start_bg "$name" "$bin" "$@" "${tls_flags[@]}"
  else
    DISCO_REGISTRY="$registry" start_bg "$name" "$bin" "$@"
  fi
}
if [ $with_redis = 1 ]; then
  # Shared by every instance: the gateway's rate limits and token revocations
  # (logout). The append-only file keeps revocations across a Redis restart.
  command -v redis-server >/dev/null || fail "--redis: no redis-server (apt-get install redis-server, or drop --no-install)"
  mkdir -p "$run/redis-data"
  start_bg redis redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$run/redis-data" \
    --save "" --appendonly yes --daemonize no
  wait_ready redis 15 "answer PING on port $redis_port" redis-cli -p "$redis_port" ping
  echo "redis answers at redis://127.0.0.1:$redis_port (pid $(pid_of redis); log: $(rel "$run/redis.log"))"
  common+=(--redis "redis://127.0.0.1:$redis_port")
fi
users_db="$run/users.db" orders_db="$run/orders.db"
if [ "$db_kind" = mysql ]; then
  # A MariaDB of the demo's own: a fresh data dir, InnoDB flushing its log at
  # every commit, one account "disco" with a random password that the
  # services read from a file (never on a command line).
  mdb="$run/mariadb"
  rm -rf "$mdb"
  mkdir -p "$mdb"
  (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$run/mysql-password")
  {
    echo "[mysqld]"
    echo "datadir=$mdb/data"
    echo "socket=$mdb/mysqld.sock"
    echo "port=$mysql_port"
    echo "bind-address=127.0.0.1"
    echo "pid-file=$mdb/mariadbd.pid"
    echo "skip-name-resolve"
    echo "innodb_flush_log_at_trx_commit=1"
    echo "innodb_buffer_pool_size=64M"
    echo "innodb_log_file_size=32M"
    # mariadbd refuses to run as root; it drops to the mysql user itself.
    if [ "$(id -u)" = 0 ]; then echo "user=mysql"; fi
  } > "$mdb/my.cnf"
  if [ "$(id -u)" = 0 ]; then chown -R mysql:mysql "$mdb"; fi
  mariadb-install-db --defaults-file="$mdb/my.cnf" --auth-root-authentication-method=normal \
    --skip-test-db >"$run/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed" "$run/mariadb-install.log"
  start_bg mariadb mariadbd --defaults-file="$mdb/my.cnf"
  wait_ready mariadb 30 "answer on $mdb/mysqld.sock" \
    mariadb-admin --no-defaults --socket="$mdb/mysqld.sock" -u root --connect-timeout=1 ping
  mariadb --no-defaults --socket="$mdb/mysqld.sock" -u root <<SQL || fail "creating the disco account failed" "$run/mariadb.log"
CREATE DATABASE disco;
CREATE USER 'disco'@'127.0.0.1' IDENTIFIED BY '$(cat "$run/mysql-password")';
GRANT ALL PRIVILEGES ON disco.* TO 'disco'@'127.0.0.1';
SQL
  users_db="mysql://disco@127.0.0.1:$mysql_port/disco?password_file=$run/mysql-password"
  orders_db=$users_db
  echo "MariaDB answers at 127.0.0.1:$mysql_port (pid $(pid_of mariadb); data $(rel "$mdb/data"); log: $(rel "$run/mariadb.log"))"
fi
start_service user-service-1 "$user_bin" "${common[@]}" --id user-service-1 --port "$user_port_1" --db "$users_db"
start_service user-service-2 "$user_bin" "${common[@]}" --id user-service-2 --port "$user_port_2" --db "$users_db"
start_service order-service-1 "$order_bin" "${common[@]}" --id order-service-1 --port "$order_port_1" --db "$orders_db"
start_service order-service-2 "$order_bin" "${common[@]}" --id order-service-2 --port "$order_port_2" --db "$orders_db"
start_service gateway-1 "$gateway_bin" "${common[@]}" --id gateway-1 --port "$gateway_port" --catalog-refresh-ms 500

wait_healthy() {  # wait_healthy NAME PORT
  local curl_=(curl)
  [ $with_tls = 1 ] && curl_=(tls_curl)
  wait_ready "$1" 20 "answer GET $scheme://127.0.0.1:$2/health" "${curl_[@]}" -fs -m 1 -o /dev/null "$scheme://127.0.0.1:$2/health"
}
wait_listed() {  # wait_listed SERVICE COUNT
  local t0
  t0=$(now_ms)
  while [ "$(now_ms)" -lt $((t0 + 20000)) ]; do
    [ "$(disco_reg --timeout-ms 1000 list "$1" --json 2>/dev/null |
         grep -o '"id"' | wc -l)" = "$2" ] && return 0
    sleep 0.1
  done
  fail "$1 does not have $2 instances in $registry after 20 s" "$run/${1}-1.log"
}
printf '  %-16s %-24s %-9s %s\n' instance listens pid log
for name_port in "user-service-1:$user_port_1" "user-service-2:$user_port_2" \
                 "order-service-1:$order_port_1" "order-service-2:$order_port_2" "gateway-1:$gateway_port"; do
  name=${name_port%%:*} p=${name_port##*:}
  wait_healthy "$name" "$p"
  printf '  %-16s %-24s %-9s %s\n' "$name" "$scheme://127.0.0.1:$p" "$(pid_of "$name")" "$(rel "$run/$name.log")"
done
wait_listed user-service 2
wait_listed order-service 2
wait_listed gateway 1
echo "all healthy, and registered in $registry_kind:"
echo "$ disco list user-service"
disco_reg list user-service | sed 's/^/  /'
echo "$ disco list order-service"
disco_reg list order-service | sed 's/^/  /'

# --- 5. the client -------------------------------------------------------------------
gateway_url="$scheme://127.0.0.1:$gateway_port"
client=("$disco" demo --gateway "$gateway_url")
[ $with_tls = 1 ] && client+=(--tls-ca "$tls_dir/ca.pem")
if [ $failover = 0 ]; then
  next "the client: disco demo --gateway $gateway_url"
  client_rc=0
  "${client[@]}" --json-file "$run/client.json" || client_rc=$?
  [ $client_rc = 0 ] || fail "the demo client saw failed calls (exit $client_rc; transcript: $(rel "$run/client.json"))"
else
  next "the client through the gateway, then failover: kill -9 user-service-2 while it keeps calling"
  # Printed before the scene, so that whoever opens it sees the scene happen.
  note "watch it live: ${green}$gateway_url/dashboard${reset}${bold} (charts: traffic moving off user-service-2, its ejection, the registry dropping it a TTL later, its return)"
  echo "$ disco demo --gateway $gateway_url --duration 60 --interval-ms 50"
  DISCO_REGISTRY="$cli_registry" start_bg watch "$disco" watch user-service
  "${client[@]}" --duration 60 --interval-ms 50 --json-file "$run/client.json" &
  client_pid=$!
  record client "$client_pid" disco
  stop_client() { kill -TERM "$client_pid" 2>/dev/null || true; wait "$client_pid" 2>/dev/null || true; }
  trap 'stop_client; fail "interrupted"' INT TERM
  for _ in $(seq 600); do
    grep -q '"type":"loop"' "$run/client.json" 2>/dev/null && break
    kill -0 "$client_pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '"type":"loop"' "$run/client.json" 2>/dev/null || {
    stop_client; fail "the demo client's walkthrough failed (transcript: $(rel "$run/client.json"))"; }
  sleep 2.5
  victim_pid=$(pid_of user-service-2)
  [ -n "$victim_pid" ] || { stop_client; fail "user-service-2 is not running" "$run/user-service-2.log"; }
  read_pid_file "$run/user-service-2.pid"
  victim_start=$r_start
  kill -KILL "$victim_pid"
  # Read after the kill: a call that starts after this time cannot have
  # reached the victim, however long this shell stalled before it.
  kill_ms=$(date +%s%3N)
  wait_gone "$victim_pid" "$victim_start" 50 || { stop_client; fail "user-service-2 (pid $victim_pid) survived kill -9"; }
  forget "$run/user-service-2.pid" "$victim_pid"
  note "kill -9 user-service-2 (pid $victim_pid); the registry still lists it until its TTL ($ttl s) runs out"
  dropped_ms=
  for _ in $(seq $(( (ttl + 15) * 10 ))); do
    if ! disco_reg list user-service 2>/dev/null | grep -q '^user-service-2 '; then
      dropped_ms=$(date +%s%3N); break
    fi
    sleep 0.1
  done
  if [ -n "$dropped_ms" ]; then
    note "the registry dropped user-service-2 $(( (dropped_ms - kill_ms) / 1000 )).$(( (dropped_ms - kill_ms) % 1000 / 100 )) s after the kill; disco list user-service now shows:"
    disco_reg list user-service | sed 's/^/      /'
  else
    note "the registry still lists user-service-2 $((ttl + 15)) s after the kill"
  fi
  sleep 2.5
  kill -TERM "$client_pid" 2>/dev/null || true
  client_rc=0
  wait "$client_pid" || client_rc=$?
  forget "$run/client.pid" "$client_pid" || true
  trap 'fail "interrupted"' INT TERM
  printf '{"killed":"user-service-2","pid":%s,"killed_unix_ms":%s,"dropped_unix_ms":%s,"ttl_s":%s}\n' \
    "$victim_pid" "$kill_ms" "${dropped_ms:-null}" "$ttl" > "$run/failover.json"
  stop_files "$run/watch.pid" >/dev/null || true
  echo
  echo "what 'disco watch user-service' printed meanwhile (log: $(rel "$run/watch.log")):"
  sed 's/^/  /' "$run/watch.log"
  [ $client_rc = 0 ] || fail "the demo client saw failed calls (exit $client_rc; transcript: $(rel "$run/client.json"))"
  [ -n "$dropped_ms" ] || fail "the registry did not drop the killed instance" "$run/registry.log"

  next "user-service-2 starts again"
  start_service user-service-2 "$user_bin" "${common[@]}" --id user-service-2 --port "$user_port_2" --db "$users_db"
  wait_healthy user-service-2 "$user_port_2"
  wait_listed user-service 2
  echo "user-service-2 is back (pid $(pid_of user-service-2)): registered again, it takes its share of the traffic"
fi

# --- summary ------------------------------------------------------------------------------
next "the demo is running"
row() {  # row LABEL VALUE [NOTE]
  if [ $# -ge 3 ]; then printf '  %-17s %-32s %s\n' "$@"; else printf '  %-17s %s\n' "$@"; fi
}
row registry "$registry" "$registry_kind, pid $(pid_of registry)"
row gateway-1 "$gateway_url" "pid $(pid_of gateway-1)"
for name_port in "user-service-1:$user_port_1" "user-service-2:$user_port_2" \
                 "order-service-1:$order_port_1" "order-service-2:$order_port_2"; do
  row "${name_port%%:*}" "$scheme://127.0.0.1:${name_port##*:}" "pid $(pid_of "${name_port%%:*}")"
done
echo
row dashboard "${green}$gateway_url/dashboard${reset}"
row "Prometheus SD" "$gateway_url/sd/prometheus"
row metrics "$gateway_url/metrics (and /metrics on every instance)"
row logs "$(rel "$run")/<name>.log (JSON lines)"
row transcript "$(rel "$run/client.json") (the client's calls, JSON lines)"
if [ "$db_kind" = mysql ]; then
  row database "mysql://disco@127.0.0.1:$mysql_port/disco" "MariaDB, pid $(pid_of mariadb); password in $(rel "$run/mysql-password")"
else
  row databases "$(rel "$run/users.db"), $(rel "$run/orders.db") (SQLite, shared by the instances)"
fi
run_env=
[ -n "${DISCO_DEMO_RUN_DIR:-}" ] && run_env="DISCO_DEMO_RUN_DIR=$DISCO_DEMO_RUN_DIR "
if [ $with_tls = 1 ]; then
  t=$(rel "$tls_dir")
  cat <<TRY

Everything runs over TLS; certificates, keys and $registry_kind secrets in $t/.
Try:
  curl --cacert $t/ca.pem $gateway_url/health
  curl --cacert $t/ca.pem -s $gateway_url/api/orders                     # 401 JSON error: no token
  curl -s http://127.0.0.1:$gateway_port/health                           # 400 tls_required: this port speaks HTTPS
  curl --cacert $t/ca.pem --cert $t/client.pem --key $t/client.key https://127.0.0.1:$user_port_1/health
  curl --cacert $t/ca.pem https://127.0.0.1:$user_port_1/health                  # refused: mutual TLS
  $(rel "$disco") demo --gateway $gateway_url --tls-ca $t/ca.pem    # the client again
TRY
  if [ "$registry_kind" = etcd ]; then
    cat <<TRY
  DISCO_REGISTRY="$registry?ca=$t/ca.pem&cert=$t/client.pem&key=$t/client.key&user=viewer&password=\$(cat $t/viewer.password)" \\
    $(rel "$disco") watch user-service
  ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:$etcd_port --cacert $t/ca.pem --cert $t/client.pem \\
    --key $t/client.key put services/user-service/x y                       # refused: no etcd user
TRY
  else
    cat <<TRY
  DISCO_REGISTRY="$registry?ca=$t/ca.pem&cert=$t/client.pem&key=$t/client.key&token=\$(cat $t/viewer.token)" \\
    $(rel "$disco") watch user-service
  curl --cacert $t/ca.pem --cert $t/client.pem --key $t/client.key -X PUT -d '{"Name":"user-service","ID":"x"}' \\
    https://127.0.0.1:$consul_port/v1/agent/service/register                # refused: no ACL token
TRY
  fi
  cat <<TRY
Status: ${run_env}scripts/demo.sh status
Stop:   ${run_env}scripts/demo.sh stop
TRY
else
  cat <<TRY

Try:
  $(rel "$disco") demo --gateway $gateway_url          # the client again
  $(rel "$disco") --registry $registry watch user-service
  curl -s $gateway_url/api/orders                            # 401 JSON error: no token
Status: ${run_env}scripts/demo.sh status
Stop:   ${run_env}scripts/demo.sh stop
TRY
fi
