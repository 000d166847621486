// Host functions (Runtime::expose): C++ functions Python code calls as
// gilkeeper.host.NAME, re-entrancy (Python -> host -> Python ...), the
// calling request's deadline inside the host function, capability rules,
// and HostError. Thread and process isolation.
#include "../support.hpp"

#include "actors/detail/blocking_context.hpp"
#include "gilkeeper/actors/messages.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

using namespace gk;
using namespace std::chrono_literals;

namespace {

const RequestOptions kLong = RequestOptions::with_deadline(Deadline::after(std::chrono::seconds(30)));

// Exposes `down`: each level calls back into the runtime (gk_hostmod.down),
// which calls down again, until 0.
void expose_down(Runtime& rt) {
  REQUIRE_FALSE(rt.expose("down", [&rt](const List& args, const HostCall& call) -> Expected<Value> {
    REQUIRE_FALSE(call.context().deadline.expired());
    // No options: on the host function's own thread the call nests.
    return rt.call("gk_hostmod:down", {args.at(0)});
  }));
}

void check_ten_levels(Runtime& rt) {
  expose_down(rt);
  auto t0 = std::chrono::steady_clock::now();
  auto r = rt.call("gk_hostmod:down", {10}, {}, kLong);
  REQUIRE(r);
  CHECK(r->as_int() == 10);
  CHECK(test::ms_since(t0) < 5000 * kTimeFactor);
  // The runtime serves as before afterwards.
  CHECK(rt.call("gk_hostmod:down", {3}, {}, kLong)->as_int() == 3);
}

Value call_named(Runtime& rt, List args) {
  auto r = rt.call("gk_hostmod:call_named", std::move(args), {}, kLong);
  REQUIRE(r);
  return *r;
}

// Exposes `sleepy`: waits up to 10 s for its call to be cancelled, then
// says whether it was (`saw_cancel`) and that it ended.
void expose_sleepy(Runtime& rt, std::atomic<bool>& saw_cancel, std::atomic<bool>& ended,
                   std::atomic<long>* deadline_left_ms = nullptr) {
  REQUIRE_FALSE(rt.expose("sleepy", [&saw_cancel, &ended, deadline_left_ms](const List&, const HostCall& call) -> Expected<Value> {
    if (deadline_left_ms)
      *deadline_left_ms = static_cast<long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(call.deadline().remaining()).count());
    auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until && !call.cancelled())
      std::this_thread::sleep_for(1ms);
    saw_cancel = call.cancelled();
    ended = true;
    return Value(1);
  }));
}

} // namespace

TEST_CASE("a host function is called from Python with Values and returns one", "[host]") {
  Runtime rt(test::test_config());
  REQUIRE_FALSE(rt.expose("add", [](const List& args) -> Expected<Value> {
    return Value(args.at(0).as_int() + args.at(1).as_int());
  }));
  CHECK(rt.call("gk_hostmod:add", {2, 3})->as_int() == 5);
  CHECK(rt.call("gk_hostmod:via_import_form", {40, 2})->as_int() == 42);
  // Strings, lists and dicts cross both ways.
  REQUIRE_FALSE(rt.expose("echo", [](const List& args) -> Expected<Value> { return Value(args); }));
  auto r = call_named(rt, {"echo", "x", Value::list({1, 2.5}), Value::dict({{"k", Bytes{"b"}}})});
  CHECK(r.get<List>("ok")->size() == 3);
  CHECK(r.as_dict().at(0).second.as_list().at(2).get<Bytes>("k")->data == "b");
  CHECK(rt.exposed() == std::vector<std::string>{"add", "echo"});
  CHECK(rt.eval("sorted(dir(__import__('gilkeeper').host))")->as_list().size() == 2);
}

