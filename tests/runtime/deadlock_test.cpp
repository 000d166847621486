// Deadlock detection (`[debug.gil] detect_deadlock`): a blocking call from
// where it cannot make progress — a worker actor's handler, a scheduler
// thread of the runtime's own actor system, the interpreter's own thread —
// answers `deadlock` at once, names the context, and is never submitted;
// asynchronous entry points stay allowed there.
#include "../support.hpp"

#include "actors/detail/blocking_context.hpp"
#include "runtime/detail/runtime_impl.hpp"

#include "gilkeeper/actors/messages.hpp"
#include "gilkeeper/actors/py_runtime.hpp"
#include "gilkeeper/runtime/workers.hpp"

#include <catch2/catch.hpp>

#include <caf/all.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <pthread.h>
#include <thread>

using namespace gk;
using namespace std::chrono_literals;

namespace {

const RequestOptions kLong = RequestOptions::with_deadline(Deadline::after(std::chrono::seconds(30)));

Config no_detection() {
  return test::test_config("[debug.gil]\ndetect_deadlock = false\n");
}

// The name a worker's deadlock error gives it.
std::string worker_name(const worker_actor& w) {
  return "worker actor \"gk.worker#" + std::to_string(w.id()) + "\"";
}

// The counters of one message type (zeros when it was never seen).
TypeStats stats_of(Runtime& rt, const std::string& type) {
  for (auto& t : rt.stats().types)
    if (t.type == type)
      return t;
  return TypeStats{};
}

// The time a blocking call in a handler took, in ms, and its result.
struct Timed {
  std::mutex m;
  double ms = -1;
  Expected<Value> result = Error(ErrorCode::internal, "the handler did not run");
  void set(double t, Expected<Value> r) {
    std::lock_guard<std::mutex> g(m);
    ms = t;
    result = std::move(r);
  }
};

std::string thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

} // namespace

TEST_CASE("deadlock and node_lost: the error codes have names both ways, after the older codes", "[deadlock]") {
  CHECK(std::string(to_string(ErrorCode::deadlock)) == "deadlock");
  CHECK(error_code_from_string("deadlock") == ErrorCode::deadlock);
  CHECK(error_code_from_string("node_lost") == ErrorCode::node_lost);
  CHECK(kLastErrorCode == ErrorCode::node_lost);
  CHECK(static_cast<int>(ErrorCode::node_lost) == 16);
  // The codes before it kept their numbers.
  CHECK(static_cast<int>(ErrorCode::cancelled) == 14);
  CHECK(static_cast<int>(ErrorCode::deadlock) == 15);
  for (int i = 1; i <= static_cast<int>(kLastErrorCode); ++i) {
    auto code = static_cast<ErrorCode>(i);
    INFO("code " << i);
    CHECK(error_code_from_string(to_string(code)) == code);
  }
  // Through CAF's error and back (a worker's reply takes this way).
  Error e(ErrorCode::deadlock, "call m:f: a blocking call made somewhere");
  CHECK(from_caf_error(to_caf_error(e)) == e);
}

TEST_CASE("deadlock: a blocking scope marks its own thread only, nests and restores", "[deadlock]") {
  CHECK(detail::blocking_context() == nullptr);
  {
    detail::BlockingScope outer("in the outer scope");
    CHECK(std::string(detail::blocking_context()) == "in the outer scope");
    const char* elsewhere = "unset";
    std::thread([&] { elsewhere = detail::blocking_context(); }).join();
    CHECK(elsewhere == nullptr);
    {
      detail::BlockingScope inner("in the inner scope");
      CHECK(std::string(detail::blocking_context()) == "in the inner scope");
      {
        detail::BlockingScope none(nullptr);  // leaves the mark as it is
        CHECK(std::string(detail::blocking_context()) == "in the inner scope");
      }
    }
    CHECK(std::string(detail::blocking_context()) == "in the outer scope");
  }
  CHECK(detail::blocking_context() == nullptr);
  Error e = detail::deadlock_error("call m:f", "in a test");
  CHECK(e.code == ErrorCode::deadlock);
  CHECK(e.message == "call m:f: a blocking call made in a test");
}

