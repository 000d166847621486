// The process executor's traffic with its children: queued jobs sent to idle
// children (a request with Refs to the child that owns them), and what the
// children send back (replies, the Refs in them, recycling after a reply).

#include "actors/detail/process_executor.hpp"
#include "gilkeeper/config/log.hpp"
#include "actors/wire.hpp"
#include "actors/worker.hpp"

#include <csignal>
#include <cstdint>
#include <deque>
#include <mutex>
#include <variant>

namespace gk::detail {

namespace {

// The epoch a request's Refs belong to: 0 when it has none, ~0 when it
// mixes epochs.
constexpr std::uint64_t kMixed = ~std::uint64_t{0};

void epoch_of(const Value& v, std::uint64_t& out) {
  switch (v.kind()) {
    case Value::Kind::ref: {
      auto e = v.as_ref().epoch();
      out = out == 0 || out == e ? e : kMixed;
      break;
    }
    case Value::Kind::list:
      for (auto& x : v.as_list())
        epoch_of(x, out);
      break;
    case Value::Kind::dict:
      for (auto& [k, x] : v.as_dict())
        epoch_of(x, out);
      break;
    default: break;
  }
}

void epoch_of(const CallRequest& c, std::uint64_t& out) {
  if (c.self)
    epoch_of(Value(c.self), out);
  for (auto& a : c.args)
    epoch_of(a, out);
  for (auto& [k, a] : c.kwargs)
    epoch_of(a, out);
}

std::uint64_t epoch_of(const AnyRequest& r) {
  std::uint64_t out = 0;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, CallRequest>)
          epoch_of(x, out);
        else if constexpr (std::is_same_v<T, GetattrRequest>) {
          if (x.object)
            epoch_of(Value(x.object), out);
        } else if constexpr (std::is_same_v<T, ReleaseRequest>)
          out = x.epoch;
        else if constexpr (std::is_same_v<T, BatchRequest>) {
          for (auto& c : x.calls)
            epoch_of(c, out);
        }
      },
      r);
  return out;
}

} // namespace

// A cancelled request that runs in a child is interrupted there: the child's
// cancel signal carries the request's id (see run_worker), so a signal that
// arrives after that request ended cancels nothing.
void ProcessExecutor::cancel(const std::shared_ptr<ReplySlot>& slot) {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    if (stopping_)
      return;
    cancels_.push_back(slot);
  }
  wake();
}

void ProcessExecutor::send_cancels() {
  std::vector<std::shared_ptr<ReplySlot>> cancels;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    cancels.swap(cancels_);
  }
  auto signal = [](Child& c, std::uint64_t id) {
    sigval v{};
    v.sival_ptr = reinterpret_cast<void*>(static_cast<std::uintptr_t>(id));
    ::sigqueue(c.pid, worker_cancel_signal(), v);
  };
  for (auto& slot : cancels)
    for (auto& c : children_) {
      if (c.state != Child::State::busy || c.pid <= 0)
        continue;
      if (c.job && c.job->slot == slot)
        signal(c, c.job_id);
      for (auto& [id, job] : c.nested)
        if (job.slot == slot)
          signal(c, id);
    }
}

// -- host calls ------------------------------------------------------------------

// A worker's Python code called gilkeeper.host.NAME: the host function runs
// on a gk-host thread here; requests it makes on the call's behalf go to
// that worker, whose interpreter waits for the call and serves them
// (send_nested); its result goes back as a host_reply (relay_host_results).
void ProcessExecutor::start_host_call(Child& c, wire::Frame& f) {
  auto fn = hosts_ ? hosts_->find(f.name) : nullptr;
  if (!fn) {
    send_frame(c, wire::encode_host_reply(f.id, hosts_ ? hosts_->not_exposed(f.name)
                                                       : Error(ErrorCode::bad_request, "this runtime has no host functions")));
    return;
  }
  auto nest = std::make_shared<HostNest>(this, true, f.name);
  nest->deadline = f.deadline;
  nest->child_epoch = c.epoch;
  nest->call_id = f.id;
  std::weak_ptr<ProcessExecutor> weak_self = weak_from_this();
  std::weak_ptr<HostNest> weak_nest = nest;
  nest->on_finish = [weak_self, weak_nest] {
    if (auto self = weak_self.lock()) {
      {
        std::lock_guard<std::mutex> lk(self->mutex_);
        self->host_done_.push_back(weak_nest);
      }
      self->wake();
    }
  };
  c.host_calls[f.id] = nest;
  hosts_->start(std::move(nest), std::move(fn), std::move(f.args));
}

