// Process isolation: hard deadlines that kill stuck native code, crashes,
// recycling, limits, no zombies.
#include "../support.hpp"
#include "../support_proc.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <optional>
#include <thread>

using namespace gk;
using namespace std::chrono_literals;

using test::process_config;
using test::restarts;
using test::within;

namespace {

std::int64_t worker_pid(Runtime& rt) {
  auto r = rt.call("gk_testmod:getpid", {}, {}, within(10000ms));
  REQUIRE(r.has_value());
  return r->as_int();
}

// Waits (bounded) until the supervisor has brought the pool back to size.
void wait_for_children(std::size_t n) {
  for (int i = 0; i < 500 && test::children_of_self().size() != n; ++i)
    std::this_thread::sleep_for(10ms);
}

} // namespace

TEST_CASE("calls, errors and Refs work in a worker process", "[process]") {
  Runtime rt(process_config());
  CHECK(rt.call("gk_testmod:add", {2, 3})->as_int() == 5);
  CHECK(worker_pid(rt) != getpid());
  auto err = rt.call("gk_testmod:raise_value_error", {"nope"});
  REQUIRE_FALSE(err.has_value());
  CHECK(err.error().type == "ValueError");
  CHECK(err.error().traceback.find("raise_value_error") != std::string::npos);
  auto box = rt.call_ref("gk_testmod:make_box", {3});
  REQUIRE(box.has_value());
  CHECK(rt.call(*box, "add", {4})->as_int() == 1);
  CHECK(rt.call("gk_testmod:box_value", {Value(*box)})->as_int() == 3);
  CHECK(rt.stats().live_refs == 1);
  CHECK(rt.stats().isolation == "process");
}

TEST_CASE("a C loop is killed at its hard deadline and the next call runs on a fresh interpreter", "[process][hard]") {
  Runtime rt(process_config("[timeouts]\ngrace = \"200ms\"\n"));
  auto before = worker_pid(rt);
  auto box = rt.call_ref("gk_testmod:make_box", {1});
  REQUIRE(box.has_value());

  auto t0 = std::chrono::steady_clock::now();
  auto r = rt.call("gk_testmod:spin_native", {30.0}, {}, within(300ms));
  double told_ms = test::ms_since(t0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::deadline_exceeded);
  CHECK(told_ms < 300 + 300);  // told at the deadline, not at the kill

  // The next call is served by a new interpreter, well before the C loop
  // would have ended.
  auto t1 = std::chrono::steady_clock::now();
  auto after = worker_pid(rt);
  CHECK(after != before);
  CHECK(test::ms_since(t1) < 5000);
  // The stuck child itself is killed `grace` after the deadline.
  for (int i = 0; i < 500 && restarts(rt, "hard_deadline") < 1; ++i)
    std::this_thread::sleep_for(2ms);
  CHECK(restarts(rt, "hard_deadline") == 1);
  CHECK(rt.stats().type("call")->missed_hard == 1);

  // Refs into the dead interpreter are stale.
  auto stale = rt.call(*box, "total");
  REQUIRE_FALSE(stale.has_value());
  CHECK(stale.error().code == ErrorCode::stale_ref);
}

TEST_CASE("crashes fail the call with worker_crashed naming the signal or status, and service continues",
          "[process][crash]") {
  Runtime rt(process_config());
  struct Case {
    std::string target;
    List args;
    int signal;
    int status;
  };
  std::vector<Case> cases = {{"gk_testmod:crash_segv", {}, SIGSEGV, -1},
                             {"gk_testmod:crash_abort", {}, SIGABRT, -1},
                             {"gk_testmod:exit_now", {7}, 0, 7}};
  for (auto& c : cases) {
    CAPTURE(c.target);
    auto r = rt.call(c.target, c.args, {}, within(10000ms));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::worker_crashed);
    CHECK(r.error().signal == c.signal);
    CHECK(r.error().exit_status == c.status);
    CHECK(rt.call("gk_testmod:add", {1, 1}, {}, within(10000ms))->as_int() == 2);
  }

  // Killed from outside while it runs a call: the worker that runs it says
  // who it is (with a spare, any ready worker may take the call).
  auto pid_file = test::temp_dir() + "/running_pid";
  std::remove(pid_file.c_str());
  Expected<Value> slow;
  std::thread caller([&] { slow = rt.call("gk_testmod:pid_then_sleep", {pid_file, 5}, {}, within(10000ms)); });
  auto t0 = std::chrono::steady_clock::now();
  while (test::ms_since(t0) < 8000 && test::read_file(pid_file).empty())
    std::this_thread::sleep_for(1ms);
  auto running = test::read_file(pid_file);
  REQUIRE_FALSE(running.empty());
  ::kill(static_cast<pid_t>(std::stol(running)), SIGKILL);
  caller.join();
  REQUIRE_FALSE(slow.has_value());
  CHECK(slow.error().code == ErrorCode::worker_crashed);
  CHECK(slow.error().signal == SIGKILL);
  CHECK(rt.call("gk_testmod:add", {2, 2}, {}, within(10000ms))->as_int() == 4);
  CHECK(restarts(rt, "crashed") == 4);
}