TEST_CASE("deadlock: every blocking entry point refuses on a marked thread and submits nothing",
          "[deadlock][runtime]") {
  Runtime rt(test::test_config());
  REQUIRE(rt.call("gk_testmod:identity", {1}, {}, kLong).has_value());
  auto box = rt.call_ref("gk_testmod:make_box", {5}, {}, kLong);
  REQUIRE(box.has_value());
  auto calls_before = stats_of(rt, "call");
  std::vector<std::pair<std::string, Error>> refused;
  std::thread([&] {
    detail::BlockingScope marked("in the test's marked thread");
    auto keep = [&](const std::string& what, const Error& e) { refused.emplace_back(what, e); };
    auto t0 = std::chrono::steady_clock::now();
    keep("call", rt.call("gk_testmod:identity", {2}, {}, kLong).error());
    keep("call on a Ref", rt.call(*box, "total", {}, {}, kLong).error());
    keep("call(CallRequest)", rt.call(CallRequest{"gk_testmod:identity", {3}}).error());
    keep("call_ref", rt.call_ref("gk_testmod:make_box", {4}, {}, kLong).error());
    keep("eval", rt.eval("1 + 1", kLong).error());
    keep("eval_ref", rt.eval_ref("[1]", kLong).error());
    keep("exec", rt.exec("x = 1", kLong).error());
    keep("import_module", rt.import_module("json", kLong).error());
    keep("getattr", rt.getattr("gk_testmod:identity", kLong).error());
    keep("getattr on a Ref", rt.getattr(*box, "value", kLong).error());
    keep("batch", rt.batch({CallRequest{"gk_testmod:identity", {5}}}, kLong).error());
    keep("release", rt.release(*box).error());
    INFO("all refused within " << test::ms_since(t0) << " ms");
    CHECK(test::ms_since(t0) < 100);
  }).join();
  REQUIRE(refused.size() == 12);
  for (auto& [what, e] : refused) {
    INFO(what << ": " << e.to_string());
    CHECK(e.code == ErrorCode::deadlock);
    CHECK(e.message.find("a blocking call made in the test's marked thread") != std::string::npos);
  }
  CHECK(refused[0].second.message == "call gk_testmod:identity: a blocking call made in the test's marked thread");
  CHECK(refused[0].second.where == "gk_testmod:identity");
  // Nothing was submitted: no call was counted at the front door or in the
  // executor, and the Ref was not released.
  auto calls_after = stats_of(rt, "call");
  CHECK(calls_after.submitted == calls_before.submitted);
  CHECK(calls_after.calls == calls_before.calls);
  CHECK(stats_of(rt, "eval").submitted == 0);
  CHECK(stats_of(rt, "batch").submitted == 0);
  CHECK(stats_of(rt, "release").submitted == 0);
  auto value = rt.getattr(*box, "value", kLong);
  REQUIRE(value.has_value());
  CHECK(value->as_int() == 5);
  // The same thread, unmarked, is served.
  auto r = rt.call("gk_testmod:identity", {6}, {}, kLong);
  REQUIRE(r.has_value());
  CHECK(r->as_int() == 6);
}

