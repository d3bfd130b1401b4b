// Reads that skip a first recv() that cannot succeed: the Transport's first
// read of an answer, and (with the send batch's peek) a server's read of
// the next request. Private to src/http.
//
// Why: Asio starts every read with a speculative recv(). Right after a
// request is sent that recv() cannot succeed, since the answer is at least
// a round trip away; it fails with EAGAIN, and on the hosts we measure on a
// failed system call costs about 1 µs, about 3 % of a proxied request
// (docs/benchmarks.md: two of a proxied request's four receives failed).
// nginx skips that recv() the same way (its "ready" flag).
//
// The rule: the read waits for the socket's next event instead, when
//  - the request is still queued in the send batch (it has not left, so no
//    byte of its answer can be here), and
//  - the connection comes from the pool and no event has come for it since
//    it went there (MarkQuiet when pooled, TakeQuiet when taken): nothing
//    arrived while it was idle, no FIN, no reset, no stray byte.
// Then every byte and every close that can concern the answer is still to
// come, and each raises an event (edge-triggered epoll signals every
// arrival; a failed send shuts our socket down, which raises one too).
// What is left: a FIN whose event came before the previous answer's last
// recv() (with its last bytes, say), from a server that said nothing of
// closing. If the server closed its socket, our request draws a reset,
// which raises an event, and the call goes to a fresh connection. If no
// reset comes back (a server that keeps the socket open to read and
// discard, a lingering close; a host that is gone; a firewall that drops
// the packet), the read waits until its per-try deadline, as with a server
// that hangs. Nothing short of a system call would tell. A fresh connection
// never skips: a server may shut it at once (refusing a client), and that
// event may have come already.
//
// Not, by itself, for a server's next request (bytes of a pipelined request
// may have raised their event already) nor any read after a short read (a
// FIN that came with the last bytes raises no further event: Asio does not
// register EPOLLRDHUP). A server's read of the next request skips only
// with the send batch's peek behind it, which wakes the read when something
// is there already (Connection::SkipReceiveUntilSent, send_batch.h).
// docs/architecture.md, "System calls on the request path".
//
// How: Asio 1.74's epoll reactor keeps, per descriptor, whether the next
// read should try at once (try_speculative_); every event sets it again.
// That member is private, so it is reached the one way C++ allows, through
// an explicit instantiation. Pinned to Boost 1.74 (Debian 12); elsewhere
// these do nothing and every read tries recv() first, as before.
//
// Thread safety: meant for an io_context run by one thread, as the send
// batch is; the descriptor's lock is taken, but an io_context made for one
// thread (BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO) has it switched off.
#pragma once

#include <cstdint>

#include "http/tls_stream.h"  // Socket

namespace disco::http::detail {

// The connection goes idle into a pool: from now on its next read will
// wait for an event, and TakeQuiet can tell whether one came.
void MarkQuiet(Socket& socket);

// The connection is taken from the pool: true if no event came since
// MarkQuiet (nothing arrived while it was idle). Either way its next read
// tries recv() at once again, unless SkipFirstReceive says otherwise.
bool TakeQuiet(Socket& socket);

// The next read on `socket` waits for the next event. For the first read
// of an answer whose request is still queued, on a connection TakeQuiet
// found quiet; and for a server's read of the next request, with the send
// batch's peek behind it (Connection::SkipReceiveUntilSent). True when it
// took effect.
bool SkipFirstReceive(Socket& socket);

// Has epoll report the socket again if it is ready now (bytes, a FIN or an
// error waiting): a read that skipped its first recv, parked while an
// event for what is already there came and went, then runs. One
// epoll_ctl(EPOLL_CTL_MOD), which queues an event for a ready descriptor;
// for the rare case the send batch's peek finds something (send_batch.h).
void WakeReader(Socket& socket);

// How many reads SkipFirstReceive sent to wait, in this process (tests).
std::uint64_t SkippedFirstReceives();

// Whether this build knows Asio's reactor (Boost 1.74, epoll): elsewhere no
// read is ever skipped (tests).
bool ReadReadinessKnown();

}  // namespace disco::http::detail
