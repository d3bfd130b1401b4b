// Where the watch callbacks of one DNS registry run: a thread of their own,
// not the c-ares thread. A callback may therefore call the registry's
// blocking methods (List waits for the c-ares thread), start watches or
// destroy any watch handle, its own included; a slow callback delays the
// other callbacks of the registry, never its lookups. The Consul backend
// delivers the same way (consul_core.h).
//
// Bounded whatever a callback does: each watch has one Mailbox holding at
// most one update not yet delivered. A newer update replaces it (every update
// is a whole snapshot or an error, so the latest says all there is to say)
// and a mailbox waits in the queue at most once, so the queue never holds more
// entries than there are watches.
//
// Thread safety: Send and Close from any thread, Close also from inside the
// mailbox's own callback. One callback at a time per registry, in the order
// the mailboxes became ready.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "disco/registry.h"

namespace disco::dns {

class Mailbox {
 public:
  explicit Mailbox(WatchCallback callback) : callback_(std::move(callback)) {}

  // No callback starts after this returns: it waits for a running one,
  // unless called from inside it (then that one is the last). What the
  // callback captured is released here, or with the mailbox when the call
  // is its own.
  void Close();
  bool closed() const { return closed_.load(); }

 private:
  friend class DeliveryThread;
  void Deliver();  // delivery thread: the pending update, if any, to the callback

  std::mutex mu_;
  std::optional<WatchUpdate> pending_;  // guarded by mu_
  bool queued_ = false;                 // guarded by mu_: in the delivery queue

  std::mutex callback_mu_;  // held while the callback runs
  WatchCallback callback_;  // guarded by callback_mu_
  std::atomic<bool> closed_{false};
  std::atomic<std::thread::id> in_callback_{};  // the thread running the callback, while it runs
};

class DeliveryThread {
 public:
  DeliveryThread();
  // Stops the thread: joins it, or detaches it when the last owner is
  // dropped from inside a callback (it then ends when that callback returns).
  // Updates not yet delivered are dropped.
  ~DeliveryThread();
  DeliveryThread(const DeliveryThread&) = delete;
  DeliveryThread& operator=(const DeliveryThread&) = delete;

  // Leaves `update` in `mailbox` (replacing one not yet delivered) and queues
  // the mailbox unless it is queued already. Never blocks for long.
  void Send(const std::shared_ptr<Mailbox>& mailbox, WatchUpdate update);

 private:
  // Shared with the thread, so that a detached thread outlives this object.
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::shared_ptr<Mailbox>> ready;  // guarded by mu; at most one per mailbox
    bool stopping = false;                        // guarded by mu
  };
  static void Run(const std::shared_ptr<Queue>& queue);

  std::shared_ptr<Queue> queue_ = std::make_shared<Queue>();
  std::thread thread_;
};

}  // namespace disco::dns