TEST_CASE("deadlock: Runtime::call in a worker's handler is refused at once, naming the worker",
          "[deadlock][workers]") {
  Runtime rt(test::test_config());
  REQUIRE(rt.call("gk_testmod:identity", {1}, {}, kLong).has_value());
  auto timed = std::make_shared<Timed>();
  auto w = spawn_worker(rt, [&rt, timed](const Value& x) -> WorkerReply {
    auto t0 = std::chrono::steady_clock::now();
    auto r = rt.call("gk_testmod:identity", {x}, {}, kLong);
    timed->set(test::ms_since(t0), r);
    return r;
  });
  auto submitted = stats_of(rt, "call").submitted;
  auto r = ask(rt, w, Value(7), Deadline::after(10s));
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().to_string());
  CHECK(r.error().code == ErrorCode::deadlock);
  CHECK(r.error().message.find("from the handler of " + worker_name(w)) != std::string::npos);
  CHECK(r.error().message.find("use WorkerReply::python") != std::string::npos);
  CHECK(r.error().message.rfind("call gk_testmod:identity: ", 0) == 0);
  {
    std::lock_guard<std::mutex> g(timed->m);
    INFO("the handler's call was refused after " << timed->ms << " ms");
    CHECK(timed->ms >= 0);
    CHECK(timed->ms < 100);
  }
  CHECK(stats_of(rt, "call").submitted == submitted);
  // The runtime and the worker keep serving.
  auto next = rt.call("gk_testmod:identity", {8}, {}, kLong);
  REQUIRE(next.has_value());
  CHECK(next->as_int() == 8);
  auto again = ask(rt, w, Value(9), Deadline::after(10s));
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().code == ErrorCode::deadlock);
}

TEST_CASE("deadlock: Runtime::call in a worker's handler is refused in process isolation too",
          "[deadlock][workers][process]") {
  Runtime rt(test::process_config());
  REQUIRE(rt.call("gk_testmod:identity", {1}, {}, kLong).has_value());
  auto w = spawn_worker(rt, [&rt](const Value& x) -> WorkerReply { return rt.call("gk_testmod:identity", {x}, {}, kLong); });
  auto r = ask(rt, w, Value(7), Deadline::after(10s));
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().to_string());
  CHECK(r.error().code == ErrorCode::deadlock);
  CHECK(r.error().message.find(worker_name(w)) != std::string::npos);
  REQUIRE(rt.call("gk_testmod:identity", {2}, {}, kLong).has_value());
}

TEST_CASE("deadlock: with detect_deadlock = false a handler's Runtime::call blocks and completes",
          "[deadlock][workers]") {
  Runtime rt(no_detection());
  REQUIRE(rt.call("gk_testmod:identity", {1}, {}, kLong).has_value());
  auto w = spawn_worker(rt, [&rt](const Value& x) -> WorkerReply {
    // The scheduler thread is held meanwhile, but a plain call does not
    // need it: the old behaviour.
    return rt.call("gk_testmod:identity", {x}, {}, kLong);
  });
  auto r = ask(rt, w, Value(7), Deadline::after(10s));
  INFO((r ? std::string("ok") : r.error().to_string()));
  REQUIRE(r.has_value());
  CHECK(r->as_int() == 7);
}

TEST_CASE("deadlock: Future::get in a worker's handler is refused and the call keeps its one reply",
          "[deadlock][workers][future]") {
  Runtime rt(test::test_config());
  REQUIRE(rt.call("gk_testmod:identity", {1}, {}, kLong).has_value());
  auto timed = std::make_shared<Timed>();
  std::promise<Future<Value>> kept;
  auto kept_future = kept.get_future();
  std::atomic<bool> waits_returned_false{false};
  auto w = spawn_worker(rt, [&](const Value& seconds) -> WorkerReply {
    auto f = rt.call_async("gk_testmod:sleep_for", {seconds}, {}, kLong);  // allowed: it does not block
    auto t0 = std::chrono::steady_clock::now();
    f.wait();                                   // returns at once
    bool in_time = f.wait_for(2s);              // false at once
    bool until = f.wait_until(Deadline::clock::now() + 2s);
    auto r = f.get();                           // deadlock
    timed->set(test::ms_since(t0), r);
    waits_returned_false = !in_time && !until;
    kept.set_value(f);
    return r;
  });
  auto r = ask(rt, w, Value(0.3), Deadline::after(10s));
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().to_string());
  CHECK(r.error().code == ErrorCode::deadlock);
  CHECK(r.error().message.rfind("Future::get: a blocking call made from the handler of " + worker_name(w), 0) == 0);
  {
    std::lock_guard<std::mutex> g(timed->m);
    INFO("the handler's waits and get() took " << timed->ms << " ms");
    CHECK(timed->ms >= 0);
    CHECK(timed->ms < 100);
  }
  CHECK(waits_returned_false.load());
  // The request was submitted by call_async and still gets its one reply,
  // which a plain thread may take.
  REQUIRE(kept_future.wait_for(5s) == std::future_status::ready);
  auto f = kept_future.get();
  auto late = f.get();
  REQUIRE(late.has_value());
  CHECK(late->as_double() == 0.3);
  CHECK_FALSE(f.get().has_value());  // taken: exactly one reply
}

