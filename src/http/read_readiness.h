// SkipFirstReceive: the next read on a socket waits for the reactor's next
// event instead of trying recv() first. Private to src/http.
//
// Why: Asio starts every read with a speculative recv(). Right after a
// request is sent that recv() cannot succeed, since the answer is at least
// a round trip away; it fails with EAGAIN, and on the hosts we measure on a
// failed system call costs about 1 µs, about 3 % of a proxied request
// (docs/benchmarks.md, "Sends in batches": two of a proxied request's four
// receives fail). nginx skips that recv() the same way (its "ready" flag).
//
// When it is safe: only for the first read of the answer to a request that
// is still queued in the send batch (it has not left, so no byte of its
// answer can be here). What may be here is only what came while the
// connection was idle in the pool: a FIN, a reset or stray bytes. Each of
// those raised its event when no read was waiting, so skipping the recv()
// leaves it unread until the next event, and the next event comes: the
// request reaching a closed socket draws a reset, a failed send shuts our
// socket down, and the answer's bytes raise one each (edge-triggered epoll
// signals every arrival). The case left is a peer that shut its sending
// side and keeps reading without answering (a lingering close): nothing
// raises an event, and only a recv() tried at once would see its FIN. A
// server does that to a connection idle past its keep-alive timeout, so the
// Transport skips only on a fresh connection or one idle in the pool for
// under 250 ms (transport.cpp, kBriefIdle), and a server that lingers on a
// connection it has just answered keeps the read waiting until the
// per-try deadline, as any server that hangs does.
//
// Not for a server's next request (bytes of a pipelined request may have
// raised their event already) nor any read after a short read (a FIN that
// came with the last bytes raises no further event: Asio does not register
// EPOLLRDHUP). docs/architecture.md, "System calls on the request path".
//
// How: Asio 1.74's epoll reactor keeps, per descriptor, whether the next
// read should try at once (try_speculative_); an event sets it again. That
// member is private, so it is reached the one way C++ allows, through an
// explicit instantiation. Pinned to Boost 1.74 (Debian 12); elsewhere this
// does nothing and every read tries recv() first, as before.
#pragma once

#include "http/tls_stream.h"  // Socket

namespace disco::http::detail {

// True when the next read on `socket` will wait for the next event.
bool SkipFirstReceive(Socket& socket);

}  // namespace disco::http::detail
