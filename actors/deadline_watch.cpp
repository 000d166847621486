#include "actors/deadline_watch.hpp"
#include "actors/detail/join_or_detach.hpp"

#include <algorithm>
#include <pthread.h>

namespace gk {

namespace {
constexpr std::chrono::seconds kIdleHorizon{1};
}

bool ReplySlot::complete(AnyReply&& reply) {
  if (claim() < 0)
    return false;
  if (watch_)
    watch_->forget(*this);
  deliver(std::move(reply));
  return true;
}

void ReplySlot::abandon() {
  if (claim() >= 0 && watch_)
    watch_->forget(*this);
}

std::shared_ptr<DeadlineWatch> DeadlineWatch::start(std::chrono::nanoseconds prompt_wait,
                                                    std::chrono::nanoseconds verdict_wait) {
  std::shared_ptr<DeadlineWatch> w(new DeadlineWatch(prompt_wait, verdict_wait));
  w->self_ = w;
  w->thread_ = std::thread([raw = w.get()] { raw->run(); });
  return w;
}

DeadlineWatch::~DeadlineWatch() {
  stop();
}

void DeadlineWatch::watch(const std::shared_ptr<ReplySlot>& slot, const Deadline& deadline,
                          const std::string& label, Patience patience) {
  // Written before the request reaches the executor, never changed after:
  // whoever completes the slot reads it without a lock.
  slot->watch_ = self_.lock();
  bool wake = false;
  {
    std::lock_guard<std::mutex> g(m_);
    Key key{deadline.is_finite() ? deadline.when() : clock::time_point::max(), ++next_key_};
    slot->watch_key_ = key.second;
    slot->watch_at_ = key.first;
    entries_.emplace(key, Entry{slot, label, patience, false, false});
    wake = key.first < wake_;
  }
  if (wake)
    cv_.notify_one();
}

bool DeadlineWatch::cancel(ReplySlot& slot) {
  std::string label;
  bool wake = false, queued = false;
  {
    std::lock_guard<std::mutex> g(m_);
    auto it = entries_.find(Key{slot.watch_at_, slot.watch_key_});
    if (it == entries_.end())
      return false;
    if (slot.state() == ReplySlot::queued) {
      queued = true;
      label = std::move(it->second.label);
      entries_.erase(it);
    } else {
      // Running: its interrupted reply (with the Python type and traceback)
      // usually comes first; if not, the caller is told here.
      Entry e = std::move(it->second);
      entries_.erase(it);
      e.cancelled = true;
      e.extended = true;
      Key key{clock::now() + prompt_wait_, ++next_key_};
      slot.watch_key_ = key.second;
      slot.watch_at_ = key.first;
      entries_.emplace(key, std::move(e));
      wake = key.first < wake_;
    }
  }
  if (wake)
    cv_.notify_one();
  if (queued) {
    // If it started meanwhile, the executor sees cancel_requested() and
    // interrupts it; its reply is then dropped.
    int before = slot.claim();
    if (before >= 0)
      slot.deliver(Expected<Value>(cancelled_error(before, label)));
  }
  return true;
}

void DeadlineWatch::forget(ReplySlot& slot) {
  std::lock_guard<std::mutex> g(m_);
  entries_.erase(Key{slot.watch_at_, slot.watch_key_});
}

void DeadlineWatch::settle(ReplySlot& slot) {
  std::string label;
  bool cancelled = false;
  {
    std::lock_guard<std::mutex> g(m_);
    auto it = entries_.find(Key{slot.watch_at_, slot.watch_key_});
    if (it == entries_.end())
      return;  // answered, or being answered by the watch's thread
    label = std::move(it->second.label);
    cancelled = it->second.cancelled;
    entries_.erase(it);
  }
  int before = slot.claim();
  if (before >= 0)
    slot.deliver(Expected<Value>(cancelled ? cancelled_error(before, label) : deadline_error(before, label)));
}

std::size_t DeadlineWatch::watched() const {
  std::lock_guard<std::mutex> g(m_);
  return entries_.size();
}

void DeadlineWatch::stop() {
  std::map<Key, Entry> left;
  {
    std::lock_guard<std::mutex> g(m_);
    if (stop_)
      return;
    stop_ = true;
    left.swap(entries_);  // breaks the slot <-> watch cycles
  }
  cv_.notify_one();
  detail::join_or_detach(thread_);
}

void DeadlineWatch::run() {
  pthread_setname_np(pthread_self(), "gk-deadlines");
  std::unique_lock<std::mutex> lk(m_);
  while (!stop_) {
    if (entries_.empty()) {
      // Idle: look again a second from now. A request whose deadline is
      // later than that needs no wake-up (the common case: no notify and no
      // thread switch per request); an earlier one notifies.
      wake_ = clock::now() + kIdleHorizon;
      cv_.wait_until(lk, wake_);
      continue;
    }
    auto now = clock::now();
    auto first = entries_.begin();
    if (first->first.first > now) {
      // Slots without a deadline (watched for cancel() only) sort last.
      wake_ = std::min(first->first.first, now + kIdleHorizon);
      cv_.wait_until(lk, wake_);
      continue;
    }
    Entry e = std::move(first->second);
    entries_.erase(first);
    if (e.patience == Patience::queue && !e.cancelled && e.slot->state() == ReplySlot::running) {
      lk.unlock();
      e = Entry{};  // not under the lock: the slot's last reference may go here
      lk.lock();
      continue;
    }
    if (!e.extended && e.slot->state() == ReplySlot::running) {
      // Give the interrupted request a moment to answer with where it was.
      auto wait = e.patience == Patience::prompt ? prompt_wait_ : verdict_wait_;
      Key key{now + wait, ++next_key_};
      e.slot->watch_key_ = key.second;
      e.slot->watch_at_ = key.first;
      e.extended = true;
      entries_.emplace(key, std::move(e));
      continue;
    }
    lk.unlock();
    int before = e.slot->claim();
    if (before >= 0)
      e.slot->deliver(Expected<Value>(e.cancelled ? cancelled_error(before, e.label) : deadline_error(before, e.label)));
    e = Entry{};  // the slot's last reference may go here: not under the lock
    lk.lock();
  }
}

} // namespace gk
