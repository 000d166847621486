#include "actors/py_runtime_core.hpp"
#include "actors/detail/blocking_context.hpp"
#include "actors/detail/stats_collector.hpp"
#include "actors/host_functions.hpp"

#include <algorithm>
#include <condition_variable>
#include <iterator>
#include <mutex>

namespace gk {

namespace {

// A plain thread waits on this for its one reply.
class SyncSlot final : public ReplySlot {
public:
  /// Waits for the one reply. With a watch: at the deadline plus the prompt
  /// patience, settles the deadline from this thread (the watch's rule) so
  /// that a stuck request's caller is told without another thread's wake-up.
  AnyReply wait(const Deadline& deadline, DeadlineWatch* watch) {
    std::unique_lock<std::mutex> lk(m_);
    auto ready = [&] { return reply_.has_value(); };
    if (watch && deadline.is_finite() && !cv_.wait_until(lk, deadline.when() + watch->prompt_wait(), ready)) {
      lk.unlock();
      watch->settle(*this);
      lk.lock();
    }
    cv_.wait(lk, ready);
    return std::move(*reply_);
  }

protected:
  void deliver(AnyReply&& reply) override {
    {
      std::lock_guard<std::mutex> g(m_);
      reply_ = std::move(reply);
    }
    cv_.notify_one();
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  std::optional<AnyReply> reply_;
};

std::string label_of(const AnyRequest& request, const std::string& target) {
  return std::visit(
      [&](const auto& r) -> std::string {
        using T = std::decay_t<decltype(r)>;
        std::string kind = kind_name(r);
        if constexpr (std::is_same_v<T, CallRequest>) {
          if (r.self)
            return kind + " <" + r.self.type_name() + ">" + (r.target.empty() ? "" : "." + r.target);
        } else if constexpr (std::is_same_v<T, BatchRequest>) {
          // Named by its first call (O(1): no scan of a large batch).
          std::string label = kind + " of " + std::to_string(r.calls.size());
          if (r.calls.empty())
            return label;
          auto& first = r.calls.front();
          std::string call = first.self ? "call <" + first.self.type_name() + ">." + first.target : "call " + first.target;
          return r.calls.size() == 1 ? call : label + " (first: " + call + ")";
        }
        return target.empty() ? kind : kind + " " + target;
      },
      request);
}

} // namespace

std::string target_of(const AnyRequest& request) {
  return std::visit(
      [](const auto& r) -> std::string {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, CallRequest>)
          return r.self ? std::string() : r.target;
        else if constexpr (std::is_same_v<T, ImportRequest>)
          return r.module;
        else if constexpr (std::is_same_v<T, GetattrRequest>)
          return r.object ? std::string() : r.target;
        else
          return {};
      },
      request);
}

PyRuntime::PyRuntime(std::shared_ptr<Executor> executor, const Config& config, Watch watch)
  : executor_(std::move(executor)), policy_(config.timeouts) {
  // A pipeline waits for the runtime's verdict: a soft interrupt, or the
  // kill `grace` after the deadline; then a margin for the kill's reply.
  if (watch == Watch::on)
    watch_ = DeadlineWatch::start(config.timeouts.interrupted_reply_wait,
                                  config.timeouts.grace + std::chrono::milliseconds(100));
}

PyRuntime::~PyRuntime() {
  if (watch_)
    watch_->stop();
}

namespace {

// The context a request is made on behalf of: the caller's, or else that of
// the host function running on this thread (its requests nest by default).
const RequestContext* parent_of(const SubmitOptions& options) {
  return options.parent ? &*options.parent : detail::current_host_context();
}

} // namespace

Deadline PyRuntime::submit(AnyRequest request, std::shared_ptr<ReplySlot> slot, const SubmitOptions& options) {
  const RequestContext* parent = parent_of(options);
  Job job;
  std::string target = target_of(request);
  std::visit(
      [&](auto& r) {
        using T = std::decay_t<decltype(r)>;
        job.type = kind_name(r);
        if constexpr (std::is_same_v<T, ReleaseRequest>) {
          job.deadline = Deadline::never();
        } else {
          job.deadline = policy_.resolve(job.type, target, r.deadline, options.stage_timeout);
          if (parent)
            job.deadline = job.deadline.min(parent->deadline);
          r.deadline = job.deadline;  // a worker process reads it from the request
        }
      },
      request);
  job.label = label_of(request, target);
  submitted_[request.index()].fetch_add(1, std::memory_order_relaxed);
  if (slot)
    detail::tally_targets(executor_->targets(), request, job);
  job.request = std::move(request);
  const CancelToken* parent_token = parent && parent->cancel.can_be_cancelled() ? &parent->cancel : nullptr;
  bool cancellable = slot && (options.cancellable || parent_token);
  if (slot && watch_ && (job.deadline.is_finite() || cancellable)) {
    // A batch whose calls have deadlines of their own: its deadline is a
    // queue budget, and once running the calls' deadlines govern.
    auto* b = std::get_if<BatchRequest>(&job.request);
    bool per_call = b && b->call_timeout.count() > 0;
    watch_->watch(slot, job.deadline, job.label, per_call ? Patience::queue : options.patience);
  }
  if (slot && parent_token) {
    // Weak references only: the token may outlive this runtime.
    std::weak_ptr<ReplySlot> weak_slot = slot;
    std::weak_ptr<DeadlineWatch> weak_watch = watch_;
    std::weak_ptr<Executor> weak_executor = executor_;
    slot->cancel_registration_ = parent_token->on_cancel([weak_slot, weak_watch, weak_executor] {
      auto s = weak_slot.lock();
      auto ex = weak_executor.lock();
      if (s && ex)
        cancel(s, weak_watch.lock().get(), *ex);
    });
    // Cancelled before (no registration) or since (the callback may have
    // answered already): either way it never reaches the executor.
    if (parent_token->cancelled()) {
      slot->cancel_requested_.store(true, std::memory_order_seq_cst);
      slot->complete(Expected<Value>(cancelled_error(ReplySlot::queued, job.label)));
      return job.deadline;
    }
  }
  job.slot = std::move(slot);
  Deadline deadline = job.deadline;
  // Made by a host function on behalf of a Python call of this runtime: the
  // interpreter that waits for that call serves it (docs/host-functions.md).
  if (parent && parent->host_call && parent->host_call->executor == executor_.get() && parent->host_call->nestable
      && executor_->submit_nested(job, *parent->host_call, SubmitKey{}))
    return deadline;
  executor_->submit(std::move(job), SubmitKey{});
  return deadline;
}

void PyRuntime::cancel(const std::shared_ptr<ReplySlot>& slot) {
  if (slot)
    cancel(slot, watch_.get(), *executor_);
}

void PyRuntime::cancel(const std::shared_ptr<ReplySlot>& slot, DeadlineWatch* watch, Executor& executor) {
  if (slot->state() == ReplySlot::done)
    return;
  slot->cancel_requested_.store(true, std::memory_order_seq_cst);
  if (!(watch && watch->cancel(*slot)) && slot->state() == ReplySlot::queued) {
    // Not watched (a worker process's own runtime): answer a queued
    // request here.
    int before = slot->claim();
    if (before >= 0)
      slot->deliver(Expected<Value>(cancelled_error(before, "the request")));
  }
  executor.cancel(slot);
}

AnyReply PyRuntime::ask(AnyRequest request, const SubmitOptions& options) {
  // Where this thread cannot wait (see blocking_context.hpp): refused before
  // it is submitted, so it is counted nowhere and never runs.
  if (const char* context = detail::blocking_context()) {
    std::string label = label_of(request, target_of(request));
    Error e = detail::deadlock_error(label, context);
    e.where = where_of(label);
    return Expected<Value>(std::move(e));
  }
  // A host function called from a Python thread of the code's own cannot
  // wait for this runtime: only the interpreter's thread serves nested
  // requests, and it may be the one waiting for that Python thread.
  if (const RequestContext* parent = parent_of(options);
      parent && parent->host_call && parent->host_call->executor == executor_.get() && !parent->host_call->nestable) {
    std::string label = label_of(request, target_of(request));
    Error e = detail::deadlock_error(label, detail::kHostFromPythonThread);
    e.where = where_of(label);
    return Expected<Value>(std::move(e));
  }
  auto slot = std::make_shared<SyncSlot>();
  // The caller settles its own deadline only where the watch would answer
  // promptly (not a batch whose calls have deadlines of their own).
  auto* b = std::get_if<BatchRequest>(&request);
  bool settles = options.patience == Patience::prompt && !(b && b->call_timeout.count() > 0);
  Deadline deadline = submit(std::move(request), slot, options);
  return slot->wait(deadline, settles ? watch_.get() : nullptr);
}

Stats PyRuntime::stats() const {
  // The message types in AnyRequest's order.
  static constexpr const char* kTypes[] = {"import", "call", "eval", "exec", "getattr", "release", "batch"};
  static_assert(std::size(kTypes) == std::variant_size_v<AnyRequest>);
  Stats s = executor_->stats();
  s.targets = executor_->targets().snapshot();
  s.slow_calls = executor_->targets().slow_calls();
  for (std::size_t i = 0; i < submitted_.size(); ++i) {
    auto n = submitted_[i].load(std::memory_order_relaxed);
    if (n == 0)
      continue;
    auto it = std::find_if(s.types.begin(), s.types.end(), [&](const TypeStats& t) { return t.type == kTypes[i]; });
    if (it == s.types.end()) {
      s.types.emplace_back();
      it = std::prev(s.types.end());
      it->type = kTypes[i];
    }
    it->submitted = n;
  }
  return s;
}

ShutdownReport PyRuntime::shutdown(std::chrono::nanoseconds grace) {
  auto report = executor_->shutdown(grace);
  if (watch_)
    watch_->stop();
  return report;
}

} // namespace gk