TEST_CASE("deadlock: a ready future's get in a handler is not refused", "[deadlock][workers][future]") {
  Runtime rt(test::test_config());
  auto w = spawn_worker(rt, [&rt](const Value&) -> WorkerReply {
    // Answered before it is returned (an invalid handle): get() does not wait.
    auto f = ask_async(rt, worker_actor{}, Value(1));
    return f.get();
  });
  auto r = ask(rt, w, Value(1), Deadline::after(10s));
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().to_string());
  CHECK(r.error().code == ErrorCode::bad_request);
}

TEST_CASE("deadlock: gk::ask in a worker's handler is refused", "[deadlock][workers]") {
  Runtime rt(test::test_config());
  auto inner = spawn_worker(rt, [](const Value& x) -> WorkerReply { return x; });
  auto outer = spawn_worker(rt, [&rt, inner](const Value& x) -> WorkerReply { return ask(rt, inner, x, Deadline::after(10s)); });
  auto r = ask(rt, outer, Value(3), Deadline::after(10s));
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().to_string());
  CHECK(r.error().code == ErrorCode::deadlock);
  CHECK(r.error().message.rfind("ask: a blocking call made from the handler of " + worker_name(outer), 0) == 0);
}

TEST_CASE("deadlock: a continuation of a worker's Python call is refused a blocking call too",
          "[deadlock][workers]") {
  Runtime rt(test::test_config());
  auto w = spawn_worker(rt, [&rt](const Value& x) -> WorkerReply {
    return WorkerReply::python(CallRequest{"gk_testmod:identity", {x}}).then([&rt](Expected<Value> v) -> WorkerReply {
      if (!v)
        return v.error();
      return rt.call("gk_testmod:identity", {*v}, {}, kLong);
    });
  });
  auto r = ask(rt, w, Value(4), Deadline::after(10s));
  REQUIRE_FALSE(r.has_value());
  INFO(r.error().to_string());
  CHECK(r.error().code == ErrorCode::deadlock);
  CHECK(r.error().message.find(worker_name(w)) != std::string::npos);
}

TEST_CASE("deadlock: asynchronous entry points still work from a worker's handler", "[deadlock][workers][future]") {
  Runtime rt(test::test_config());
  REQUIRE(rt.call("gk_testmod:identity", {1}, {}, kLong).has_value());
  auto inner = spawn_worker(rt, [](const Value& x) -> WorkerReply {
    return WorkerReply::python(CallRequest{"gk_testmod:add", {x, 100}});
  });
  std::mutex m;
  std::vector<Future<Value>> futures;
  auto w = spawn_worker(rt, [&](const Value& x) -> WorkerReply {
    {
      std::lock_guard<std::mutex> g(m);
      futures.push_back(rt.call_async("gk_testmod:add", {x, 10}, {}, kLong));
      futures.push_back(rt.eval_async("2 + 3", kLong));
      futures.push_back(ask_async(rt, inner, x));
    }
    return WorkerReply::python(CallRequest{"gk_testmod:add", {x, 1}}).then([&m, &futures, &rt, x](Expected<Value> v) -> WorkerReply {
      std::lock_guard<std::mutex> g(m);
      futures.push_back(rt.call_async("gk_testmod:add", {x, 20}, {}, kLong));
      return v;
    });
  });
  auto r = ask(rt, w, Value(1), Deadline::after(10s));
  INFO((r ? std::string("ok") : r.error().to_string()));
  REQUIRE(r.has_value());
  CHECK(r->as_int() == 2);
  std::vector<std::int64_t> got;
  {
    std::lock_guard<std::mutex> g(m);
    REQUIRE(futures.size() == 4);
    for (auto& f : futures) {  // a plain thread may wait
      auto v = f.get();
      INFO("future " << got.size() << ": " << (v ? std::string("ok") : v.error().to_string() + " " + v.error().traceback));
      REQUIRE(v.has_value());
      got.push_back(v->as_int());
    }
  }
  CHECK(got == std::vector<std::int64_t>{11, 5, 101, 21});
}

