#!/usr/bin/env bash
# Puts Consul 1.8.7 (Debian 11's package, MPL-2.0) into .tools/consul/bin/consul.
# Uses a private apt state so the system's sources.list is left as it is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.tools/consul"
if [ -x "$dest/bin/consul" ]; then exit 0; fi

# Use the Debian mirror the machine already uses.
mirror=$( { sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null
             sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' /etc/apt/sources.list 2>/dev/null
           } | tr ' ' '\n' | grep -v -e security -e '^$' | head -n 1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} bullseye main" > "$work/sources.list"
opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=-"
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
echo "install-consul: fetching consul from Debian bullseye ($mirror)"
apt-get "${opts[@]}" update -qq
(cd "$work" && apt-get "${opts[@]}" download consul)
mkdir -p "$dest"
dpkg-deb -x "$work"/consul_*.deb "$work/x"
mkdir -p "$dest/bin"
cp "$work/x/usr/bin/consul" "$dest/bin/consul"
"$dest/bin/consul" version | head -n 1
