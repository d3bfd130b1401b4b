#include "http/send_batch.h"

#include <liburing.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "disco/http/server.h"
#include "http/connection.h"
#include "http/cpu_limit.h"
#include "http/read_readiness.h"

namespace disco::http::detail {

namespace {

std::atomic<bool> g_batching{true};
std::atomic<std::uint64_t> g_flushes{0};
std::atomic<std::uint64_t> g_messages{0};
std::atomic<std::uint64_t> g_tails{0};
std::atomic<std::uint64_t> g_alone{0};
std::atomic<std::uint64_t> g_peeks{0};
std::atomic<std::uint64_t> g_woken{0};

// Entries per flush: more wait for the next one (a flush happens early).
constexpr unsigned kRingEntries = 128;
// A send and a peek per entry at most: every flush's operations fit the
// (empty) submission queue, so io_uring_get_sqe cannot fail there.
constexpr unsigned kRingSlots = 2 * kRingEntries;

// The scheduler's concurrency hint: 1 (or "unsafe") promises one thread.
bool RunByOneThread(asio::io_context& ioc) {
  const int hint = asio::use_service<asio::detail::scheduler>(ioc).concurrency_hint();
  return hint == 1 || !BOOST_ASIO_CONCURRENCY_HINT_IS_LOCKING(SCHEDULER, hint) ||
         !BOOST_ASIO_CONCURRENCY_HINT_IS_LOCKING(REACTOR_IO, hint);
}

// One non-blocking send, for a message alone or when the ring fails: the
// result as a CQE has it.
long SendNow(int fd, const std::string& bytes) {
  long sent;
  do {
    sent = ::syscall(SYS_sendto, fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                     nullptr, 0);
  } while (sent < 0 && errno == EINTR);
  return sent < 0 ? -errno : sent;
}

}  // namespace

struct SendBatch::Ring {
  io_uring ring{};
  char peeked = 0;  // where every peek puts its byte; never read
};

bool SendBatchingOn() { return g_batching.load(std::memory_order_relaxed); }

SendBatchStats SendBatchCounts() {
  return {g_flushes.load(std::memory_order_relaxed), g_messages.load(std::memory_order_relaxed),
          g_alone.load(std::memory_order_relaxed), g_tails.load(std::memory_order_relaxed),
          g_peeks.load(std::memory_order_relaxed), g_woken.load(std::memory_order_relaxed)};
}

SendBatch::SendBatch(asio::execution_context& context)
    : asio::execution_context::service(context), ioc_(static_cast<asio::io_context&>(context)) {}

SendBatch::~SendBatch() {
  if (ring_) io_uring_queue_exit(&ring_->ring);
}

void SendBatch::shutdown() {
  // The io_context is going away: its loop will not run the posted flush.
  // Sending now keeps the promise that queued bytes leave before a close.
  shut_down_ = true;
  Flush();
  entries_.clear();
}

// Whether `ring` works: a no-op submitted and completed. (A seccomp profile
// may allow io_uring_setup and refuse io_uring_enter.)
static bool Works(io_uring& ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (sqe == nullptr) return false;
  io_uring_prep_nop(sqe);
  if (io_uring_submit_and_wait(&ring, 1) != 1) return false;
  io_uring_cqe* cqe = nullptr;
  if (io_uring_peek_cqe(&ring, &cqe) != 0) return false;
  io_uring_cqe_seen(&ring, cqe);
  return true;
}

bool SendBatch::Start() {
  if (!SendBatchingOn() || !RunByOneThread(ioc_)) return false;
  auto ring = std::make_unique<Ring>();
  if (io_uring_queue_init(kRingSlots, &ring->ring, 0) != 0) return false;
  if (!Works(ring->ring)) {
    io_uring_queue_exit(&ring->ring);
    return false;
  }
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring->ring)) {
    can_peek_ = io_uring_opcode_supported(probe, IORING_OP_RECV) != 0;
    io_uring_free_probe(probe);
  }
  ring_ = std::move(ring);
  owner_ = std::this_thread::get_id();
  return true;
}