TEST_CASE("deadlock: an event-based actor on the runtime's own system is refused a blocking call",
          "[deadlock][caf]") {
  Runtime rt(test::test_config());
  REQUIRE(rt.call("gk_testmod:identity", {1}, {}, kLong).has_value());
  auto timed = std::make_shared<Timed>();
  std::promise<std::string> where;
  auto done = where.get_future();
  auto a = rt.system().spawn([&rt, timed, &where](caf::event_based_actor*) -> caf::behavior {
    return {[&rt, timed, &where](int x) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = rt.call("gk_testmod:identity", {x}, {}, kLong);
      timed->set(test::ms_since(t0), r);
      where.set_value(thread_name());
    }};
  });
  caf::anon_send(a, 5);
  REQUIRE(done.wait_for(10s) == std::future_status::ready);
  CHECK(done.get() == "caf.multiplexer");
  {
    std::lock_guard<std::mutex> g(timed->m);
    REQUIRE_FALSE(timed->result.has_value());
    INFO(timed->result.error().to_string());
    CHECK(timed->result.error().code == ErrorCode::deadlock);
    CHECK(timed->result.error().message.find("on a scheduler thread of the runtime's own actor system")
          != std::string::npos);
    CHECK(timed->ms < 100);
  }
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  // The runtime keeps serving.
  REQUIRE(rt.call("gk_testmod:identity", {2}, {}, kLong).has_value());
}

TEST_CASE("deadlock: actors of the runtime's own system with a thread of their own may block",
          "[deadlock][caf]") {
  Runtime rt(test::test_config());
  std::promise<Expected<Value>> detached_result;
  auto detached_done = detached_result.get_future();
  auto d = rt.system().spawn<caf::detached>([&rt, &detached_result](caf::event_based_actor*) -> caf::behavior {
    return {[&rt, &detached_result](int x) { detached_result.set_value(rt.call("gk_testmod:identity", {x}, {}, kLong)); }};
  });
  caf::anon_send(d, 6);
  REQUIRE(detached_done.wait_for(10s) == std::future_status::ready);
  auto r = detached_done.get();
  INFO((r ? std::string("ok") : r.error().to_string()));
  REQUIRE(r.has_value());
  CHECK(r->as_int() == 6);
  caf::anon_send_exit(d, caf::exit_reason::user_shutdown);
  // A scoped actor runs on the host's thread: it blocks as it likes.
  caf::scoped_actor self{rt.system()};
  auto again = rt.call("gk_testmod:identity", {7}, {}, kLong);
  REQUIRE(again.has_value());
}