void ProcessExecutor::relay_host_results() {
  std::vector<std::weak_ptr<HostNest>> done;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    done.swap(host_done_);
  }
  for (auto& weak : done) {
    auto nest = weak.lock();
    if (!nest)
      continue;
    Child* c = child_for_epoch(nest->child_epoch);
    if (!c)
      continue;  // the worker died
    auto it = c->host_calls.find(nest->call_id);
    if (it == c->host_calls.end() || it->second != nest)
      continue;  // the worker stopped waiting (host_cancel, its request ended)
    c->host_calls.erase(it);
    nest->close();
    auto result = nest->take().result;
    if (result) {
      wire::FdsOut fds;
      std::vector<char> frame;
      {
        detail::BufferChannelScope shm(&fds);
        frame = wire::encode_host_reply(nest->call_id, *result);
      }
      send_frame(*c, std::move(frame), fds.release());
    }
  }
}

bool ProcessExecutor::submit_nested(Job& job, HostNest& nest, SubmitKey) {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    if (stopping_ || !nest.open())
      return false;
    nested_in_.push_back(NestedJob{std::move(job), nest.child_epoch, nest.call_id});
  }
  wake();
  return true;
}

// Requests nested in a worker's host call go to that worker, busy as it is:
// its interpreter waits in the call and serves them.
void ProcessExecutor::send_nested() {
  std::vector<NestedJob> in;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    in.swap(nested_in_);
  }
  auto now = clock::now();
  for (auto& n : in) {
    Child* c = child_for_epoch(n.epoch);
    if (!c || c->state != Child::State::busy || !c->host_calls.count(n.call_id)) {
      detail::refuse(stats_, n.job, Error(ErrorCode::cancelled, n.job.label + ": the host call it was made for ended "
                                                                              "before it ran"));
      continue;
    }
    if (Error expired; !detail::may_start(stats_, n.job, now, expired)) {
      if (expired)
        detail::refuse(stats_, n.job, std::move(expired));
      continue;
    }
    auto id = ++next_request_id_;
    wire::FdsOut fds;
    std::vector<char> frame;
    {
      detail::BufferChannelScope shm(&fds);
      frame = wire::encode_nested_request(id, n.job.request);
    }
    c->nested.emplace(id, std::move(n.job));
    send_frame(*c, std::move(frame), fds.release());
  }
}

// The request that made a worker's host calls ended (its reply, a crash, a
// kill): their host functions are told (their token), and requests they
// nested that are still out fail with the request's error.
void ProcessExecutor::end_host_calls(Child& c, const Error& e) {
  for (auto& [id, nest] : c.host_calls) {
    nest->close();
    nest->token.cancel();
  }
  c.host_calls.clear();
  for (auto& [id, job] : c.nested)
    detail::refuse(stats_, job, e ? e : Error(ErrorCode::cancelled, job.label + ": the host call it was made for ended"));
  c.nested.clear();
}

// Notes the module of a call so that the next children import it early.
void ProcessExecutor::remember_module(const AnyRequest& r) {
  auto* call = std::get_if<CallRequest>(&r);
  if (!call || call->self || modules_seen_.size() >= 64)
    return;
  auto colon = call->target.find(':');
  if (colon != std::string::npos && colon > 0)
    modules_seen_.insert(call->target.substr(0, colon));
}

Child* ProcessExecutor::child_for_epoch(std::uint64_t epoch) {
  for (auto& c : children_)
    if (c.epoch == epoch && c.pid > 0 && c.state != Child::State::retiring && c.state != Child::State::dying)
      return &c;
  return nullptr;
}

