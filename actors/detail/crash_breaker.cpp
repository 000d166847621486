// The process executor's crash breaker: poison calls are quarantined, a
// pool whose workers fail to start is degraded (see crash_breaker.hpp).

#include "actors/detail/crash_breaker.hpp"
#include "gilkeeper/actors/messages.hpp"

#include <caf/binary_serializer.hpp>

#include <algorithm>
#include <functional>
#include <string_view>
#include <type_traits>
#include <variant>

namespace gk::detail {

namespace {

std::uint64_t hash_bytes(const std::vector<char>& bytes) {
  return std::hash<std::string_view>{}(std::string_view(bytes.data(), bytes.size()));
}

} // namespace

std::size_t FingerprintHash::operator()(const Fingerprint& f) const noexcept {
  return std::hash<std::string>{}(f.target) ^ (f.hash + 0x9e3779b97f4a7c15ull + (f.hash << 6) + (f.hash >> 2));
}

CrashBreaker::CrashBreaker(const RuntimeConfig& config)
  : quarantine_after_(config.quarantine_after), quarantine_for_(config.quarantine_for),
    capacity_(static_cast<std::size_t>(std::max<std::uint64_t>(1, config.quarantine_size))),
    degraded_after_(std::max(1, config.degraded_after)), crash_window_(config.crash_window) {}

// -- fingerprints ---------------------------------------------------------------

// The arguments as they travel to the worker (CAF's binary serializer over
// the vocabulary's inspect overloads), without the deadline, which differs
// between repeats.
Fingerprint CrashBreaker::fingerprint_of(CallRequest& call) {
  scratch_.clear();
  caf::binary_serializer sink(nullptr, scratch_);
  std::uint8_t kind = 'c';
  if (sink(kind, call.args, call.kwargs, call.self))
    scratch_.assign(1, 'c');  // cannot happen for a request that was sent; never a match by accident
  return Fingerprint{call.target, hash_bytes(scratch_)};
}

std::optional<Fingerprint> CrashBreaker::fingerprint_of(AnyRequest& request) {
  return std::visit(
      [&](auto& r) -> std::optional<Fingerprint> {
        using T = std::decay_t<decltype(r)>;
        auto hashed = [&](std::string target, std::uint8_t kind, auto&... parts) -> std::optional<Fingerprint> {
          scratch_.clear();
          caf::binary_serializer sink(nullptr, scratch_);
          if (sink(kind, parts...))
            return std::nullopt;
          return Fingerprint{std::move(target), hash_bytes(scratch_)};
        };
        if constexpr (std::is_same_v<T, CallRequest>)
          return fingerprint_of(r);
        else if constexpr (std::is_same_v<T, BatchRequest>) {
          if (r.calls.size() != 1)
            return std::nullopt;
          return fingerprint_of(r.calls.front());
        } else if constexpr (std::is_same_v<T, EvalRequest>)
          return hashed("eval", 'e', r.expression);
        else if constexpr (std::is_same_v<T, ExecRequest>)
          return hashed("exec", 'x', r.code);
        else if constexpr (std::is_same_v<T, ImportRequest>)
          return hashed("import " + r.module, 'i', r.module);
        else if constexpr (std::is_same_v<T, GetattrRequest>)
          return hashed("getattr " + r.target, 'g', r.object);
        else
          return std::nullopt;  // a release: no caller, and nothing to tell apart
      },
      request);
}

// -- crashes --------------------------------------------------------------------

CrashVerdict CrashBreaker::crashed(AnyRequest* request, const Error& crash, const std::string& how,
                                   clock::time_point now) {
  CrashVerdict v;
  // Only a request that ran alone is blamed: which call of a batch did it
  // is unknown (a pipeline sends them again one at a time).
  auto f = request ? fingerprint_of(*request) : std::nullopt;
  if (!f)
    return v;
  Entry& e = remember(*f);
  e.crashes++;
  e.last_how = how;
  e.signal = crash.signal;
  e.exit_status = crash.exit_status;
  e.last_crash = now;
  v.crashes = e.crashes;
  if (quarantine_after_ > 0 && e.crashes >= quarantine_after_) {
    if (!e.quarantined_until)
      quarantined_targets_[e.fingerprint.target]++;
    e.quarantined_until = now + quarantine_for_;
    v.quarantined = true;
  }
  return v;
}

bool CrashBreaker::failed_start(clock::time_point now) {
  failures_.push_back(now);
  while (!failures_.empty() && now - failures_.front() > crash_window_)
    failures_.pop_front();
  if (static_cast<int>(failures_.size()) < degraded_after_)
    return false;
  last_count_ = static_cast<int>(failures_.size());
  failures_.clear();
  return true;
}

std::string CrashBreaker::describe_degraded() const {
  return std::to_string(last_count_) + " failed starts in the last "
         + format_duration(crash_window_);
}

CrashBreaker::Entry& CrashBreaker::remember(const Fingerprint& f) {
  auto it = index_.find(f);
  if (it != index_.end()) {
    entries_.splice(entries_.begin(), entries_, it->second);
    return entries_.front();
  }
  while (entries_.size() >= capacity_)
    evict_oldest();
  entries_.push_front(Entry{});
  entries_.front().fingerprint = f;
  index_.emplace(f, entries_.begin());
  return entries_.front();
}

void CrashBreaker::evict_oldest() {
  Entry& e = entries_.back();
  if (e.quarantined_until)
    lift(e);
  index_.erase(e.fingerprint);
  entries_.pop_back();
}

void CrashBreaker::lift(Entry& e) {
  e.quarantined_until.reset();
  auto it = quarantined_targets_.find(e.fingerprint.target);
  if (it != quarantined_targets_.end() && --it->second <= 0)
    quarantined_targets_.erase(it);
}

// -- quarantine -----------------------------------------------------------------

bool CrashBreaker::maybe_quarantined(const std::string& target) const {
  return quarantined_targets_.count(target) > 0;
}

Error CrashBreaker::quarantine_error(const Entry& e) const {
  Error q(ErrorCode::worker_crashed,
          e.fingerprint.target + ": quarantined: this call (the same target and arguments) crashed its worker process "
              + std::to_string(e.crashes) + " times (last: " + e.last_how + "); it is refused without running until "
              + format_duration(quarantine_for_) + " after its last crash");
  q.where = e.fingerprint.target;
  q.signal = e.signal;
  q.exit_status = e.exit_status;
  return q;
}

Error CrashBreaker::quarantined(AnyRequest& request, clock::time_point now) {
  if (quarantined_targets_.empty() || std::holds_alternative<BatchRequest>(request))
    return Error();
  if (auto* call = std::get_if<CallRequest>(&request); call && !maybe_quarantined(call->target))
    return Error();
  auto f = fingerprint_of(request);
  if (!f || !maybe_quarantined(f->target))
    return Error();
  auto it = index_.find(*f);
  if (it == index_.end() || !it->second->quarantined_until)
    return Error();
  Entry& e = *it->second;
  if (now >= *e.quarantined_until) {
    // On probation: it runs again, and a crash quarantines it again at once.
    lift(e);
    return Error();
  }
  return quarantine_error(e);
}

HeldBack CrashBreaker::hold_back(BatchRequest& batch, clock::time_point now) {
  HeldBack held;
  if (quarantined_targets_.empty())
    return held;
  for (std::size_t i = 0; i < batch.calls.size(); ++i) {
    if (!maybe_quarantined(batch.calls[i].target))
      continue;
    auto it = index_.find(fingerprint_of(batch.calls[i]));
    if (it == index_.end() || !it->second->quarantined_until)
      continue;
    Entry& e = *it->second;
    if (now >= *e.quarantined_until) {
      lift(e);
      continue;
    }
    held.emplace_back(i, quarantine_error(e));
  }
  if (held.empty())
    return held;
  std::vector<CallRequest> rest;
  rest.reserve(batch.calls.size() - held.size());
  auto h = held.begin();
  for (std::size_t i = 0; i < batch.calls.size(); ++i) {
    if (h != held.end() && h->first == i) {
      ++h;
      continue;
    }
    rest.push_back(std::move(batch.calls[i]));
  }
  batch.calls = std::move(rest);
  return held;
}

void CrashBreaker::merge(BatchReply& reply, HeldBack&& held) {
  if (held.empty())
    return;
  std::vector<Expected<Value>> out;
  out.reserve(reply.results.size() + held.size());
  auto h = held.begin();
  std::size_t next = 0;
  for (std::size_t i = 0; h != held.end() || next < reply.results.size(); ++i) {
    // A short reply (it cannot be, but never read past it) puts the rest last.
    if (h != held.end() && (h->first == i || next == reply.results.size())) {
      out.emplace_back(std::move(h->second));
      ++h;
    } else {
      out.push_back(std::move(reply.results[next++]));
    }
  }
  reply.results = std::move(out);
}

} // namespace gk::detail