TEST_CASE("a first worker killed from outside while it starts is started again", "[process][crash][start]") {
  // Kills the first two worker processes as soon as they appear (while
  // their interpreters start, ~50 ms): the runtime still starts.
  std::atomic<bool> stop{false};
  std::vector<pid_t> killed;
  std::thread killer([&] {
    while (!stop && killed.size() < 2) {
      for (auto& child : test::children_of_self())
        if (std::find(killed.begin(), killed.end(), child.pid) == killed.end()) {
          ::kill(child.pid, SIGKILL);
          killed.push_back(child.pid);
        }
      std::this_thread::sleep_for(1ms);
    }
  });
  std::optional<Runtime> rt;
  try {
    rt.emplace(process_config("spare = false\n"));
  } catch (const RuntimeStartError& e) {
    FAIL("the runtime did not start: " << e.what());
  }
  stop = true;
  killer.join();
  CHECK(killed.size() == 2);
  CHECK(rt->call("gk_testmod:add", {2, 2}, {}, within(10000ms))->as_int() == 4);
  CHECK(restarts(*rt, "failed_start") == 0);
}

TEST_CASE("50 hard kills in a row leave no zombie and exactly the configured children", "[process][hard][zombies]") {
  {
    Runtime rt(process_config("workers = 1\nspare = true\n[timeouts]\ngrace = \"20ms\"\n"));
    for (std::uint64_t i = 0; i < 50; ++i) {
      // A served call first: a worker is ready, so the C loop starts at once
      // rather than expiring in the queue while a replacement starts.
      REQUIRE(rt.call("gk_testmod:add", {1, 1}, {}, within(10000ms)).has_value());
      auto r = rt.call("gk_testmod:spin_native", {10.0}, {}, within(20ms));
      REQUIRE_FALSE(r.has_value());
      // The caller is told at the deadline; the kill follows after the grace.
      for (int k = 0; k < 500 && restarts(rt, "hard_deadline") < i + 1; ++k)
        std::this_thread::sleep_for(2ms);
      REQUIRE(restarts(rt, "hard_deadline") == i + 1);
    }
    REQUIRE(rt.call("gk_testmod:add", {1, 1}, {}, within(10000ms)).has_value());
    wait_for_children(2);
    auto kids = test::children_of_self();
    CHECK(test::count_zombies(kids) == 0);
    CHECK(kids.size() == 2);  // one worker and its warm spare
  }
  CHECK(test::children_of_self().empty());
}

TEST_CASE("a worker is replaced after max_calls", "[process][recycle]") {
  Runtime rt(process_config("max_calls = 3\nspare = false\n"));
  std::vector<std::int64_t> pids;
  for (int i = 0; i < 7; ++i)
    pids.push_back(worker_pid(rt));
  CHECK(pids[0] == pids[1]);
  CHECK(pids[1] == pids[2]);
  CHECK(pids[3] != pids[2]);
  CHECK(pids[3] == pids[5]);
  CHECK(pids[6] != pids[5]);
  CHECK(restarts(rt, "max_calls") == 2);
}

TEST_CASE("a worker above max_memory is replaced between calls and the runtime goes on", "[process][recycle]") {
  Runtime rt(process_config("max_memory = \"150MiB\"\n"));
  auto before = worker_pid(rt);
  auto r = rt.call("gk_testmod:hog", {300}, {}, within(20000ms));
  REQUIRE(r.has_value());  // the call itself completes
  auto after = worker_pid(rt);
  CHECK(after != before);
  CHECK(restarts(rt, "max_memory") == 1);
}