TEST_CASE("a failing host function raises gilkeeper.HostError with its code and message", "[host]") {
  Runtime rt(test::test_config());
  REQUIRE_FALSE(rt.expose("fails", [](const List&) -> Expected<Value> {
    return Error(ErrorCode::bad_request, "the image is empty");
  }));
  REQUIRE_FALSE(rt.expose("throws", [](const List&) -> Expected<Value> { throw std::runtime_error("boom"); }));
  REQUIRE_FALSE(rt.expose("bad_text", [](const List&) -> Expected<Value> { return Value(std::string("\xff\xfe")); }));

  auto r = call_named(rt, {"fails"});
  CHECK(r.get<std::string>("type").value() == "HostError");
  CHECK(r.get<std::string>("code").value() == "bad_request");
  CHECK(r.get<std::string>("message").value() == "the image is empty");
  CHECK(r.get<std::string>("function").value() == "fails");

  r = call_named(rt, {"throws"});
  CHECK(r.get<std::string>("code").value() == "internal");
  CHECK(r.get<std::string>("message").value().find("boom") != std::string::npos);

  r = call_named(rt, {"bad_text"});
  CHECK(r.get<std::string>("code").value() == "conversion");

  r = call_named(rt, {"nope"});
  CHECK(r.get<std::string>("code").value() == "bad_request");
  CHECK(r.get<std::string>("message").value().find("'nope'") != std::string::npos);

  // An argument with no Value form.
  auto bad = rt.eval("__import__('gk_hostmod').call_named('fails', {1, 2})");
  REQUIRE(bad);
  CHECK(bad->get<std::string>("code").value() == "conversion");
  CHECK(bad->get<std::string>("message").value().find("argument 1") != std::string::npos);

  // Uncaught, the request fails with the Python error, named.
  auto raw = rt.call("gk_hostmod:add", {1, 2});
  REQUIRE_FALSE(raw);
  CHECK(raw.error().code == ErrorCode::python_exception);
  CHECK(raw.error().type == "gilkeeper.HostError");
}

TEST_CASE("Python -> host -> Python ten levels deep is served re-entrantly", "[host]") {
  Runtime rt(test::test_config());
  check_ten_levels(rt);
}

TEST_CASE("a host function gets the calling request's deadline and is cancelled when it passes", "[host][deadline]") {
  Runtime rt(test::test_config());
  std::atomic<bool> saw_cancel{false};
  std::atomic<long> deadline_left_ms{-1};
  std::atomic<bool> ended{false};
  expose_sleepy(rt, saw_cancel, ended, &deadline_left_ms);
  auto t0 = std::chrono::steady_clock::now();
  auto r = rt.call("gk_hostmod:wait_for", {"sleepy"}, {}, test::within(300ms));
  double took = test::ms_since(t0);
  // Python got DeadlineExceeded in the wait (the function says "deadline")
  // or the request's deadline answered first; either way on time.
  if (r)
    CHECK(r->as_string() == "deadline");
  else
    CHECK(r.error().code == ErrorCode::deadline_exceeded);
  CHECK(took < 1500 * kTimeFactor);
  CHECK(deadline_left_ms > 0);
  CHECK(deadline_left_ms <= 300);
  auto wait_until = std::chrono::steady_clock::now() + 5s;
  while (!ended && std::chrono::steady_clock::now() < wait_until)
    std::this_thread::sleep_for(5ms);
  CHECK(ended);
  CHECK(saw_cancel.load());
  // The interpreter is free again.
  CHECK(rt.eval("1 + 1", kLong)->as_int() == 2);
}

TEST_CASE("the Python code sees DeadlineExceeded in the host call itself", "[host][deadline]") {
  Runtime rt(test::test_config());
  REQUIRE_FALSE(rt.expose("stuck", [](const List&, const HostCall& call) -> Expected<Value> {
    while (!call.cancelled())
      std::this_thread::sleep_for(1ms);
    return Value();
  }));
  // A long request deadline, a short one for the host call made inside: the
  // Python code catches DeadlineExceeded raised at the host call.
  REQUIRE(rt.exec("import gilkeeper, time\n"
                  "from gilkeeper import host\n"
                  "def guarded():\n"
                  "    try:\n"
                  "        host.stuck()\n"
                  "    except gilkeeper.DeadlineExceeded as e:\n"
                  "        return 'caught: ' + type(e).__name__\n"));
  auto r = rt.call("__main__:guarded", {}, {}, test::within(200ms));
  // The request's deadline is the host call's: the caller hears
  // deadline_exceeded (the interrupt answers it), the code ran its except.
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::deadline_exceeded);
  CHECK(rt.eval("2", kLong)->as_int() == 2);
}

TEST_CASE("cancelling a request cancels its host call and what that call nests", "[host][cancel]") {
  Runtime rt(test::test_config());
  std::atomic<bool> saw_cancel{false};
  REQUIRE_FALSE(rt.expose("nest_then_wait", [&](const List&, const HostCall& call) -> Expected<Value> {
    // A nested request that waits until it is cancelled with its parent.
    auto r = rt.call("time:sleep", {5});
    saw_cancel = call.cancelled();
    return r;
  }));
  auto f = rt.call_async("gk_hostmod:call_named", {"nest_then_wait"}, {}, kLong);
  std::this_thread::sleep_for(200ms);
  auto t0 = std::chrono::steady_clock::now();
  f.cancel();
  auto r = f.get();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::cancelled);
  CHECK(test::ms_since(t0) < 2000 * kTimeFactor);
  auto until = std::chrono::steady_clock::now() + 5s;
  while (!saw_cancel && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  CHECK(saw_cancel.load());
  CHECK(rt.eval("3", kLong)->as_int() == 3);
}