bool SendBatch::enabled() {
  if (!tried_) {
    tried_ = true;
    Start();
  }
  return ring_ != nullptr;
}

bool SendBatch::Queue(Connection& connection, std::string_view first, std::string_view second) {
  const std::size_t size = first.size() + second.size();
  if (size > kMaxBytes || flushing_ || !enabled()) return false;
  // A second thread would race the first (a hint of 1 is only a hint).
  if (std::this_thread::get_id() != owner_) return false;
  if (connection.outbox_ == Connection::Outbox::kQueued) {
    Entry& entry = entries_[connection.outbox_slot_];
    if (entry.bytes.size() + size <= kMaxBytes) {
      entry.bytes.append(first).append(second);
      return true;
    }
    Flush();
    if (connection.outbox_ != Connection::Outbox::kEmpty || connection.write_error_) return false;
  }
  if (used_ == kRingEntries) Flush();
  if (used_ == entries_.size()) entries_.emplace_back();
  Entry& entry = entries_[used_];
  entry.connection = connection.shared_from_this();
  entry.bytes.assign(first).append(second);
  connection.outbox_ = Connection::Outbox::kQueued;
  connection.outbox_slot_ = used_++;
  if (!flush_posted_) {
    flush_posted_ = true;
    asio::post(ioc_, [this] {
      flush_posted_ = false;
      Flush();
    });
  }
  return true;
}

bool SendBatch::CanPeekAfterSend(const Connection& connection) const {
  return can_peek_ && ring_ && !flushing_ && connection.outbox_ == Connection::Outbox::kQueued;
}

void SendBatch::PeekAfterSend(Connection& connection) {
  entries_[connection.outbox_slot_].peek = Entry::Peek::kWanted;
}

