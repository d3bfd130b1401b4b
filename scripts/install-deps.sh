#!/usr/bin/env bash
# Installs every dependency of disco from Debian's own package archive.
# Idempotent: packages already present are skipped; Consul is fetched only once.
#   scripts/install-deps.sh            build + test + demo dependencies
#   scripts/install-deps.sh --demo     only what building (Release) and running the demo need
# Consul is not in Debian 12: its Debian 11 (bullseye) package is downloaded
# with a private apt state (the system's sources are not touched) and unpacked
# into .tools/consul/ inside the checkout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
demo_only=0
case "${1:-}" in
  --demo) demo_only=1 ;;
  "") ;;
  *) echo "install-deps.sh: unknown argument '$1' (--demo or nothing)" >&2; exit 2 ;;
esac

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost-dev libboost-system-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  nlohmann-json3-dev libjwt-dev libcrypt-dev libsqlite3-dev libpqxx-dev
  libspdlog-dev libfmt-dev libcli11-dev libssl-dev libbenchmark-dev libgoogle-perftools-dev
  libc-ares-dev liburing-dev
  etcd-server etcd-client curl procps iproute2
  # scripts/demo.sh --tls makes its certificates with the openssl command.
  openssl
  # Redis shared by replicas (--redis; tests and demo.sh --redis start their own).
  redis-server
)
# MySQL/MariaDB storage (mysql:// URLs): the client library to build, and the
# server that tests and scripts/demo.sh --db mysql start on a free port.
packages+=(libmariadb-dev mariadb-server)
if [ "$demo_only" = 0 ]; then
  # Tests and benchmarks only.
  packages+=(libgtest-dev libgmock-dev postgresql wrk nginx haproxy chromium prometheus)
  # dns:// tests: a DNS server started on a free port (the -base package has no system service).
  packages+=(dnsmasq-base)
  # The fuzz targets (scripts/fuzz.sh): clang 16 with libFuzzer and the
  # sanitizer runtimes. Not clang 14 (Debian's default "clang"): it cannot
  # compile libstdc++ 12's std::expected.
  packages+=(clang-16 libfuzzer-16-dev libclang-rt-16-dev)
  # Node.js runs the browser tests (playwright-core drives Debian's Chromium).
  # Machines that already have a node keep theirs.
  command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
fi

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_ apt-get update -qq
  # Installing a package must not start system services we did not ask for
  # (etcd, nginx, postgresql, mariadb, prometheus, redis): tests start their own on free ports.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | sudo_ tee "$policy" >/dev/null
    sudo_ chmod +x "$policy"
    created_policy=1
  fi
  sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ "$created_policy" = 1 ] && sudo_ rm -f "$policy"
fi

"$root/scripts/install-consul.sh"

# playwright-core for the dashboard test, from the npm registry, pinned by
# tests/browser/package-lock.json. It never downloads a browser of its own.
if [ "$demo_only" = 0 ] && [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
  echo "install-deps: npm ci (tests/browser)"
  (cd "$root/tests/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
