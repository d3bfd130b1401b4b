#!/usr/bin/env bash
# scripts/demo.sh start/stop/status around processes that are still starting
# or have just died (issue 12, defect 9: a start right after a kill -9 took a
# running instance for "exited at start" and dropped the PID files of
# processes that kept running, so status and stop lost them).
#
# A loaded machine can take a while from demo.sh's fork to the exec of a
# service, and until then /proc/PID/comm shows demo.sh, not the service. The
# test makes that window 1.5 s, deterministically: user-service is a wrapper
# that renames itself ("starting") and waits before it execs the real binary.
# (The demo client, `disco demo`, is a no-op here: it is not what is tested.)
#   1. start: every instance comes up, every process running is recorded;
#   2. kill -9 order-service-1, then at once status (it is gone, even as an
#      unreaped zombie) and start again (over the first run, same ports);
#   3. stop while a third start's user-services are still starting;
#   4. no process left: every process whose command line names this test's
#      temp dir is checked by PID, and killed by PID on the way out.
#   demo_restart_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd) build=$(cd "$2" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/disco-demo-restart.XXXXXX")
run=$tmp/run
background=()  # demo.sh runs in the background
watchdog=

# Live (not zombie) processes whose command line names $tmp: all this test
# started, through demo.sh. Prints "PID command line".
ours_running() {
  local dir pid state line args
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    { read -r line < "$dir/stat"; } 2>/dev/null || continue
    state=${line##*) }; state=${state%% *}
    [ "$state" = Z ] && continue
    mapfile -d '' args < "$dir/cmdline" 2>/dev/null || continue
    case "${args[*]}" in *"$tmp/"*) echo "$pid ${args[*]}" ;; esac
  done
}
cleanup() {
  local rc=$? pid _
  [ -n "$watchdog" ] && kill -KILL "$watchdog" 2>/dev/null
  for pid in "${background[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for _ in 1 2 3; do
    while read -r pid _; do
      if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    done < <(ours_running)
    sleep 0.2
  done
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted (or over 100 s)"; exit 1' INT TERM

failures=0
check() {  # check MESSAGE COMMAND...: records a failure (and goes on) unless COMMAND succeeds
  local message=$1; shift
  if "$@"; then echo "ok: $message"; else echo "FAIL: $message"; failures=$((failures + 1)); fi
}
fatal() { echo "FAIL: $*"; exit 1; }
show() { sed 's/^/    | /' "$1"; }

# The build dir demo.sh takes its binaries from: the real ones, but
# user-service behind the slow-exec wrapper, and the demo client (disco demo,
# bcrypt-bound, not what is tested here) a no-op.
fake=$tmp/build
mkdir -p "$fake/tools/disco" "$fake/services/user" "$fake/services/order" "$fake/services/gateway"
for bin in tools/disco/disco services/order/order-service services/gateway/gateway services/user/user-service; do
  [ -x "$build/$bin" ] || fatal "no $build/$bin: build disco_cli user_service order_service gateway"
done
cat > "$fake/tools/disco/disco" <<WRAPPER
#!/usr/bin/env bash
[ "\${1:-}" = demo ] && exit 0
exec "$build/tools/disco/disco" "\$@"
WRAPPER
chmod +x "$fake/tools/disco/disco"
ln -s "$build/services/order/order-service" "$fake/services/order/order-service"
ln -s "$build/services/gateway/gateway" "$fake/services/gateway/gateway"
mkfifo "$tmp/never"
# The whole test in 170 s (it takes about 15 s; ctest's limit is 180 s, and
# it runs beside another test): then TERM to this shell, whose trap cleans up.
( read -r -t 170 _ <> "$tmp/never" || kill -TERM $$ ) &
watchdog=$!
disown "$watchdog"  # no "Killed" report when cleanup ends it
cat > "$fake/services/user/user-service" <<WRAPPER
#!/usr/bin/env bash
# Not yet user-service for 1.5 s, like a forked shell before its exec.
printf starting > /proc/self/comm
read -r -t 1.5 _ <> "$tmp/never" || true
exec "$build/services/user/user-service" "\$@"
WRAPPER
chmod +x "$fake/services/user/user-service"

# Ports: random in 20000-31999 (below the ephemeral range, where the test
# fixtures' FreePort() picks too) and free now; the same for every run. Each
# is claimed with an flock on $TMPDIR/disco-test-ports/<port>, as FreePort()
# does, so a test process beside this one cannot take it while the demo is
# down between runs. The locks go when this shell exits.
chosen=" "
lockdir="${TMPDIR:-/tmp}/disco-test-ports"
mkdir -p "$lockdir"
port=
free_port() {  # sets $port (not echoed: the claim must live in this shell)
  local p _ fd
  for _ in $(seq 500); do
    p=$((20000 + RANDOM % 12000))
    case "$chosen" in *" $p "*) continue ;; esac
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    exec {fd}<>"$lockdir/$p" || continue
    if ! flock -n "$fd"; then exec {fd}>&-; continue; fi
    chosen+="$p "; port=$p; return 0
  done
  fatal "no free port"
}
for v in ETCD_PORT ETCD_PEER_PORT CONSUL_PORT CONSUL_SERVER_PORT CONSUL_SERF_PORT GATEWAY_PORT; do
  free_port; export "DISCO_DEMO_$v=$port"