TEST_CASE("capabilities deny a host function by name", "[host][capabilities]") {
  Runtime rt(test::test_config("[capabilities]\ndeny_host = [\"secret\"]\n"));
  std::atomic<int> calls{0};
  REQUIRE_FALSE(rt.expose("secret", [&](const List&) -> Expected<Value> { return Value(++calls); }));
  REQUIRE_FALSE(rt.expose("open", [&](const List&) -> Expected<Value> { return Value("fine"); }));
  auto r = call_named(rt, {"secret"});
  CHECK(r.get<std::string>("type").value() == "PermissionDenied");
  CHECK(r.get<bool>("is_permission_error").value());
  CHECK(r.get<std::string>("message").value().find("capabilities.deny_host") != std::string::npos);
  CHECK(r.get<std::string>("message").value().find("'secret'") != std::string::npos);
  CHECK(calls == 0);
  CHECK(call_named(rt, {"open"}).get<std::string>("ok").value() == "fine");
  CHECK(rt.stats().capability_denials == 1);
}

TEST_CASE("allow_host lets Python call only the host functions it names", "[host][capabilities]") {
  std::atomic<int> calls{0};
  Runtime only(test::test_config("[capabilities]\nallow_host = [\"open\"]\n"));
  REQUIRE_FALSE(only.expose("secret", [&](const List&) -> Expected<Value> { return Value(++calls); }));
  REQUIRE_FALSE(only.expose("open", [&](const List&) -> Expected<Value> { return Value("fine"); }));
  CHECK(call_named(only, {"secret"}).get<std::string>("type").value() == "PermissionDenied");
  CHECK(call_named(only, {"secret"}).get<std::string>("message").value().find("capabilities.allow_host") != std::string::npos);
  CHECK(call_named(only, {"open"}).get<std::string>("ok").value() == "fine");
  CHECK(calls == 0);
}

TEST_CASE("a host function called from a Python thread of the code's own cannot wait for its runtime", "[host]") {
  Runtime rt(test::test_config());
  REQUIRE_FALSE(rt.expose("down", [&rt](const List& args) -> Expected<Value> {
    return rt.call("gk_hostmod:down", {args.at(0)});
  }));
  REQUIRE_FALSE(rt.expose("async_ok", [&rt](const List&) -> Expected<Value> {
    rt.call_async("gk_hostmod:down", {0});  // not waited for: allowed
    return Value("queued");
  }));
  auto r = rt.call("gk_hostmod:from_thread", {"down", 2}, {}, kLong);
  REQUIRE(r);
  CHECK(r->get<std::string>("code").value() == "deadlock");
  CHECK(r->get<std::string>("message").value().find("Python thread") != std::string::npos);
  CHECK(rt.call("gk_hostmod:from_thread", {"async_ok"}, {}, kLong)->get<std::string>("ok").value() == "queued");
}

TEST_CASE("expose refuses names Python cannot spell", "[host]") {
  Runtime rt(test::test_config());
  CHECK(rt.expose("2fast", [](const List&) -> Expected<Value> { return Value(); }).code == ErrorCode::bad_request);
  CHECK(rt.expose("_private", [](const List&) -> Expected<Value> { return Value(); }).code == ErrorCode::bad_request);
  CHECK(rt.expose("with-dash", [](const List&) -> Expected<Value> { return Value(); }).code == ErrorCode::bad_request);
  CHECK(rt.expose("ok_name", [](const List&) -> Expected<Value> { return Value(); }).code == ErrorCode::none);
  CHECK(rt.unexpose("ok_name"));
  CHECK_FALSE(rt.unexpose("ok_name"));
}

// -- process isolation: the same over the worker's socket ----------------------

TEST_CASE("process isolation: Python -> host -> Python ten levels deep in one worker", "[host][process]") {
  Runtime rt(test::process_config("workers = 2\n"));
  check_ten_levels(rt);
  // Every level ran in the same worker process (the one that waits), so
  // two workers were enough for ten levels.
  REQUIRE_FALSE(rt.expose("pid_below", [&rt](const List&) -> Expected<Value> {
    return rt.eval("__import__('os').getpid()");
  }));
  auto pids = rt.eval("(__import__('os').getpid(), __import__('gilkeeper').host.pid_below())", kLong);
  REQUIRE(pids);
  CHECK(pids->as_list().at(0) == pids->as_list().at(1));
}

