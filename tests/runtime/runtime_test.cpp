// The host API: calls, errors, Refs, atomicity, one runtime per process,
// bounded shutdown.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace gk;

TEST_CASE("a call returns the Python result", "[runtime]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_testmod:add", {2, 40});
  REQUIRE(r.has_value());
  CHECK(r->as_int() == 42);
  CHECK(rt.eval("1 + 1")->as_int() == 2);
  CHECK(rt.exec("x = 5").has_value());
  CHECK(rt.eval("x * 2")->as_int() == 10);
  CHECK(rt.import_module("json").has_value());
  CHECK(rt.getattr("math:pi")->as_double() == Approx(3.14159265));
}

TEST_CASE("a Python exception keeps its type, message and a traceback naming the function and line", "[runtime][errors]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_testmod:nested_raise");
  REQUIRE_FALSE(r.has_value());
  auto& e = r.error();
  CHECK(e.code == ErrorCode::python_exception);
  CHECK(e.type == "KeyError");
  CHECK(e.message == "'missing'");
  CHECK(e.traceback.find("gk_testmod.py") != std::string::npos);
  CHECK(e.traceback.find("in inner") != std::string::npos);
  CHECK(e.traceback.find("line ") != std::string::npos);
  CHECK(e.traceback.find("KeyError: 'missing'") != std::string::npos);

  auto v = rt.call("gk_testmod:raise_value_error", {"bad record"});
  REQUIRE_FALSE(v.has_value());
  CHECK(v.error().type == "ValueError");
  CHECK(v.error().message == "bad record");
}

TEST_CASE("a missing module, a missing function and a malformed target are clear errors", "[runtime][errors]") {
  Runtime rt(test::test_config());
  auto m = rt.call("no_such_module_xyz:f");
  REQUIRE_FALSE(m.has_value());
  CHECK(m.error().type == "ModuleNotFoundError");
  auto f = rt.call("gk_testmod:no_such_function");
  REQUIRE_FALSE(f.has_value());
  CHECK(f.error().type == "AttributeError");
  auto t = rt.call("not a target");
  REQUIRE_FALSE(t.has_value());
  CHECK(t.error().code == ErrorCode::bad_request);
  CHECK(t.error().message == "call: target \"not a target\" is not \"module:function\"");
  auto s = rt.eval("1 +");
  REQUIRE_FALSE(s.has_value());
  CHECK(s.error().type == "SyntaxError");
}

TEST_CASE("64 threads x 1000 check-then-set increments end at exactly 64000", "[runtime][atomicity]") {
  Runtime rt(test::test_config());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 64; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (!rt.call("gk_testmod:increment"))
          failures++;
    });
  for (auto& t : threads)
    t.join();
  CHECK(failures == 0);
  CHECK(rt.call("gk_testmod:get_counter")->as_int() == 64000);
  CHECK(rt.stats().type("call")->calls == 64001);
}

TEST_CASE("Refs keep objects in the runtime and live handles return to zero", "[runtime][ref]") {
  Runtime rt(test::test_config());
  {
    auto box = rt.call_ref("gk_testmod:make_box", {7});
    REQUIRE(box.has_value());
    CHECK(box->type_name() == "gk_testmod.Box");
    CHECK(rt.stats().live_refs == 1);
    CHECK(rt.call(*box, "add", {5})->as_int() == 1);
    CHECK(rt.call(*box, "add", {6})->as_int() == 2);
    CHECK(rt.call(*box, "total")->as_int() == 11);
    CHECK(rt.getattr(*box, "value")->as_int() == 7);
    // A Ref as an argument stands for the object itself.
    CHECK(rt.call("gk_testmod:box_value", {Value(*box)})->as_int() == 7);
    Ref copy = *box;
    CHECK(copy == *box);
    CHECK(copy.id() == box->id());
  }
  // The last copy released the handle; release runs before the next request.
  CHECK(rt.eval("0").has_value());
  CHECK(rt.stats().live_refs == 0);
}

