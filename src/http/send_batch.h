// SendBatch: the small plain writes of one io_context's handlers, handed to
// the kernel together, in one io_uring_enter per turn of the event loop,
// instead of one sendmsg each. Private to src/http.
//
// Why: a proxied request costs two receives and two sends, and on the hosts
// we measure on (paravirtualised VMs) the system calls themselves are most of
// its CPU: a null system call takes about 1 µs there, and one send on
// loopback 3-4 µs; 16 sends in one io_uring_enter cost about 1.4 µs each
// (docs/benchmarks.md, "Sends in batches"). Under load one turn of the loop
// answers tens of requests, so their sends go out together.
//
// How: WriteSoon (connection.h) copies a message of up to kMaxBytes into the
// batch and asks the io_context to run Flush() once: Asio queues that after
// the handlers already ready, so the batch goes out before the thread next
// waits for events, with at most one extra non-blocking epoll_wait in
// between. Each send is MSG_DONTWAIT, so io_uring completes it inline and
// Flush() sees every result before it returns. A flush of one message and
// no peek sends it with one send(): through the ring, one costs more than
// alone. A send the socket takes only in part leaves its rest to an asynchronous write (the connection's tail),
// which later writes on that connection wait for. A send that fails shuts
// the socket down, so the read its owner waits on ends. A connection closed
// with bytes in the batch sends them first (Connection::Close flushes), so
// no byte ever goes to a reused descriptor.
//
// A server's read of the next request, made while its answer still waits
// here, skips the recv() that could only fail (the client has not seen the
// answer yet) and has the batch look instead, after the answer's send and
// in the same io_uring_enter, whether anything waits to be read (a recv
// with MSG_PEEK; PeekAfterSend). Almost always nothing does, and the read
// waits for the next event: every arrival from then on raises one. When
// something does (pipelined bytes, a FIN that came with the request, a
// reset), the read is woken (WakeReader, read_readiness.h), since its
// event may have come and gone already.
//
// Where io_uring is not available (an old kernel, a seccomp profile that
// refuses it, io_uring_disabled), or batching is switched off
// (http::SetSendBatching), WriteSoon sends at once as before.
//
// Thread safety: none. A batch belongs to an io_context run by one thread,
// as its connections do (Server's workers, Transport's pools); batching is
// on only for an io_context made with a concurrency hint of 1 (or the
// unsafe hints), which promises that. One made so and run by several
// threads anyway must turn batching off (SetSendBatching(false)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "disco/detail/asio.h"

namespace disco::http::detail {

namespace asio = boost::asio;

class Connection;

class SendBatch final : public asio::execution_context::service {
 public:
  using key_type = SendBatch;
  static inline asio::execution_context::id id;
  // A larger message is sent at once: copying it would cost about what
  // batching saves.
  static constexpr std::size_t kMaxBytes = 8 * 1024;

  explicit SendBatch(asio::execution_context& context);
  ~SendBatch() override;

  // Batching is on for this io_context (io_uring works, nothing turned it off).
  bool enabled();
  // Adds `bytes` to what goes out to `connection` with the next flush
  // (appended to what is already queued for it, in order). False when the
  // batch cannot take it: the caller sends at once.
  bool Queue(Connection& connection, std::string_view first, std::string_view second);
  // Sends everything queued now and settles each connection's state.
  void Flush();
  // Whether PeekAfterSend can take `connection`: bytes are queued for it
  // and the ring can peek.
  bool CanPeekAfterSend(const Connection& connection) const;
  // After the next flush sends what is queued for `connection`, looks
  // whether bytes, a FIN or an error wait to be read on it, and if so wakes
  // its parked read (read_readiness.h, WakeReader). Only after
  // CanPeekAfterSend, and after the read skipped its first recv.
  void PeekAfterSend(Connection& connection);

  // This batch's flushes through the ring and the messages they carried
  // (tests: what one io_context did, apart from the others in the process).
  std::uint64_t ring_flushes() const { return ring_flushes_; }
  std::uint64_t ring_messages() const { return ring_messages_; }

 private:
  struct Entry {
    std::shared_ptr<Connection> connection;
    std::string bytes;  // kept between flushes: steady state allocates nothing
    // kWanted: peek after the send (PeekAfterSend); kDone: its result was seen.
    enum class Peek : std::uint8_t { kNone, kWanted, kDone } peek = Peek::kNone;
  };
  void shutdown() override;
  bool Start();
  void Settle(Entry& entry, long result);
  void SettlePeek(Entry& entry, long result);

  asio::io_context& ioc_;
  struct Ring;
  std::unique_ptr<Ring> ring_;  // null until first use, or when io_uring is unavailable
  bool can_peek_ = false;       // the ring knows IORING_OP_RECV (Linux 5.6)
  bool tried_ = false;          // whether Start() ran
  bool flush_posted_ = false;
  bool flushing_ = false;
  bool shut_down_ = false;
  std::thread::id owner_;  // the thread that queued first
  std::vector<Entry> entries_;
  std::size_t used_ = 0;  // entries_[0, used_) are queued
  std::uint64_t ring_flushes_ = 0;
  std::uint64_t ring_messages_ = 0;
};

// Whether SetSendBatching (disco/http/server.h) left batching on.
bool SendBatchingOn();

// What the batches of this process did, for tests and the docs' figures
// (relaxed increments per flush, not per message).
struct SendBatchStats {
  std::uint64_t flushes;   // flushes that sent what was queued
  std::uint64_t messages;  // messages sent in them (appends to one count once)
  std::uint64_t alone;     // flushes that used send(), not the ring (one message)
  std::uint64_t tails;     // sends the socket took only in part
  std::uint64_t peeks;     // peeks made after a send (PeekAfterSend)
  std::uint64_t woken;     // of them, those that found something and woke the read
                           // (a peek the ring failed to make wakes the read uncounted)
};
SendBatchStats SendBatchCounts();

}  // namespace disco::http::detail