TEST_CASE("process isolation: host function results, errors and unknown names", "[host][process]") {
  Runtime rt(test::process_config("workers = 1\n"));
  REQUIRE_FALSE(rt.expose("add", [](const List& args) -> Expected<Value> {
    return Value(args.at(0).as_int() + args.at(1).as_int());
  }));
  REQUIRE_FALSE(rt.expose("fails", [](const List&) -> Expected<Value> {
    return Error(ErrorCode::bad_request, "the image is empty");
  }));
  CHECK(rt.call("gk_hostmod:add", {2, 3}, {}, kLong)->as_int() == 5);
  auto r = call_named(rt, {"fails"});
  CHECK(r.get<std::string>("code").value() == "bad_request");
  CHECK(r.get<std::string>("message").value() == "the image is empty");
  CHECK(call_named(rt, {"nope"}).get<std::string>("code").value() == "bad_request");
  // From a Python thread of the code's own: refused in a worker process.
  CHECK(rt.call("gk_hostmod:from_thread", {"add", 1, 2}, {}, kLong)->get<std::string>("code").value() == "bad_request");
}

TEST_CASE("process isolation: a host function past the request's deadline is cancelled on time", "[host][process][deadline]") {
  Runtime rt(test::process_config("workers = 1\n"));
  std::atomic<bool> saw_cancel{false};
  std::atomic<bool> ended{false};
  expose_sleepy(rt, saw_cancel, ended);
  auto t0 = std::chrono::steady_clock::now();
  auto r = rt.call("gk_hostmod:wait_for", {"sleepy"}, {}, test::within(300ms));
  CHECK(test::ms_since(t0) < 1500 * kTimeFactor);
  if (r)
    CHECK(r->as_string() == "deadline");
  else
    CHECK(r.error().code == ErrorCode::deadline_exceeded);
  auto until = std::chrono::steady_clock::now() + 5s;
  while (!ended && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  CHECK(saw_cancel.load());
  // The worker was not killed for it: it answered at the interrupt.
  CHECK(rt.eval("1", kLong)->as_int() == 1);
  CHECK(test::restarts(rt, "hard_deadline") == 0);
}

TEST_CASE("process isolation: capabilities deny a host function by name", "[host][process][capabilities]") {
  Runtime rt(test::process_config("workers = 1\n[capabilities]\ndeny_host = [\"secret\"]\n"));
  std::atomic<int> calls{0};
  REQUIRE_FALSE(rt.expose("secret", [&](const List&) -> Expected<Value> { return Value(++calls); }));
  auto r = call_named(rt, {"secret"});
  CHECK(r.get<std::string>("type").value() == "PermissionDenied");
  CHECK(calls == 0);
}

TEST_CASE("process isolation: a worker killed in a host call fails the call and its nested requests", "[host][process]") {
  Runtime rt(test::process_config("workers = 1\n"));
  std::atomic<bool> saw_cancel{false}, ended{false};
  std::atomic<int> nested_code{-1};
  REQUIRE_FALSE(rt.expose("nest_then_die", [&](const List&, const HostCall& call) -> Expected<Value> {
    // The nested request kills its own worker process.
    auto r = rt.exec("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)");
    nested_code = static_cast<int>(r ? ErrorCode::none : r.error().code);
    saw_cancel = call.cancelled();
    ended = true;
    return r;
  }));
  auto r = rt.call("gk_hostmod:call_named", {"nest_then_die"}, {}, kLong);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::worker_crashed);
  auto until = std::chrono::steady_clock::now() + 5s;
  while (!ended && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  CHECK(nested_code == static_cast<int>(ErrorCode::worker_crashed));
  CHECK(saw_cancel.load());
  CHECK(rt.eval("1", kLong)->as_int() == 1);
}

TEST_CASE("an actor exposed as a host function answers Python's calls", "[host][actor]") {
  Runtime rt(test::test_config());
  auto counter = rt.system().spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](HostCallMessage& m) -> caf::result<Value> {
      if (m.args.empty())
        return to_caf_error(Error(ErrorCode::bad_request, "nothing to count"));
      return Value(static_cast<std::int64_t>(m.args.size()) + (m.deadline.is_finite() ? 100 : 0));
    }};
  });
  REQUIRE_FALSE(rt.expose("count", counter));
  auto r = rt.call("gk_hostmod:call_named", {"count", 1, 2, 3}, {}, kLong);
  REQUIRE(r);
  CHECK(r->get<std::int64_t>("ok").value() == 103);  // three arguments, and a deadline
  auto e = rt.call("gk_hostmod:call_named", {"count"}, {}, kLong);
  CHECK(e->get<std::string>("code").value() == "bad_request");
  CHECK(e->get<std::string>("message").value().find("nothing to count") != std::string::npos);
  CHECK(rt.expose("nobody", caf::actor()).code == ErrorCode::bad_request);
  caf::anon_send_exit(counter, caf::exit_reason::user_shutdown);
}
