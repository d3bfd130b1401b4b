# shellcheck shell=bash disable=SC2154,SC2034  # sourced by scripts/demo.sh: its variables
# The TLS part of scripts/demo.sh (--tls), sourced by it: a throwaway CA and
# certificates made with the openssl CLI, the registry's access control
# (etcd users and roles, or Consul ACLs), and the per-service registry URLs.
# Uses demo.sh's fail, and $run, $disco and $registry_kind.
#
# Files, all in $run/tls (keys and passwords mode 600, made anew on each start):
#   ca.pem, ca.key                the demo's CA (EC P-256, valid 7 days)
#   <name>.pem, <name>.key        one certificate per service (user-service,
#                                 order-service, gateway), one for the
#                                 registry (etcd or consul) and one for the
#                                 command-line tools (client):
#                                 SAN DNS:<name> + IP:127.0.0.1, serverAuth
#                                 and clientAuth, CN <name>
#   <user>.password               etcd passwords: root, one user per service
#                                 and "viewer" (read-only, for disco list/watch)
#   <user>.token, consul.hcl      Consul: the management token, one ACL token
#                                 per service and viewer; the agent's config
# etcd's access control: root, and a role per service that may write only
# under services/<service>/ and read services/ (every service discovers the
# others). Consul's ACLs (default deny) say the same: a policy per service
# that may write only its own service and read every service and node. The
# services connect with ?user=<service>&password=... (etcd) or ?token=...
# (Consul), read from DISCO_REGISTRY in their environment (never on a
# command line).

tls_names=(user-service order-service gateway "$registry_kind" client)