TEST_CASE("deadlock: with detect_deadlock = false an actor on the runtime's own system may block",
          "[deadlock][caf]") {
  Runtime rt(no_detection());
  std::promise<Expected<Value>> result;
  auto done = result.get_future();
  auto a = rt.system().spawn([&rt, &result](caf::event_based_actor*) -> caf::behavior {
    return {[&rt, &result](int x) { result.set_value(rt.call("gk_testmod:identity", {x}, {}, kLong)); }};
  });
  caf::anon_send(a, 8);
  REQUIRE(done.wait_for(10s) == std::future_status::ready);
  auto r = done.get();
  INFO((r ? std::string("ok") : r.error().to_string()));
  REQUIRE(r.has_value());
  CHECK(r->as_int() == 8);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

TEST_CASE("deadlock: gk::request from an actor on the runtime's own system still works", "[deadlock][caf]") {
  Runtime rt(test::test_config());
  std::promise<Expected<Value>> result;
  auto done = result.get_future();
  auto front = runtime_actor(rt);
  auto a = rt.system().spawn([front, &result](caf::event_based_actor* self) -> caf::behavior {
    return {[self, front, &result](int x) {
      gk::request(self, front, 10s, CallRequest{"gk_testmod:identity", {x}})
          .then([&result](Value& v) { result.set_value(std::move(v)); },
                [&result](caf::error& e) { result.set_value(from_caf_error(e)); });
    }};
  });
  caf::anon_send(a, 9);
  REQUIRE(done.wait_for(10s) == std::future_status::ready);
  auto r = done.get();
  INFO((r ? std::string("ok") : r.error().to_string()));
  REQUIRE(r.has_value());
  CHECK(r->as_int() == 9);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

namespace {

// A reply slot whose delivery runs on the thread that completes it: for
// the thread executor, the interpreter's own thread. There it looks at the
// thread's mark and, when `try_call`, makes a blocking call.
class ProbeSlot final : public ReplySlot {
public:
  ProbeSlot(PyRuntime& core, bool try_call) : core_(core), try_call_(try_call) {}
  struct Seen {
    std::string thread;
    std::string context;  // "" when unmarked
    std::optional<Expected<Value>> call;
  };
  std::future<Seen> seen() { return seen_.get_future(); }

protected:
  void deliver(AnyReply&&) override {
    Seen s;
    s.thread = thread_name();
    const char* context = detail::blocking_context();
    s.context = context ? context : "";
    if (try_call_)
      s.call = std::get<Expected<Value>>(core_.ask(CallRequest{"gk_testmod:identity", {1}}));
    seen_.set_value(std::move(s));
  }

private:
  PyRuntime& core_;
  bool try_call_;
  std::promise<Seen> seen_;
};

} // namespace

TEST_CASE("deadlock: a blocking call on the interpreter's own thread is refused", "[deadlock][runtime]") {
  Runtime rt(test::test_config());
  auto& core = *detail::RuntimeAccess::impl(rt).core;
  auto slot = std::make_shared<ProbeSlot>(core, true);
  auto seen = slot->seen();
  CallRequest probe{"gk_testmod:identity", {1}};
  probe.deadline = Deadline::after(30s);
  core.submit(probe, slot);
  REQUIRE(seen.wait_for(10s) == std::future_status::ready);
  auto s = seen.get();
  REQUIRE(s.thread == "gk-python");
  CHECK(s.context == detail::kInterpreterThread);
  REQUIRE(s.call.has_value());
  REQUIRE_FALSE(s.call->has_value());
  INFO(s.call->error().to_string());
  CHECK(s.call->error().code == ErrorCode::deadlock);
  CHECK(s.call->error().message
        == "call gk_testmod:identity: a blocking call made on the interpreter's own thread: it would wait for itself");
  // The interpreter goes on serving.
  REQUIRE(rt.call("gk_testmod:identity", {2}, {}, kLong).has_value());
}

TEST_CASE("deadlock: with detect_deadlock = false the interpreter's thread is not marked", "[deadlock][runtime]") {
  Runtime rt(no_detection());
  auto& core = *detail::RuntimeAccess::impl(rt).core;
  auto slot = std::make_shared<ProbeSlot>(core, false);  // a call there would hang until its deadline
  auto seen = slot->seen();
  CallRequest probe{"gk_testmod:identity", {1}};
  probe.deadline = Deadline::after(30s);
  core.submit(probe, slot);
  REQUIRE(seen.wait_for(10s) == std::future_status::ready);
  auto s = seen.get();
  REQUIRE(s.thread == "gk-python");
  CHECK(s.context.empty());
}
