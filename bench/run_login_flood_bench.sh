#!/usr/bin/env bash
# The login flood of issue 12, before and after, in one run.
#
#   bench/run_login_flood_bench.sh AFTER_BUILD [BEFORE_BUILD]
#   (AFTER_BUILD default build/default; BEFORE_BUILD: a build of the code to
#   compare with, e.g. main's; without it only AFTER_BUILD is measured)
#
# Environment: DURATION (seconds of flood per round, default 20), ROUNDS
# (default 3), CONCURRENCY (flood workers, default 50), SOURCES (flood client
# addresses, default 1), BCRYPT_COST (default 12), FLOOD_NICE (default 19).
#
# Per round and build, on free loopback ports, each process stopped by its
# PID: etcd, one user-service and the gateway (their defaults but the access
# log off), a user registered, then two bench/login_flood processes (from
# AFTER_BUILD) side by side: the flood (CONCURRENCY workers, closed loop,
# wrong password, from SOURCES addresses), and the measurement: one
# legitimate client logging in every 500 ms from its own address, and GET
# /health on the gateway and on user-service every 20 ms.
# The flood runs at nice FLOOD_NICE: an attacker's CPU is not the service's,
# but here it shares the two cores; a flood answered in microseconds spins a
# closed loop fast (about 12,000 requests/s), and at nice 0 the flooder alone
# took half the machine (measured with /proc/PID/stat), which no real
# deployment would give an attacker. FLOOD_NICE=0 measures that case.
# Builds alternate within a round, so that machine noise hits both alike.
# Prints a Markdown table, the median of the rounds per build, and the
# after/before ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
after=${1:-$root/build/default}
before=${2:-}
duration=${DURATION:-20}
rounds=${ROUNDS:-3}
concurrency=${CONCURRENCY:-50}
sources=${SOURCES:-1}
bcrypt_cost=${BCRYPT_COST:-12}
flood_bin=$after/bench/login_flood
flood_nice=${FLOOD_NICE:-19}

for tool in etcd python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done
builds=("$after")
[ -n "$before" ] && builds=("$before" "$after")
for b in "${builds[@]}"; do
  for bin in services/user/user-service services/gateway/gateway; do
    [ -x "$b/$bin" ] || { echo "missing $b/$bin: build first" >&2; exit 1; }
  done
done
[ -x "$flood_bin" ] || { echo "missing $flood_bin: cmake --build $after --target login_flood" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
start_etcd bench
export DISCO_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')

# measure BUILD ROUND: one round against BUILD's binaries; the JSON goes to
# $work/<label>-<round>.json.
measure() {
  local build=$1 label=$2 round=$3
  local user_port gw_port user_pid gw_pid
  user_port=$(free_port); gw_port=$(free_port)
  "$build/services/user/user-service" --port "$user_port" --db "$work/$label-$round.db" \
    --bcrypt-cost "$bcrypt_cost" --access-log false --id "user-$label-$round" \
    >"$work/user-$label-$round.log" 2>&1 &
  user_pid=$!; pids+=("$user_pid")
  "$build/services/gateway/gateway" --port "$gw_port" --access-log false --id "gw-$label-$round" \
    >"$work/gw-$label-$round.log" 2>&1 &
  gw_pid=$!; pids+=("$gw_pid")
  wait_http "http://127.0.0.1:$user_port/health"
  wait_http "http://127.0.0.1:$gw_port/health"
  local tries=0
  until curl -fs -XPOST "http://127.0.0.1:$gw_port/api/users/register" -H 'Content-Type: application/json' \
      -d '{"username":"alice","password":"alice-password-1","email":"a@example.com"}' >/dev/null; do
    tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "cannot register through $label's gateway" >&2; exit 1; }
    sleep 0.1
  done
  sleep 1  # the registration's bucket tokens and bcrypt are behind us
  nice -n "$flood_nice" "$flood_bin" --port "$gw_port" --user alice --password alice-password-1 \
    --duration-s "$duration" --flood-concurrency "$concurrency" --flood-sources "$sources" \
    --legit-interval-ms 0 >"$work/$label-$round-flood.json" &
  local flood_pid=$!
  "$flood_bin" --port "$gw_port" --user alice --password alice-password-1 \
    --health gateway="$gw_port" --health user="$user_port" --duration-s "$duration" \
    --flood-concurrency 0 >"$work/$label-$round-measure.json"
  wait "$flood_pid"
  python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); m["flood"] = json.load(open(sys.argv[2]))["flood"]; print(json.dumps(m))' \
    "$work/$label-$round-measure.json" "$work/$label-$round-flood.json" >"$work/$label-$round.json"
  curl -fs "http://127.0.0.1:$user_port/metrics" | grep -E '^disco_admission_(started|rejected|expired)_total' \
    >"$work/$label-$round.metrics" || true
  kill -TERM "$user_pid" "$gw_pid" 2>/dev/null || true
  wait "$user_pid" "$gw_pid" 2>/dev/null || true
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$rounds"); do
  [ -n "$before" ] && measure "$before" before "$round"
  measure "$after" after "$round"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  host: $(nproc) cores, $(uname -r)  load average before: $load_before  after: $load_after"
