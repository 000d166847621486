// The crash breaker (process isolation): a crash costs the call it hit (a
// call that crashes its worker again and again is quarantined), never the
// runtime; only workers that die at start-up make the runtime degraded;
// our own hard-deadline kills are not crashes.
#include "../support.hpp"
#include "../support_proc.hpp"

#include "gilkeeper/runtime/pipeline.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <iostream>
#include <mutex>
#include <thread>

using namespace gk;
using namespace std::chrono_literals;

using test::process_config;
using test::restarts;
using test::within;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("2 segfaulting records among 3000, retried on worker_crashed, leave the 2998 others successful",
          "[process][poison]") {
  Runtime rt(process_config("workers = 2\n"));
  // The retry policy of examples/async_pipeline.cpp.
  RetryPolicy retry;
  retry.attempts = 3;
  retry.on = {ErrorCode::worker_crashed};
  Pipeline p(rt, {Stage::python("score", "gk_testmod:segfault_if_poison").with_retry(retry).with_parallelism(2)});
  std::mutex m;
  std::vector<Output> outputs;
  std::vector<Failure> failures;
  p.on_output([&](Output&& o) {
    std::lock_guard<std::mutex> g(m);
    outputs.push_back(std::move(o));
  });
  p.on_failure([&](Failure&& f) {
    std::lock_guard<std::mutex> g(m);
    failures.push_back(std::move(f));
  });

  const std::int64_t n = 3000;
  auto poison = [](std::int64_t i) { return i == 700 || i == 2100; };
  auto t0 = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < n; ++i)
    REQUIRE(p.push(static_cast<std::uint64_t>(i), Value::dict({{"x", i}, {"poison", poison(i)}})));
  p.close();
  auto report = p.wait();
  double seconds = test::ms_since(t0) / 1000;

  std::lock_guard<std::mutex> g(m);
  std::cout << "poison: " << outputs.size() << " of 2998 good records succeeded in " << seconds << " s; "
            << restarts(rt, "crashed") << " workers crashed\n";
  CHECK(report.ok == 2998);
  CHECK(report.failed == 2);
  REQUIRE(outputs.size() == 2998);
  for (auto& o : outputs) {
    CHECK_FALSE(poison(static_cast<std::int64_t>(o.id)));
    CHECK(o.value.as_int() == static_cast<std::int64_t>(o.id) * 2);
  }
  REQUIRE(failures.size() == 2);
  CHECK(failures[0].id == 700);
  CHECK(failures[1].id == 2100);
  for (auto& f : failures) {
    CAPTURE(f.error.message);
    CHECK(f.error.code == ErrorCode::worker_crashed);
    CHECK(f.error.signal == SIGSEGV);
    CHECK(f.attempts == 3);
    // The third attempt did not run: the call had crashed its worker twice.
    CHECK(contains(f.error.message, "quarantined"));
  }
  CHECK(report.by_code.count("degraded") == 0);
  // Each poison record crashed its batch, then itself twice.
  CHECK(restarts(rt, "crashed") <= 6);
  // The runtime is not degraded: the next call is served.
  auto after = rt.call("gk_testmod:add", {1, 2}, {}, within(10000ms));
  REQUIRE(after.has_value());
  CHECK(after->as_int() == 3);
}

