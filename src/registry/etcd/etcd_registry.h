// etcd:// — the etcd v3 backend, over etcd's native gRPC API.
//
// URL: etcd://host:port[,host:port...][?prefix=services&user=U&password=P]
//   prefix    key prefix, default "services" (no leading slash, as in etcd's
//             naming convention; a trailing slash is ignored)
//   user, password   etcd auth (Authenticate; the token is sent as metadata)
//
// Layout and wire format: etcd_codec.h (etcd's naming/endpoints convention,
// readable by gRPC-Go's etcd resolver and able to read what Go writes).
// Registrations: etcd_registration.h (lease + keep-alive thread).
// Watches: etcd_watch.h (Range + Watch, full resync after any stream loss).
// Endpoints, deadlines, reconnect: etcd_connection.h.
//
// Semantics worth knowing:
//   - Every listed instance is kPassing: a key exists only while its lease lives.
//   - Registry::Deregister(service, id) revokes the key's lease when that lease
//     holds only this key (the registrant then sees TTL 0 and registers again
//     within about TTL/3), else deletes the key.
//   - Values that are not JSON, have no Addr or a bad port are skipped and
//     logged once per (key, mod_revision); they never fail a call.
//
// Threading: Registry methods are synchronous, thread-safe, and bounded by
// RegistryOptions::request_timeout. Each Registration and each Watch owns one
// background thread; see their headers for the stop guarantees.
#pragma once