// Sends queued jobs to idle children (least loaded = any idle one; a
// request with Refs goes to the child that owns them).
void ProcessExecutor::dispatch() {
  send_cancels();
  relay_host_results();
  send_nested();
  // A child whose call is past its deadline does not count as busy: its
  // caller has been told, it is only waiting to be killed, and the next
  // call should not wait for that (this is what the warm spare is for).
  std::size_t busy = 0;
  auto now_ = clock::now();
  for (auto& c : children_)
    busy += c.state == Child::State::busy && !(c.job && c.deadline.expired(now_)) ? 1 : 0;
  std::deque<Job> jobs;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    jobs.swap(queue_);
  }
  std::deque<Job> keep;
  std::vector<std::pair<Job, Error>> failed;
  std::vector<std::pair<Job, BatchReply>> held_only;
  auto now = clock::now();
  std::deque<Job> dropped;  // destroyed after the queue is put back
  while (!jobs.empty()) {
    Job job = std::move(jobs.front());
    jobs.pop_front();
    if (detail::answered_while_queued(stats_, job)) {
      dropped.push_back(std::move(job));
      continue;
    }
    std::uint64_t epoch = epoch_of(job.request);
    Child* target = nullptr;
    if (epoch == kMixed) {
      failed.emplace_back(std::move(job), Error(ErrorCode::bad_request, "a request cannot mix Refs of different worker processes"));
      continue;
    }
    if (epoch != 0) {
      target = child_for_epoch(epoch);
      if (!target) {
        if (job.slot)
          failed.emplace_back(std::move(job), Error(ErrorCode::stale_ref, "a Ref in this request is stale: the worker process that held its object is gone"));
        continue;
      }
      if (target->state != Child::State::ready) {
        keep.push_back(std::move(job));
        continue;
      }
    } else {
      if (busy >= workers_) {
        keep.push_back(std::move(job));
        continue;
      }
      for (auto& c : children_)
        if (c.state == Child::State::ready) {
          target = &c;
          break;
        }
      if (!target) {
        keep.push_back(std::move(job));
        continue;
      }
    }
    if (Error expired; !detail::may_start(stats_, job, now, expired)) {
      if (expired)
        failed.emplace_back(std::move(job), std::move(expired));
      continue;
    }
    // A quarantined call is answered in its turn without running: the
    // child stays free, and nothing new is spawned for it.
    if (Error quarantined = breaker_.quarantined(job.request, now)) {
      failed.emplace_back(std::move(job), std::move(quarantined));
      continue;
    }
    HeldBack held;
    if (auto* batch = std::get_if<BatchRequest>(&job.request)) {
      held = breaker_.hold_back(*batch, now);
      if (!held.empty() && batch->calls.empty()) {
        BatchReply all;
        CrashBreaker::merge(all, std::move(held));
        held_only.emplace_back(std::move(job), std::move(all));
        continue;
      }
    }
    remember_module(job.request);
    auto id = ++next_request_id_;
    if (!held.empty())
      held_back_.emplace(id, std::move(held));
    wire::FdsOut fds;  // large Buffers go as shared memory beside the frame
    std::vector<char> frame;
    {
      detail::BufferChannelScope shm(&fds);
      frame = wire::encode_request(id, job.request);
    }
    target->state = Child::State::busy;
    target->job = std::move(job);
    target->job_id = id;
    target->sent = clock::now();
    target->deadline = target->job->run_deadline(target->sent);
    busy++;
    send_frame(*target, std::move(frame), fds.release());  // a gone child shows as EOF
  }
  if (!keep.empty()) {
    std::lock_guard<std::mutex> lk(mutex_);
    for (auto it = keep.rbegin(); it != keep.rend(); ++it)
      queue_.push_front(std::move(*it));
  }
  for (auto& [job, e] : failed)
    detail::refuse(stats_, job, std::move(e));
  for (auto& [job, reply] : held_only)
    detail::reply_to(stats_, job, AnyReply(std::move(reply)));
}

// Gives Refs in a reply a release function that routes to their worker.
void ProcessExecutor::adopt_refs(Value& v) {
  switch (v.kind()) {
    case Value::Kind::ref: {
      auto& r = v.as_ref();
      std::weak_ptr<ProcessExecutor> weak = weak_from_this();
      live_refs_++;
      v = Value(Ref(std::make_shared<const detail::RefState>(
          r.id(), r.epoch(), r.type_name(), [weak](std::uint64_t id, std::uint64_t epoch) {
            if (auto ex = weak.lock()) {
              ex->live_refs_--;
              ex->enqueue(release_job(id, epoch));
            }
          })));
      break;
    }
    case Value::Kind::list:
      for (auto& x : v.as_list())
        adopt_refs(x);
      break;
    case Value::Kind::dict:
      for (auto& [k, x] : v.as_dict())
        adopt_refs(x);
      break;
    default: break;
  }
}