TEST_CASE("a call that crashed its worker twice is quarantined: its repeats fail at once and the runtime stays "
          "serving",
          "[process][poison]") {
  Runtime rt(process_config("degraded_after = 1\n"));
  auto first = rt.call("gk_testmod:crash_segv", {}, {}, within(10000ms));
  REQUIRE_FALSE(first.has_value());
  CHECK(first.error().code == ErrorCode::worker_crashed);
  CHECK(first.error().signal == SIGSEGV);
  CHECK_FALSE(contains(first.error().message, "quarantined"));

  auto second = rt.call("gk_testmod:crash_segv", {}, {}, within(10000ms));
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error().code == ErrorCode::worker_crashed);
  CHECK(second.error().signal == SIGSEGV);
  CHECK(contains(second.error().message, "crashed its worker 2 times: it is quarantined for 10m"));

  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    auto r = rt.call("gk_testmod:crash_segv", {}, {}, within(10000ms));
    REQUIRE_FALSE(r.has_value());
    CAPTURE(r.error().message);
    CHECK(r.error().code == ErrorCode::worker_crashed);
    CHECK(r.error().signal == SIGSEGV);
    CHECK(r.error().where == "gk_testmod:crash_segv");
    CHECK(contains(r.error().message, "gk_testmod:crash_segv: quarantined: this call (the same target and arguments) "
                                      "crashed its worker process 2 times (last: killed by signal 11 (SIGSEGV))"));
  }
  // Answered without running: no crash, no back-off between them.
  CHECK(test::ms_since(t0) < 5000);
  CHECK(restarts(rt, "crashed") == 2);

  // In a batch, only the quarantined call fails; the others run.
  auto batch = rt.batch({CallRequest("gk_testmod:add", {1, 2}), CallRequest("gk_testmod:crash_segv"),
                         CallRequest("gk_testmod:add", {3, 4})},
                        within(10000ms));
  REQUIRE(batch.has_value());
  REQUIRE(batch->size() == 3);
  CHECK((*batch)[0]->as_int() == 3);
  REQUIRE_FALSE((*batch)[1].has_value());
  CHECK((*batch)[1].error().code == ErrorCode::worker_crashed);
  CHECK(contains((*batch)[1].error().message, "quarantined"));
  CHECK((*batch)[2]->as_int() == 7);
  CHECK(restarts(rt, "crashed") == 2);

  // Not degraded: other calls are served.
  auto ok = rt.call("gk_testmod:add", {2, 2}, {}, within(10000ms));
  REQUIRE(ok.has_value());
  CHECK(ok->as_int() == 4);
}

TEST_CASE("a quarantine ends after quarantine_for: the call runs once more and its next crash quarantines it again",
          "[process][poison]") {
  Runtime rt(process_config("quarantine_for = \"2s\"\n"));
  // A worker is ready: a quarantined call is then answered at once.
  auto ready = [&] { REQUIRE(rt.call("gk_testmod:add", {1, 1}, {}, within(10000ms)).has_value()); };
  for (int i = 0; i < 2; ++i)
    CHECK(rt.call("gk_testmod:crash_segv", {}, {}, within(10000ms)).error().code == ErrorCode::worker_crashed);
  ready();
  CHECK(contains(rt.call("gk_testmod:crash_segv", {}, {}, within(10000ms)).error().message, "quarantined"));
  CHECK(restarts(rt, "crashed") == 2);

  std::this_thread::sleep_for(2100ms);
  ready();
  auto again = rt.call("gk_testmod:crash_segv", {}, {}, within(10000ms));
  REQUIRE_FALSE(again.has_value());
  CAPTURE(again.error().message);
  CHECK(contains(again.error().message, "crashed its worker 3 times: it is quarantined for 2s"));
  CHECK(restarts(rt, "crashed") == 3);
  ready();
  CHECK(contains(rt.call("gk_testmod:crash_segv", {}, {}, within(10000ms)).error().message, "quarantined"));
  CHECK(restarts(rt, "crashed") == 3);
}

TEST_CASE("crashes of distinct calls cost only those calls: the runtime is never degraded by them",
          "[process][poison][degraded]") {
  // One failure that counted would make it degraded: crashes do not count.
  Runtime rt(process_config("degraded_after = 1\n"));
  for (int code = 21; code <= 30; ++code) {
    auto r = rt.call("gk_testmod:exit_now", {code}, {}, within(10000ms));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::worker_crashed);
    CHECK(r.error().exit_status == code);
    CHECK_FALSE(contains(r.error().message, "quarantined"));
    auto served = rt.call("gk_testmod:add", {code, 1}, {}, within(10000ms));
    REQUIRE(served.has_value());
    CHECK(served->as_int() == code + 1);
  }
  CHECK(restarts(rt, "crashed") == 10);
  CHECK(test::zombies_after_reap() == 0);
}

