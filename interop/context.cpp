#include "gilkeeper/interop/context.hpp"

#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

namespace gk {

namespace detail {

struct CancelState {
  std::atomic<bool> cancelled{false};
  std::mutex m;
  std::uint64_t next_id = 0;
  // Few at a time (one per request in flight under this token): a vector
  // beats a map here.
  std::vector<std::pair<std::uint64_t, std::function<void()>>> callbacks;

  void remove(std::uint64_t id) {
    std::function<void()> gone;  // destroyed outside the lock
    std::lock_guard<std::mutex> g(m);
    for (auto it = callbacks.begin(); it != callbacks.end(); ++it)
      if (it->first == id) {
        gone = std::move(it->second);
        *it = std::move(callbacks.back());
        callbacks.pop_back();
        break;
      }
  }
};

} // namespace detail

CancelRegistration::~CancelRegistration() {
  if (state_)
    state_->remove(id_);
}

CancelRegistration::CancelRegistration(CancelRegistration&& other) noexcept
  : state_(std::move(other.state_)), id_(other.id_) {}

CancelRegistration& CancelRegistration::operator=(CancelRegistration&& other) noexcept {
  if (this != &other) {
    if (state_)
      state_->remove(id_);
    state_ = std::move(other.state_);
    id_ = other.id_;
  }
  return *this;
}

CancelToken::CancelToken() : state_(std::make_shared<detail::CancelState>()) {}

void CancelToken::cancel() const {
  if (!state_)
    return;
  std::vector<std::pair<std::uint64_t, std::function<void()>>> run;
  {
    std::lock_guard<std::mutex> g(state_->m);
    if (state_->cancelled.exchange(true, std::memory_order_acq_rel))
      return;
    run.swap(state_->callbacks);
  }
  for (auto& [id, fn] : run)
    fn();
}

bool CancelToken::cancelled() const noexcept {
  return state_ && state_->cancelled.load(std::memory_order_acquire);
}

CancelRegistration CancelToken::on_cancel(std::function<void()> fn) const {
  if (!state_)
    return {};
  std::lock_guard<std::mutex> g(state_->m);
  if (state_->cancelled.load(std::memory_order_acquire))
    return {};
  auto id = ++state_->next_id;
  state_->callbacks.emplace_back(id, std::move(fn));
  return CancelRegistration(state_, id);
}

} // namespace gk