TEST_CASE("a released Ref is stale: an error, not a crash", "[runtime][ref]") {
  Runtime rt(test::test_config());
  auto box = rt.call_ref("gk_testmod:make_box", {1});
  REQUIRE(box.has_value());
  CHECK(rt.release(*box).has_value());
  auto again = rt.call(*box, "total");
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().code == ErrorCode::stale_ref);
  auto as_arg = rt.call("gk_testmod:box_value", {Value(*box)});
  REQUIRE_FALSE(as_arg.has_value());
  CHECK(as_arg.error().code == ErrorCode::stale_ref);
  CHECK(as_arg.error().where == "args[0]");
  auto twice = rt.release(*box);
  REQUIRE_FALSE(twice.has_value());
  CHECK(twice.error().code == ErrorCode::stale_ref);
}

TEST_CASE("shutdown reports Refs still alive", "[runtime][ref][shutdown]") {
  Runtime rt(test::test_config());
  auto box = rt.call_ref("gk_testmod:make_box", {1});
  REQUIRE(box.has_value());
  auto report = rt.shutdown();
  REQUIRE(report.leaked_refs.size() == 1);
  CHECK(report.leaked_refs[0].type_name == "gk_testmod.Box");
  CHECK(report.leaked_refs[0].origin == "call gk_testmod:make_box");
  CHECK(report.finalized);
  // After shutdown every request is refused, and the Ref is stale.
  auto r = rt.call("gk_testmod:add", {1, 2});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::runtime_stopped);
}

TEST_CASE("a second thread-mode runtime in one process is rejected", "[runtime]") {
  Runtime first(test::test_config());
  try {
    Runtime second(test::test_config());
    FAIL("a second runtime started");
  } catch (const RuntimeStartError& e) {
    CHECK(e.error().code == ErrorCode::bad_request);
    CHECK(std::string(e.what()).find("only one interpreter") != std::string::npos);
  }
  // The first one is unharmed.
  CHECK(first.eval("2 + 2")->as_int() == 4);
}

TEST_CASE("a runtime can be started again after the previous one shut down", "[runtime]") {
  { Runtime first(test::test_config()); CHECK(first.eval("1")->as_int() == 1); }
  Runtime second(test::test_config());
  CHECK(second.eval("2")->as_int() == 2);
}

TEST_CASE("shutdown with a never-ending Python thread returns within its bound", "[runtime][shutdown]") {
  auto cfg = test::test_config("[runtime]\nshutdown_grace = \"300ms\"\n");
  auto rt = std::make_unique<Runtime>(cfg);
  REQUIRE(rt->call("gk_testmod:start_never_ending_thread").has_value());
  auto t0 = std::chrono::steady_clock::now();
  auto report = rt->shutdown();
  double ms = test::ms_since(t0);
  CHECK(ms < 3000);
  CHECK_FALSE(report.finalized);
  CHECK(report.message.find("never-ends") != std::string::npos);
  rt.reset();
  // No new interpreter can start in this process afterwards, and it says why.
  try {
    Runtime again(test::test_config());
    FAIL("started over an unfinalized interpreter");
  } catch (const RuntimeStartError& e) {
    CHECK(std::string(e.what()).find("could not be finalized") != std::string::npos);
  }
}