TEST_CASE("an address-space limit turns a memory hog into a MemoryError", "[process][limits]" GK_TAG_RLIMIT_AS) {
  Runtime rt(process_config("[runtime.limits]\naddress_space = \"1GiB\"\n"));
  auto r = rt.call("gk_testmod:alloc_temporarily", {4096}, {}, within(20000ms));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::python_exception);
  CHECK(r.error().type == "MemoryError");
  CHECK(rt.call("gk_testmod:add", {1, 2})->as_int() == 3);
}

TEST_CASE("a module that crashes at import makes the runtime degraded without spinning", "[process][degraded]") {
  Runtime rt(process_config());
  auto t0 = std::chrono::steady_clock::now();
  Error last;
  int attempts = 0;
  while (test::ms_since(t0) < 20000) {
    attempts++;
    auto r = rt.call("gk_crash_at_import:never", {}, {}, within(10000ms));
    REQUIRE_FALSE(r.has_value());
    last = r.error();
    if (last.code == ErrorCode::degraded)
      break;
    CHECK(last.code == ErrorCode::worker_crashed);
    CHECK(last.exit_status == 3);
  }
  CHECK(last.code == ErrorCode::degraded);
  CHECK(last.message.find("keep failing") != std::string::npos);
  CHECK(attempts <= 10);
  // Backing off: five crashes took a while, not a hot loop.
  CHECK(test::ms_since(t0) > 300);
  // While degraded, requests fail fast.
  auto t1 = std::chrono::steady_clock::now();
  auto r = rt.call("gk_testmod:add", {1, 1});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::degraded);
  CHECK(test::ms_since(t1) < 100);
  CHECK(test::zombies_after_reap() == 0);
}

TEST_CASE("shutdown stops and reaps every worker within its bound", "[process][shutdown]") {
  auto rt = std::make_unique<Runtime>(process_config("workers = 2\nshutdown_grace = \"500ms\"\n[timeouts]\ngrace = \"30s\"\n"));
  REQUIRE(rt->call("gk_testmod:add", {1, 1}).has_value());
  // One worker is stuck in C and ignores everything but SIGKILL.
  std::thread stuck([&] { rt->call("gk_testmod:spin_native", {60.0}, {}, within(60000ms)); });
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  rt->shutdown();
  stuck.join();
  CHECK(test::ms_since(t0) < 3000);
  CHECK(test::children_of_self().empty());
}

TEST_CASE("CPU-bound calls spread over two workers", "[process][pool]") {
  Runtime rt(process_config("workers = 2\n"));
  std::vector<std::thread> threads;
  std::vector<std::int64_t> pids(4, -1);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      auto r = rt.call("gk_testmod:sleep_and_pid", {0.5}, {}, within(10000ms));
      if (r)
        pids[i] = r->as_int();
    });
  for (auto& t : threads)
    t.join();
  double ms = test::ms_since(t0);
  std::sort(pids.begin(), pids.end());
  CHECK(pids[0] > 0);
  // Two run at a time (on any two of the warm processes: a worker and the
  // spare are interchangeable), never one after the other: about 1 s, where
  // one after the other would take 2 s.
  CHECK(std::unique(pids.begin(), pids.end()) - pids.begin() >= 2);
  CHECK(ms < 1800);
}

TEST_CASE("a deadline from config interrupts Python in a worker without killing it", "[process][soft]") {
  Runtime rt(process_config("[timeouts]\neval = \"300ms\"\ngrace = \"400ms\"\n"));
  auto before = worker_pid(rt);
  auto t0 = std::chrono::steady_clock::now();
  auto r = rt.eval("__import__('time').sleep(5)");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::deadline_exceeded);
  CHECK(test::ms_since(t0) < 300 + 500);
  // The worker was interrupted, not killed: past deadline + grace, no
  // worker was killed and the first one is still alive.
  std::this_thread::sleep_for(800ms);
  CHECK(restarts(rt, "hard_deadline") == 0);
  CHECK(::kill(static_cast<pid_t>(before), 0) == 0);
  CHECK(rt.eval("__import__('gilkeeper').remaining() is not None")->as_bool());
}

