#include "registry/dns/dns_delivery.h"

#include "util/log.h"

namespace disco::dns {

void Mailbox::Close() {
  closed_.store(true);
  {
    std::lock_guard lock(mu_);
    pending_.reset();
  }
  // From inside its own callback this thread holds callback_mu_ already, and
  // the callback cannot be released while it runs.
  if (in_callback_.load() == std::this_thread::get_id()) return;
  std::lock_guard lock(callback_mu_);  // waits out a running callback
  callback_ = nullptr;
}

void Mailbox::Deliver() {
  std::optional<WatchUpdate> update;
  {
    std::lock_guard lock(mu_);
    update.swap(pending_);
    queued_ = false;
  }
  if (!update) return;
  std::lock_guard lock(callback_mu_);
  if (closed_.load() || !callback_) return;
  in_callback_.store(std::this_thread::get_id());
  try {
    callback_(*update);
  } catch (const std::exception& e) {
    log::Get().error("dns watch callback threw (ignored): {}", e.what());
  } catch (...) {
    log::Get().error("dns watch callback threw (ignored)");
  }
  in_callback_.store(std::thread::id());
}

DeliveryThread::DeliveryThread() : thread_([queue = queue_] { Run(queue); }) {}

DeliveryThread::~DeliveryThread() {
  {
    std::lock_guard lock(queue_->mu);
    queue_->stopping = true;
  }
  queue_->cv.notify_all();
  if (thread_.get_id() == std::this_thread::get_id())
    thread_.detach();
  else
    thread_.join();
}

void DeliveryThread::Send(const std::shared_ptr<Mailbox>& mailbox, WatchUpdate update) {
  {
    std::lock_guard lock(mailbox->mu_);
    if (mailbox->closed()) return;
    mailbox->pending_ = std::move(update);
    if (mailbox->queued_) return;
    mailbox->queued_ = true;
  }
  {
    std::lock_guard lock(queue_->mu);
    if (queue_->stopping) return;
    queue_->ready.push_back(mailbox);
  }
  queue_->cv.notify_one();
}

void DeliveryThread::Run(const std::shared_ptr<Queue>& queue) {
  for (;;) {
    std::shared_ptr<Mailbox> next;
    {
      std::unique_lock lock(queue->mu);
      queue->cv.wait(lock, [&] { return queue->stopping || !queue->ready.empty(); });
      if (queue->stopping) break;
      next = std::move(queue->ready.front());
      queue->ready.pop_front();
    }
    next->Deliver();
  }
  std::lock_guard lock(queue->mu);
  queue->ready.clear();
}

}  // namespace disco::dns