# tls_make_certs: the CA and every certificate above.
tls_make_certs() {
  command -v openssl >/dev/null || fail "--tls: no openssl command (apt-get install openssl)"
  tls_dir="$run/tls"
  rm -rf "$tls_dir"
  mkdir -p "$tls_dir"
  chmod 700 "$tls_dir"
  local log="$tls_dir/openssl.log" name
  (
    set -e
    cd "$tls_dir"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 7 -subj "/CN=disco demo CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.pem
    for name in "${tls_names[@]}"; do
      openssl ecparam -name prime256v1 -genkey -noout -out "$name.key"
      openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr"
      printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:$name,IP:127.0.0.1" > "$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
        -sha256 -extfile "$name.ext" -out "$name.pem"
      rm -f "$name.csr" "$name.ext"
    done
    chmod 644 ./*.pem
  ) >"$log" 2>&1 || fail "--tls: making the demo's certificates failed" "$log"
}

# tls_etcd_args PORT PEER_PORT: etcd's flags: HTTPS for clients, client
# certificates required (peers stay on plain HTTP: one member, loopback).
tls_etcd_args() {
  tls_etcd=(--listen-client-urls "https://127.0.0.1:$1" --advertise-client-urls "https://127.0.0.1:$1"
    --cert-file "$tls_dir/etcd.pem" --key-file "$tls_dir/etcd.key"
    --client-cert-auth --trusted-ca-file "$tls_dir/ca.pem")
}

# tls_query [USER]: the registry URL's query: CA, the client certificate of
# USER (the tools' when USER is viewer or empty), and USER's etcd password or
# Consul token (empty USER on Consul: the management token, for the tools
# until the ACLs are made).
tls_query() {
  local cert=client
  case "${1:-}" in user-service|order-service|gateway) cert=$1 ;; esac
  local q="ca=$tls_dir/ca.pem&cert=$tls_dir/$cert.pem&key=$tls_dir/$cert.key"
  if [ "$registry_kind" = consul ]; then
    q+="&token=$(cat "$tls_dir/${1:-consul-management}.token")"
  elif [ -n "${1:-}" ]; then
    q+="&user=$1&password=$(cat "$tls_dir/$1.password")"
  fi
  echo "$q"
}

# tls_consul_args PORT: the agent's config file, in $tls_consul: HTTPS only,
# on PORT, client certificates required, ACLs on with default deny. The
# management token is made here and kept in files (mode 600), never on a
# command line.
tls_consul_args() {
  (umask 077 && cat /proc/sys/kernel/random/uuid > "$tls_dir/consul-management.token")
  local management
  management=$(cat "$tls_dir/consul-management.token")
  (umask 077 && cat > "$tls_dir/consul.hcl" <<HCL
ports { http = -1, https = $1 }
ca_file = "$tls_dir/ca.pem"
cert_file = "$tls_dir/consul.pem"
key_file = "$tls_dir/consul.key"
verify_incoming = true
acl {
  enabled = true
  default_policy = "deny"
  tokens { master = "$management", agent = "$management" }
}
HCL
  )
  tls_consul=(-config-file "$tls_dir/consul.hcl")
}

# tls_consul_acl PORT: a policy and a token per service, and viewer's
# (read-only), made with the management token through the ACL API. Secrets
# go through files and stdin only.
tls_consul_acl() {
  local log="$tls_dir/consul-acl.log" name rules
  (umask 077 && echo "X-Consul-Token: $(cat "$tls_dir/consul-management.token")" > "$tls_dir/consul-management.header")
  (
    set -e
    for name in viewer user-service order-service gateway; do
      rules='service_prefix \"\" { policy = \"read\" } node_prefix \"\" { policy = \"read\" }'
      [ "$name" != viewer ] && rules+=" service \\\"$name\\\" { policy = \\\"write\\\" }"
      printf '{"Name": "disco-%s", "Rules": "%s"}' "$name" "$rules" |
        tls_curl -fsS -m 5 -X PUT -H "@$tls_dir/consul-management.header" --data-binary @- \
          "https://127.0.0.1:$1/v1/acl/policy"
      echo
      (umask 077 && cat /proc/sys/kernel/random/uuid > "$tls_dir/$name.token")
      printf '{"SecretID": "%s", "Description": "disco demo: %s", "Policies": [{"Name": "disco-%s"}]}' \
        "$(cat "$tls_dir/$name.token")" "$name" "$name" |
        tls_curl -fsS -m 5 -X PUT -H "@$tls_dir/consul-management.header" --data-binary @- \
          "https://127.0.0.1:$1/v1/acl/token" | grep -o '"AccessorID": *"[^"]*"'
    done
  ) >"$log" 2>&1 || fail "--tls: making Consul's ACL policies and tokens failed" "$log"
}

# tls_etcd_auth PORT: root, the roles and users, then `etcdctl auth enable`.
tls_etcd_auth() {
  local log="$tls_dir/etcd-auth.log" name
  for name in root viewer user-service order-service gateway; do
    (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$tls_dir/$name.password")
  done
  (
    set -e
    export ETCDCTL_API=3 ETCDCTL_ENDPOINTS="https://127.0.0.1:$1" ETCDCTL_CACERT="$tls_dir/ca.pem"
    export ETCDCTL_CERT="$tls_dir/client.pem" ETCDCTL_KEY="$tls_dir/client.key"
    # Passwords on stdin (--interactive=false), never on a command line.
    etcdctl user add root --interactive=false < "$tls_dir/root.password"
    etcdctl user grant-role root root
    etcdctl role add viewer
    etcdctl role grant-permission viewer read --prefix=true services/
    etcdctl user add viewer --interactive=false < "$tls_dir/viewer.password"
    etcdctl user grant-role viewer viewer
    for name in user-service order-service gateway; do
      etcdctl role add "$name"
      etcdctl role grant-permission "$name" readwrite --prefix=true "services/$name/"
      etcdctl role grant-permission "$name" read --prefix=true services/
      etcdctl user add "$name" --interactive=false < "$tls_dir/$name.password"
      etcdctl user grant-role "$name" "$name"
    done
    etcdctl auth enable
  ) >"$log" 2>&1 || fail "--tls: setting up etcd's users and roles failed" "$log"
}

# tls_curl ARGS...: curl trusting the demo's CA, presenting the tools' certificate.
tls_curl() {
  curl --cacert "$tls_dir/ca.pem" --cert "$tls_dir/client.pem" --key "$tls_dir/client.key" "$@"
}
