# Process helpers the benchmark scripts share (sourced, not run). Every
# process started with `start` is recorded by PID and stopped on exit: TERM,
# then KILL after `stop_wait` tenths of a second. Loopback only.
#   work        a temp dir for logs and data, removed on exit
#   start NAME CMD...   runs CMD in the background, output in $work/NAME.log
#   rmdirs              directories to remove once every process stopped
#                       (cgroups a script made)
#   free_port           a free TCP port on 127.0.0.1
#   wait_http URL       waits until URL answers 2xx (every 0.1 s, $wait_tries times)
#   start_etcd NAME     etcd on free ports, data in $work/etcd; sets etcd_port
#                       and exports DISCO_REGISTRY
#   wrk_figures FILE    from a `wrk --latency` output: "requests/s p50_ms p99_ms non-2xx"
#   make_bench_certs    a throwaway CA ($work/ca.pem) and EC P-256 certificates
#                       $work/user-service.{pem,key} (SAN user-service,
#                       127.0.0.1) and $work/proxy.{pem,key} (SAN proxy,
#                       127.0.0.1), made with the openssl CLI; exports
#                       CURL_CA_BUNDLE so the helpers' curl trusts the CA
work=$(mktemp -d /tmp/disco-bench-XXXXXX)
pids=()
rmdirs=()
stop_wait=${stop_wait:-50}
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq "$stop_wait"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for dir in "${rmdirs[@]}"; do
    # Only what this script put there, and what those forked (nginx's
    # workers), can be in it.
    [ -f "$dir/cgroup.procs" ] && xargs -r kill -KILL <"$dir/cgroup.procs" 2>/dev/null || true
    for _ in $(seq 20); do rmdir "$dir" 2>/dev/null && break; sleep 0.1; done
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
start() { local name=$1; shift; "$@" >"$work/$name.log" 2>&1 & pids+=($!); }
wait_http() {
  for _ in $(seq "${wait_tries:-200}"); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; exit 1
}
start_etcd() {
  etcd_port=$(free_port)
  local peer_port
  peer_port=$(free_port)
  start etcd etcd --name "$1" --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "$1=http://127.0.0.1:$peer_port"
  wait_http "http://127.0.0.1:$etcd_port/health"
  export DISCO_REGISTRY="etcd://127.0.0.1:$etcd_port"
}

wrk_figures() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n = float(m.group(1)); return n / 1000 if m.group(2) == "us" else n * 1000 if m.group(2) == "s" else n
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {bad.group(1) if bad else 0}")
PY
}

make_bench_certs() {
  command -v openssl >/dev/null || { echo "missing openssl" >&2; exit 1; }
  (
    cd "$work"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=bench CA" -out ca.pem
    for name in user-service proxy; do
      openssl ecparam -name prime256v1 -genkey -noout -out "$name.key"
      openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
      printf '%s\n' "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=DNS:$name,IP:127.0.0.1" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$name.ext" -out "$name.pem"
    done
  ) >"$work/openssl.log" 2>&1
  export CURL_CA_BUNDLE=$work/ca.pem
}
