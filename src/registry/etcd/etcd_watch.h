// EtcdWatch: a watched view of one service, delivered as full sorted lists.
//
// The loop, on a thread of its own:
//   1. Range "<prefix>/<service>/" and deliver the full list (the first
//      delivery, and after an error, always; otherwise only if it changed).
//   2. Watch the same prefix from the Range's header.revision with prev_kv
//      (the revision already seen, not the next: etcd-io/etcd#18089, see
//      CreateRequest), applying events to the cached list and delivering the
//      list after each WatchResponse that changed it.
//   3. When the stream ends (member killed, hung, without a leader, half-open
//      connection) open a new one from the revision of the last event seen,
//      on the next member: no event is lost, none is delivered twice (the
//      seen revision's events change nothing), and no Range is needed. Only a compaction cancel, or a member whose store is
//      behind what the watch saw (a wiped etcd, revisions starting over),
//      goes back to 1: a fresh Range replaces the cache.
//   Streams are opened with require-leader (metadata hasleader=true, as
//   clientv3's WithRequireLeader): a member that lost quorum refuses or ends
//   them with "no leader" instead of leaving them silent. When every endpoint
//   in a row failed to serve a stream (or the Range fails), an error is
//   delivered, once per outage, so resolvers serve their last snapshot and
//   report its staleness; the first stream confirmed afterwards delivers the
//   list again. With several endpoints that error waits until the streams
//   since the last confirmed one have failed for 5 s (two election rounds).
//   Retries back off from 100 ms to 2 s.
//
// A quiet stream is checked every few seconds with a progress request: if
// etcd does not answer within kProgressTimeout the stream is treated as dead
// (a hung etcd or a half-open connection never ends a gRPC stream by itself).
//
// Threading: one thread per watch, driving the stream through a private
// gRPC CompletionQueue so that it can wait for a response and a timer at
// once. Callbacks run on that thread, one at a time. The destructor cancels
// the in-flight call (ClientContext::TryCancel), wakes the thread and joins
// it, so no callback runs after it returns; it waits at most for a callback
// already running.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "disco/registry.h"
#include "registry/etcd/etcd_context.h"
#include "registry/etcd/etcd_test_hooks.h"

namespace disco::etcd {

class WatchLoop;

class EtcdWatch final : public WatchHandle {
 public:
  EtcdWatch(std::shared_ptr<Context> context, std::string service, WatchCallback callback);
  ~EtcdWatch() override;

 private:
  std::shared_ptr<WatchLoop> loop_;
};

}  // namespace disco::etcd