// The supervisor never blocks on one child: stopped workers receiving 8 MB
// requests are killed at their deadline and replaced, and shutdown returns.
TEST_CASE("workers stopped while they receive 8 MB requests are killed and replaced", "[process][hard][stopped]") {
  Runtime rt(process_config("workers = 2\nspare = false\n[timeouts]\ngrace = \"100ms\"\n"));
  // Both workers are ready when two overlapping calls run on two processes
  // (a second worker still starting, slow under a sanitizer, leaves both
  // calls to the first: then again).
  Expected<Value> pid_a = Error(), pid_b = Error();
  for (int attempt = 0; attempt < 50; ++attempt) {
    auto a = rt.call_async("gk_testmod:sleep_and_pid", {0.3}, {}, within(20000ms));
    auto b = rt.call_async("gk_testmod:sleep_and_pid", {0.3}, {}, within(20000ms));
    pid_a = a.get();
    pid_b = b.get();
    REQUIRE(pid_a.has_value());
    REQUIRE(pid_b.has_value());
    if (pid_a->as_int() != pid_b->as_int())
      break;
  }
  REQUIRE(pid_a->as_int() != pid_b->as_int());
  auto stopped = test::children_of_self();
  REQUIRE(stopped.size() == 2);
  for (auto& child : stopped)
    ::kill(child.pid, SIGSTOP);  // never continued

  // Both workers are stopped: two big requests fill their sockets, and the
  // others wait behind them.
  std::string big(8u << 20, 'x');
  auto t0 = std::chrono::steady_clock::now();
  // One deadline for all: each copy of 8 MB takes a while on a loaded
  // machine, and a later call with a deadline of its own could outlive the
  // first stopped worker's kill (deadline + grace) and be served by its
  // replacement.
  auto all = RequestOptions::with_deadline(Deadline::after(300ms));
  std::vector<Future<Value>> calls;
  for (int i = 0; i < 3; ++i)
    calls.push_back(rt.call_async("gk_testmod:identity", {big}, {}, all));
  calls.push_back(rt.call_async("gk_testmod:add", {2, 2}, {}, all));
  for (auto& f : calls) {
    auto r = f.get();
    CAPTURE(r ? std::string("a result") : r.error().to_string());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::deadline_exceeded);
  }
  CHECK(test::ms_since(t0) < 3000);

  // The stopped workers are killed and reaped, new ones serve.
  auto served = rt.call("gk_testmod:add", {3, 4}, {}, within(10000ms));
  REQUIRE(served.has_value());
  CHECK(served->as_int() == 7);
  auto still_there = [&] {
    for (auto& now : test::children_of_self())
      for (auto& s : stopped)
        if (now.pid == s.pid)
          return true;
    return false;
  };
  for (int i = 0; i < 500 && still_there(); ++i)
    std::this_thread::sleep_for(10ms);
  CHECK_FALSE(still_there());
  auto big_back = rt.call("gk_testmod:identity", {big}, {}, within(10000ms));
  REQUIRE(big_back.has_value());
  CHECK(big_back->as_string().size() == big.size());
}

TEST_CASE("a call stuck in native code holding the GIL is answered at once and its worker stopped, not waited for",
          "[process][hard][native]") {
  // The host would wait a whole second for an interrupted reply.
  Runtime rt(process_config("[timeouts]\ngrace = \"3s\"\ninterrupted_reply_wait = \"1s\"\n"));
  for (int i = 0; i < 3; ++i) {
    REQUIRE(rt.call("gk_testmod:add", {1, 1}, {}, within(10000ms)).has_value());  // a worker is ready
    auto deadline = Deadline::after(200ms);
    auto r = rt.call("gk_testmod:spin_native", {30.0}, {}, RequestOptions::with_deadline(deadline));
    auto late_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - deadline.when()).count();
    REQUIRE_FALSE(r.has_value());
    CAPTURE(r.error().to_string(), late_ms);
    CHECK(r.error().code == ErrorCode::deadline_exceeded);
    CHECK(r.error().phase == DeadlinePhase::hard);
    CHECK(r.error().message.find("was still running native code past its deadline") != std::string::npos);
    CHECK(late_ms < 500);  // not the second of interrupted_reply_wait, nor the 3 s of grace
    // Python code in the same situation is interrupted as before.
    REQUIRE(rt.call("gk_testmod:add", {1, 1}, {}, within(10000ms)).has_value());
    auto soft = rt.call("gk_testmod:busy_loop", {}, {}, within(200ms));
    REQUIRE_FALSE(soft.has_value());
    CHECK(soft.error().phase == DeadlinePhase::soft);
    CHECK(soft.error().type == "gilkeeper.DeadlineExceeded");
  }
  // The stopped workers are killed at the end of their grace and reaped.
  CHECK(restarts(rt, "hard_deadline") <= 3);
}