void ProcessExecutor::on_reply(Child& c, std::uint64_t id, AnyReply&& reply) {
  if (auto nested = c.nested.find(id); nested != c.nested.end()) {
    // A request nested in a host call: the worker stays busy with the
    // request that waits for that call.
    Job job = std::move(nested->second);
    c.nested.erase(nested);
    { AnyRequest spent = std::move(job.request); }
    if (auto* v = std::get_if<Expected<Value>>(&reply); v && v->has_value())
      adopt_refs(**v);
    stats_.timing(job.type, std::chrono::nanoseconds(0), clock::now() - job.enqueued);
    detail::reply_to(stats_, job, std::move(reply));
    return;
  }
  if (!c.job || c.job_id != id)
    return;  // a reply for a request we already failed
  end_host_calls(c, Error());
  Job job = std::move(*c.job);
  c.job.reset();
  { AnyRequest spent = std::move(job.request); }  // Refs in it release before the reply
  c.state = Child::State::ready;
  c.calls++;
  auto now = clock::now();
  stats_.timing(job.type, c.sent - job.enqueued, now - c.sent);
  if (auto held = held_back_.find(id); held != held_back_.end()) {
    if (auto* results = std::get_if<BatchReply>(&reply))
      CrashBreaker::merge(*results, std::move(held->second));
    held_back_.erase(held);
  }
  if (auto* v = std::get_if<Expected<Value>>(&reply)) {
    if (v->has_value())
      adopt_refs(**v);
  } else {
    for (auto& r : std::get<BatchReply>(reply).results)
      if (r.has_value())
        adopt_refs(*r);
  }
  if (c.deadline.expired(now))
    detail::mark_late(stats_, job, reply);
  detail::reply_to(stats_, job, std::move(reply));
  // Recycling: between calls, never during one.
  std::string cause;
  if (config_.runtime.max_calls > 0 && c.calls >= config_.runtime.max_calls)
    cause = "max_calls";
  else if (config_.runtime.max_memory > 0 && rss_of(c.pid) > config_.runtime.max_memory)
    cause = "max_memory";
  if (!cause.empty()) {
    count_restart(cause);
    retire(c);
  }
}

// Reads what a child sent; false when it is gone.
bool ProcessExecutor::service(Child& c) {
  bool alive = c.reader.fill(c.fd);
  while (auto body = c.reader.next()) {
    wire::FdsIn fds(c.reader.fds());
    detail::BufferChannelScope shm(&fds);
    auto f = wire::decode(body->data(), body->size());
    if (!f)
      return false;  // corrupt: treat as a crash
    if (f->kind == wire::FrameKind::ready) {
      if (f->error) {
        startup_error_ = f->error.to_string();
        return false;
      }
      if (c.state == Child::State::starting) {
        c.state = Child::State::ready;
        failed_starts_in_a_row_ = 0;
      }
    } else if (f->kind == wire::FrameKind::reply && f->reply) {
      if (f->denials > c.denials) {
        denials_ += f->denials - c.denials;
        c.denials = f->denials;
      }
      on_reply(c, f->id, std::move(*f->reply));
    } else if (f->kind == wire::FrameKind::host_call) {
      if (c.state == Child::State::busy)
        start_host_call(c, *f);
      else
        send_frame(c, wire::encode_host_reply(f->id, Error(ErrorCode::bad_request, "a host call outside a request")));
    } else if (f->kind == wire::FrameKind::host_cancel) {
      if (auto it = c.host_calls.find(f->id); it != c.host_calls.end()) {
        it->second->close();
        it->second->token.cancel();
        c.host_calls.erase(it);
      }
    } else if (f->kind == wire::FrameKind::stuck) {
      stuck_in_native(c, f->id);
    } else if (f->kind == wire::FrameKind::event && f->event) {
      // An alert or a trace of the worker's: the host's log says which
      // worker (the worker names itself; a malformed event is still logged).
      LogEvent& e = *f->event;
      if (e.name == "stack_dump") {
        // The answer to a dump's request (Runtime::dump), not for the log.
        {
          std::lock_guard<std::mutex> lk(mutex_);
          if (dump_ask_)
            dump_ask_->answers[c.pid] = e.text("dump");
        }
        dump_cv_.notify_all();
        continue;
      }
      if (!e.field("worker_pid"))
        e.with("worker_pid", static_cast<std::int64_t>(c.pid));
      if (e.name == "slow_call")
        stats_.slow(e.text("target"));
      else if (e.name == "gil_enabled")
        gil_enabled_in_a_worker_ = true;
      log::emit(std::move(e));
    }
  }
  return alive && !c.reader.corrupt();
}

} // namespace gk::detail