done
free_port; u1=$port; free_port; u2=$port; free_port; o1=$port; free_port; o2=$port
export DISCO_DEMO_USER_PORTS=$u1,$u2 DISCO_DEMO_ORDER_PORTS=$o1,$o2
export DISCO_DEMO_RUN_DIR=$run DISCO_DEMO_BUILD_DIR=$fake DISCO_DEMO_TTL=10 DISCO_DEMO_REGISTRY=etcd
export DISCO_DEMO_PORTS='' DISCO_REGISTRY='' DISCO_JWT_SECRET=''

demo() { timeout 45 bash "$src/scripts/demo.sh" "$@"; }
start_args=(start --no-install --no-build --no-failover)
names="registry user-service-1 user-service-2 order-service-1 order-service-2 gateway-1"

# Every live process of this test is recorded in a PID file that names it.
all_recorded() {
  local pid cmd ok=0
  while read -r pid cmd; do
    if ! grep -qs "^$pid " "$run"/*.pid; then
      echo "    pid $pid runs but no PID file names it: $cmd"; ok=1
    fi
  done < <(ours_running)
  return $ok
}
recorded_pid() { local pid _; read -r pid _ < "$run/$1.pid" && echo "$pid"; }
is_running() { local line; { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1; line=${line##*) }; [ "${line%% *}" != Z ]; }
# status says NAME runs with PID (and /health 200 where it has one).
status_running() {  # status_running OUT NAME PID
  grep -Eq "^  $2 +running +pid $3 " "$1" && { [ "$2" = registry ] || grep -Eq "^  $2 .*/health 200" "$1"; }
}
nothing_left() {
  local left
  left=$(ours_running)
  [ -z "$left" ] || { echo "    still running:"; printf '      %s\n' "$left"; return 1; }
}

# --- 1. a start with instances still starting -----------------------------------
t0=$SECONDS
echo "== 1. start (user-services take 1.5 s to reach their exec)"
rc=0; demo "${start_args[@]}" > "$tmp/start1.log" 2>&1 || rc=$?
if [ $rc != 0 ]; then show "$tmp/start1.log"; fi
check "first start succeeds (exit $rc)" [ $rc = 0 ]
check "every process running is recorded in a PID file" all_recorded
[ $rc = 0 ] || exit 1

# --- 2. kill -9 an instance, then status and start again at once ----------------
echo "== 2. kill -9 order-service-1, status, start again at once"
first=()
for n in $names; do first+=("$(recorded_pid "$n")"); done
victim=$(recorded_pid order-service-1)
kill -KILL "$victim"
demo status > "$tmp/status-killed.log" 2>&1 || true
show "$tmp/status-killed.log"
check "status shows the killed order-service-1 (pid $victim) as gone" \
  grep -Eq "^  order-service-1 +.*gone" "$tmp/status-killed.log"
rc=0; demo "${start_args[@]}" > "$tmp/start2.log" 2>&1 || rc=$?
if [ $rc != 0 ]; then show "$tmp/start2.log"; fi
check "second start succeeds (exit $rc)" [ $rc = 0 ]
sed -n '/previous demo run/,/^[^ ]/p' "$tmp/start2.log" | show /dev/stdin
for pid in "${first[@]}"; do
  check "the first run's pid $pid is gone" eval "! is_running $pid"
done
check "every process running is recorded in a PID file" all_recorded
demo status > "$tmp/status2.log" 2>&1 || true
show "$tmp/status2.log"
for n in $names; do
  pid=$(recorded_pid "$n" || true)
  check "status shows $n running as pid ${pid:-?}, and it runs" \
    eval "[ -n '$pid' ] && is_running '$pid' && status_running '$tmp/status2.log' '$n' '$pid'"
done

# --- 3. stop while a start's instances are still starting -----------------------
echo "== 3. stop while a third start's user-services are still starting"
second_user=$(recorded_pid user-service-1)
demo "${start_args[@]}" > "$tmp/start3.log" 2>&1 &
background+=($!)
caught=0
for _ in $(seq 300); do  # up to 30 s for the new user-service-1, still in the wrapper
  pid=$(recorded_pid user-service-1 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$pid" != "$second_user" ] &&
     [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = starting ]; then caught=1; break; fi
  sleep 0.1
done
check "caught the third start's user-service-1 before its exec" [ $caught = 1 ]
rc=0; demo stop > "$tmp/stop3.log" 2>&1 || rc=$?
show "$tmp/stop3.log"
check "stop succeeds (exit $rc)" [ $rc = 0 ]
check "stop stopped the still-starting user-service-1 (pid $pid)" \
  grep -q "^stopped user-service-1 (pid $pid)" "$tmp/stop3.log"
# The third start sees its instances go and stops the rest itself.
for _ in $(seq 600); do kill -0 "${background[0]}" 2>/dev/null || break; sleep 0.1; done
check "the third start ended within 60 s" eval "! kill -0 ${background[0]} 2>/dev/null"
tail -n 6 "$tmp/start3.log" | show /dev/stdin

# --- 4. stop: nothing left ------------------------------------------------------
echo "== 4. stop"
demo stop > "$tmp/stop4.log" 2>&1 || true
show "$tmp/stop4.log"
check "no process of this test is left running" nothing_left
check "no PID file is left" eval "! compgen -G '$run/*.pid' >/dev/null"
echo "$((SECONDS - t0)) s, $failures failure(s)"
[ $failures = 0 ]