void SendBatch::Flush() {
  if (flushing_ || used_ == 0) return;
  flushing_ = true;
  const std::size_t count = used_;
  // The descriptor is read now, not when queued: a socket closed meanwhile
  // (only by a path that bypasses Connection::Close) reads as -1 and gets
  // EBADF, never another connection's bytes.
  //
  // A message alone is cheaper as one send than through the ring
  // (bench/send_cost.c 1: about 4.8 against 5.5 µs here), so the ring is for
  // two or more, or one and a peek; either way it leaves at the end of the
  // loop's turn.
  const bool use_ring = ring_ && (count > 1 || entries_[0].peek == Entry::Peek::kWanted);
  // How many of the first entries' sends the kernel took: the others go out
  // one by one below.
  std::size_t taken = 0;
  if (use_ring) {
    std::size_t slots = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const Entry& entry = entries_[i];
      const int fd = entry.connection->socket().native_handle();
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
      io_uring_prep_send(sqe, fd, entry.bytes.data(), entry.bytes.size(),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
      sqe->user_data = i << 1;
      ++slots;
      if (entry.peek == Entry::Peek::kWanted) {
        // After the send, in order (each completes inline): what is there
        // to read now, without taking it.
        sqe = io_uring_get_sqe(&ring_->ring);
        io_uring_prep_recv(sqe, fd, &ring_->peeked, 1, MSG_PEEK | MSG_DONTWAIT);
        sqe->user_data = (i << 1) | 1;
        ++slots;
      }
    }
    std::size_t submitted = 0;
    for (int attempts = 0; submitted < slots && attempts < 4; ++attempts) {
      const int r = io_uring_submit(&ring_->ring);
      if (r > 0) submitted += static_cast<std::size_t>(r);
    }
    // MSG_DONTWAIT: each operation completed inline, so its result is there
    // already; the wait is a formality that costs no system call.
    std::size_t seen = 0;
    while (seen < submitted) {
      io_uring_cqe* cqe = nullptr;
      const int r = io_uring_wait_cqe(&ring_->ring, &cqe);
      if (r == -EINTR) continue;
      if (r < 0) break;
      Entry& entry = entries_[cqe->user_data >> 1];
      if ((cqe->user_data & 1) != 0)
        SettlePeek(entry, cqe->res);
      else
        Settle(entry, cqe->res);
      io_uring_cqe_seen(&ring_->ring, cqe);
      ++seen;
    }
    if (submitted == slots && seen == submitted) {
      taken = count;
    } else {
      // The ring failed: what it did not take goes out one by one below,
      // and batching stops for this io_context.
      // An entry's send is taken when its slot is below `submitted`.
      for (std::size_t slot = 0; taken < count && slot < submitted; ++taken)
        slot += entries_[taken].peek == Entry::Peek::kNone ? 1 : 2;
      io_uring_queue_exit(&ring_->ring);
      ring_.reset();
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    Entry& entry = entries_[i];
    const bool pending = entry.connection->outbox_ == Connection::Outbox::kQueued;
    if (i >= taken) {
      Settle(entry, SendNow(entry.connection->socket().native_handle(), entry.bytes));
    } else if (pending) {
      // Handed to the ring, result lost: whether it left is unknown, so the
      // connection cannot be written to again.
      Settle(entry, -EIO);
    }
    // A peek not made or whose result was lost: the read looks for itself.
    if (entry.peek == Entry::Peek::kWanted) WakeReader(entry.connection->socket());
    entry.peek = Entry::Peek::kNone;
    entry.connection.reset();
  }
  g_flushes.fetch_add(1, std::memory_order_relaxed);
  g_messages.fetch_add(count, std::memory_order_relaxed);
  if (use_ring) {
    ++ring_flushes_;
    ring_messages_ += count;
  } else {
    g_alone.fetch_add(1, std::memory_order_relaxed);
  }
  used_ = 0;
  flushing_ = false;
  // The turn's sends are out: a moment for the kernel to account it.
  CpuLimitCheckpoint();
}

void SendBatch::SettlePeek(Entry& entry, long result) {
  entry.peek = Entry::Peek::kDone;
  g_peeks.fetch_add(1, std::memory_order_relaxed);
  // Nothing to read, no FIN, no error: whatever comes next raises an event.
  if (result == -EAGAIN || result == -EWOULDBLOCK) return;
  // Bytes, the end of the stream or an error are there, and the event that
  // announced them may have been taken before the read skipped its recv.
  g_woken.fetch_add(1, std::memory_order_relaxed);
  WakeReader(entry.connection->socket());
}

void SendBatch::Settle(Entry& entry, long result) {
  Connection& connection = *entry.connection;
  connection.outbox_ = Connection::Outbox::kEmpty;
  const auto size = static_cast<long>(entry.bytes.size());
  if (result == size) return;
  if (result == -EAGAIN || result == -EWOULDBLOCK) result = 0;
  if (result < 0) {
    connection.FailWrites(boost::system::error_code(static_cast<int>(-result),
                                                    asio::error::get_system_category()));
    return;
  }
  g_tails.fetch_add(1, std::memory_order_relaxed);
  const auto rest = std::string_view(entry.bytes).substr(static_cast<std::size_t>(result));
  if (shut_down_) {
    // No loop left to write the rest in.
    connection.FailWrites(asio::error::operation_aborted);
    return;
  }
  connection.WriteTail(rest);
}

}  // namespace disco::http::detail

namespace disco::http {

bool SetSendBatching(bool on) {
  detail::g_batching.store(on, std::memory_order_relaxed);
  if (!on) return false;
  // A ring made, tried and dropped: whether the kernel allows io_uring here.
  io_uring ring{};
  if (io_uring_queue_init(2, &ring, 0) != 0) return false;
  const bool works = detail::Works(ring);
  io_uring_queue_exit(&ring);
  return works;
}

}  // namespace disco::http