TEST_CASE("workers killed from outside fail only the calls they ran, and are replaced at once",
          "[process][poison][degraded]") {
  Runtime rt(process_config("degraded_after = 1\nworkers = 2\n"));
  auto marker = test::temp_dir() + "/started";
  int crashed = 0, ok = 0;
  for (int i = 0; i < 12; ++i) {
    // A call that runs until it is killed from outside (with every other
    // child, the spare too), then the next call.
    std::remove(marker.c_str());
    // (distinct arguments: the same call killed twice would be quarantined)
    auto slow = rt.call_async("gk_testmod:touch_then_sleep", {marker, 30.0 + i}, {}, within(20000ms));
    auto t0 = std::chrono::steady_clock::now();
    while (test::ms_since(t0) < 10000 && access(marker.c_str(), F_OK) != 0)
      std::this_thread::sleep_for(1ms);
    REQUIRE(access(marker.c_str(), F_OK) == 0);
    auto killed = test::children_of_self();
    for (auto& child : killed)
      ::kill(child.pid, SIGKILL);
    auto r = slow.get();
    REQUIRE_FALSE(r.has_value());
    CAPTURE(r.error().message);
    CHECK(r.error().code == ErrorCode::worker_crashed);
    CHECK(r.error().signal == SIGKILL);
    crashed++;
    // The idle ones are reaped too (a call sent to a killed worker before
    // the supervisor saw it die would fail like the one it ran).
    auto gone = [&] {
      for (auto& now : test::children_of_self())
        for (auto& k : killed)
          if (now.pid == k.pid)
            return false;
      return true;
    };
    t0 = std::chrono::steady_clock::now();
    while (!gone() && test::ms_since(t0) < 5000)
      std::this_thread::sleep_for(1ms);
    REQUIRE(gone());
    auto served = rt.call("gk_testmod:add", {i, 1}, {}, within(10000ms));
    CAPTURE(served.has_value() ? std::string() : served.error().to_string());
    REQUIRE(served.has_value());
    CHECK(served->as_int() == i + 1);
    ok++;
  }
  std::remove(marker.c_str());
  CHECK(crashed == 12);
  CHECK(ok == 12);
  CHECK(test::zombies_after_reap() == 0);
}

TEST_CASE("workers that die at start-up still make the runtime degraded, with a message naming the failed start",
          "[process][poison][degraded]") {
  Runtime rt(process_config());
  // The module's import kills its process, and new workers import it early
  // (the workload has used it): from now on every new worker dies starting,
  // while the spare that started before keeps serving.
  auto crash = rt.call("gk_crash_at_import:never", {}, {}, within(10000ms));
  REQUIRE_FALSE(crash.has_value());
  CHECK(crash.error().code == ErrorCode::worker_crashed);
  CHECK(crash.error().exit_status == 3);

  auto t0 = std::chrono::steady_clock::now();
  Error last;
  while (test::ms_since(t0) < 20000) {
    auto r = rt.call("gk_testmod:add", {1, 1}, {}, within(10000ms));
    if (!r.has_value()) {
      last = r.error();
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  CAPTURE(last.message);
  CHECK(last.code == ErrorCode::degraded);
  CHECK(contains(last.message, "degraded: worker processes keep failing (5 failed starts in the last 10s; last: a "
                               "worker failed to start: exited with status 3)"));
  CHECK(restarts(rt, "failed_start") >= 4);
  CHECK(test::zombies_after_reap() == 0);
}

TEST_CASE("hard-deadline kills are not crashes: they never make the runtime degraded", "[process][poison][hard]") {
  Runtime rt(process_config("degraded_after = 1\n[timeouts]\ngrace = \"50ms\"\n"));
  for (int i = 0; i < 4; ++i) {
    // A worker is ready, so that the stuck call runs rather than expiring
    // in the queue while a replacement starts.
    REQUIRE(rt.call("gk_testmod:add", {1, 1}, {}, within(10000ms)).has_value());
    auto r = rt.call("gk_testmod:spin_native", {30.0}, {}, within(300ms));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::deadline_exceeded);
  }
  for (int i = 0; i < 2000 && restarts(rt, "hard_deadline") < 4; ++i)
    std::this_thread::sleep_for(5ms);
  CHECK(restarts(rt, "hard_deadline") == 4);
  CHECK(restarts(rt, "crashed") == 0);
  auto ok = rt.call("gk_testmod:add", {2, 3}, {}, within(10000ms));
  REQUIRE(ok.has_value());
  CHECK(ok->as_int() == 5);
}