TEST_CASE("queued requests get runtime_stopped at shutdown", "[runtime][shutdown]") {
  auto rt = std::make_unique<Runtime>(test::test_config());
  std::vector<std::thread> threads;
  std::vector<Expected<Value>> results(8);
  // One slow call holds the interpreter while others queue behind it.
  threads.emplace_back([&] { results[0] = rt->call("gk_testmod:sleep_for", {0.5}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int i = 1; i < 8; ++i)
    threads.emplace_back([&, i] { results[i] = rt->call("gk_testmod:add", {i, 0}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  rt->shutdown();
  for (auto& t : threads)
    t.join();
  int stopped = 0;
  for (int i = 1; i < 8; ++i)
    if (!results[i] && results[i].error().code == ErrorCode::runtime_stopped)
      stopped++;
  CHECK(stopped == 7);
  // The running call was interrupted by the shutdown rather than waited
  // for, and says so (it did not miss its deadline).
  REQUIRE_FALSE(results[0].has_value());
  CHECK(results[0].error().code == ErrorCode::runtime_stopped);
}

TEST_CASE("multiprocessing in the runtime starts the configured interpreter, not the host", "[runtime][multiprocessing]") {
  Runtime rt(test::test_config());
  CHECK(rt.call("gk_testmod:own_executable")->as_string() == "/usr/bin/python3");
  auto r = rt.call("gk_testmod:executable_in_child", {}, {}, RequestOptions::with_deadline(Deadline::after(std::chrono::seconds(30))));
  REQUIRE(r.has_value());
  CHECK(r->as_string() == "/usr/bin/python3");
}

TEST_CASE("a batch gives one result per call, in order, failures included", "[runtime][batch]") {
  Runtime rt(test::test_config());
  std::vector<CallRequest> calls;
  for (int i = 0; i < 100; ++i)
    calls.push_back(CallRequest{i == 50 ? "gk_testmod:raise_value_error" : "gk_testmod:add",
                                i == 50 ? List{"boom"} : List{i, 1}});
  auto r = rt.batch(std::move(calls));
  REQUIRE(r.has_value());
  REQUIRE(r->size() == 100);
  for (int i = 0; i < 100; ++i) {
    if (i == 50) {
      REQUIRE_FALSE((*r)[i].has_value());
      CHECK((*r)[i].error().type == "ValueError");
    } else {
      CHECK((*r)[i]->as_int() == i + 1);
    }
  }
}

TEST_CASE("shutdown is quick and finalizes when calls are queued behind a running one", "[runtime][shutdown]") {
  auto rt = std::make_unique<Runtime>(test::test_config("[runtime]\nshutdown_grace = \"200ms\"\n"));
  std::vector<std::thread> threads;
  std::vector<Expected<Value>> results(5);
  for (int i = 0; i < 5; ++i) {
    threads.emplace_back([&, i] { results[i] = rt->call("gk_testmod:sleep_for", {1.5}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto t0 = std::chrono::steady_clock::now();
  auto report = rt->shutdown();
  CHECK(test::ms_since(t0) < 1000);
  CHECK(report.finalized);
  for (auto& t : threads)
    t.join();
  for (auto& r : results) {
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::runtime_stopped);
  }
}

TEST_CASE("shutdown during a batch interrupts the running call and starts none of the calls left",
          "[runtime][shutdown][batch]") {
  using namespace std::chrono_literals;
  auto rt = std::make_unique<Runtime>(test::test_config("[runtime]\nshutdown_grace = \"200ms\"\n"));
  std::vector<CallRequest> calls(5, CallRequest{"gk_testmod:sleep_for", {1.5}});
  Expected<std::vector<Expected<Value>>> got = Error(ErrorCode::internal, "no reply");
  std::thread caller([&] { got = rt->batch(calls, RequestOptions::with_deadline(Deadline::after(30s))); });
  // Wait until the first call is running.
  auto until = std::chrono::steady_clock::now() + 5s;
  while (rt->stats().queued > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(50ms);
  auto t0 = std::chrono::steady_clock::now();
  auto report = rt->shutdown();
  caller.join();
  // Not 5 x 1.5 s: the running sleep was interrupted, the others never started.
  CHECK(test::ms_since(t0) < 1000);
  CHECK(report.finalized);
  REQUIRE(got.has_value());
  REQUIRE(got->size() == 5);
  for (auto& r : *got) {
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::runtime_stopped);
  }
}