echo "flood: $concurrency workers (closed loop, wrong password, nice $flood_nice) from $sources address(es), ${duration}s per round, $rounds rounds; bcrypt cost $bcrypt_cost"
echo "legitimate client: a login every 500 ms from its own address; /health probed every 20 ms"
echo
python3 - "$work" "$rounds" ${before:+before} after <<'PY'
import json, sys, statistics, glob, os
work, rounds, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(label):
    runs = []
    for r in range(1, rounds + 1):
        d = json.load(open(f"{work}/{label}-{r}.json"))
        m = {}
        path = f"{work}/{label}-{r}.metrics"
        if os.path.exists(path):
            for line in open(path):
                name, value = line.split()
                m[name.split("{")[0]] = float(value)
        legit = d["legit"]
        ok = legit["status"].get("200", 0)
        runs.append({
            "legit_ok": 100.0 * ok / max(1, legit["requests"]),
            "legit_n": legit["requests"],
            "legit_p50": legit["p50_ms"], "legit_max": legit["max_ms"],
            "gw_p99": d["health_gateway"]["p99_ms"], "user_p99": d["health_user"]["p99_ms"],
            "flood_rate": d["flood"]["rate"],
            "flood_504": d["flood"]["status"].get("504", 0) + d["flood"]["status"].get("0", 0),
            "flood_refusal_p99": d["flood"]["refusal_p99_ms"],
            "flood_401": d["flood"]["status"].get("401", 0),
            "flood_status": d["flood"]["status"],
            "dropped": m.get("disco_admission_expired_total", float("nan")),
            "rejected": m.get("disco_admission_rejected_total", float("nan")),
        })
    return runs
med = lambda runs, k: statistics.median(r[k] for r in runs)
data = {label: load(label) for label in labels}
rows = [
    ("legitimate logins answered 200", "legit_ok", "%.0f %%"),
    ("legitimate login p50 ms", "legit_p50", "%.0f"),
    ("legitimate login max ms", "legit_max", "%.0f"),
    ("gateway GET /health p99 ms", "gw_p99", "%.1f"),
    ("user-service GET /health p99 ms", "user_p99", "%.1f"),
    ("flood answers/s", "flood_rate", "%.0f"),
    ("flood answered 504 or not at all", "flood_504", "%.0f"),
    ("flood 401 (bcrypt ran)", "flood_401", "%.0f"),
    ("flood refusal (429/503) p99 ms", "flood_refusal_p99", "%.0f"),
    ("user-service: dropped unrun (expired)", "dropped", "%.0f"),
    ("user-service: refused (queue full)", "rejected", "%.0f"),
]
head = "| median of %d rounds | " % rounds + " | ".join(labels)
if len(labels) == 2: head += " | after / before"
print(head + " |")
print("| --- |" + " ---: |" * (len(labels) + (1 if len(labels) == 2 else 0)))
for name, key, fmt in rows:
    vals = [med(data[l], key) for l in labels]
    cells = [(fmt % v) if v == v else "–" for v in vals]
    if len(labels) == 2:
        b, a = vals
        cells.append("%.2f" % (a / b) if b and b == b and a == a else "–")
    print(f"| {name} | " + " | ".join(cells) + " |")
print()
for l in labels:
    print(f"{l}: flood answers by status per round:", "; ".join(json.dumps(r["flood_status"]) for r in data[l]))
    print(f"{l}: legitimate logins 200 per round:", ", ".join("%.0f %% of %d" % (r["legit_ok"], r["legit_n"]) for r in data[l]))
PY
