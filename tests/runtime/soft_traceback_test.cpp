// A soft deadline's error says where the Python code was: the Python type
// and a traceback naming the function, from the first interrupt of a fresh
// runtime on, in loops that allocate, and while the code still cleans up.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace gk;
using namespace std::chrono_literals;

namespace {

RequestOptions within(std::chrono::microseconds us) {
  return RequestOptions::with_deadline(Deadline::after(us));
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

} // namespace

TEST_CASE("1,000 soft deadlines, the first in a fresh runtime, each carry gilkeeper.DeadlineExceeded and a traceback "
          "naming the function",
          "[deadline][traceback]") {
  // The caller waits long enough for the interrupted error even on a loaded
  // machine: this checks that the error always says where the code was, and
  // that it comes promptly (the default wait's figures: docs/deadlines.md).
  Runtime rt(test::test_config("[timeouts]\ninterrupted_reply_wait = \"100ms\"\n"));
  // Imported first, so that no interrupt lands in the import.
  REQUIRE(rt.import_module("gk_softmod").has_value());
  // Allocating loops first: the first interrupt of the runtime hits one.
  const std::vector<std::string> functions = {"grow_lists", "build_strs", "build_zeros", "spin", "nap"};
  std::vector<double> late_ms;
  int queued = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string& function = functions[static_cast<std::size_t>(i) % functions.size()];
    auto budget = std::chrono::microseconds(2000 + 1000 * (i % 3));  // 2, 3 or 4 ms
    auto options = within(budget);
    auto deadline = options.deadline.when();
    auto r = rt.call("gk_softmod:" + function, {}, {}, options);
    late_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - deadline).count());
    CAPTURE(i, function);
    REQUIRE_FALSE(r.has_value());
    REQUIRE(r.error().code == ErrorCode::deadline_exceeded);
    if (r.error().phase == DeadlinePhase::queued && queued < 500) {
      // A loaded machine may start the call after its budget (the interpreter
      // thread still unwinding the call before, or not scheduled): nothing
      // ran. Not what this test is about: go again.
      ++queued;
      late_ms.pop_back();
      --i;
      continue;
    }
    CAPTURE(r.error().to_string(), r.error().traceback);
    REQUIRE(r.error().phase == DeadlinePhase::soft);
    REQUIRE(r.error().type == "gilkeeper.DeadlineExceeded");
    REQUIRE(r.error().where == "gk_softmod:" + function);
    REQUIRE(r.error().traceback.rfind("Traceback (most recent call last):\n", 0) == 0);
    REQUIRE(r.error().traceback.find("gk_softmod.py\", line ") != std::string::npos);
    REQUIRE(r.error().traceback.find(", in " + function + "\n") != std::string::npos);
    REQUIRE(r.error().traceback.find("gilkeeper.DeadlineExceeded: call gk_softmod:" + function
                                     + " ran past its deadline\n")
            != std::string::npos);
  }
  double p50 = percentile(late_ms, 0.5), p99 = percentile(late_ms, 0.99);
  WARN("deadline -> reply with the traceback, over " << late_ms.size() << " soft deadlines: p50 " << p50
                                                      << " ms, p99 " << p99 << " ms");
  // Only a gross regression: on this 2-core machine it is ~0.15 ms (p50).
  CHECK(p99 < 20.0);
}

TEST_CASE("a caller is told where its code was while the code still cleans up after its deadline",
          "[deadline][traceback]") {
  // The watch would wait a second: only the interrupt itself can answer in time.
  Runtime rt(test::test_config("[timeouts]\ninterrupted_reply_wait = \"1s\"\n"));
  REQUIRE(rt.import_module("gk_softmod").has_value());
  auto options = within(20ms);
  auto deadline = options.deadline.when();
  auto r = rt.call("gk_softmod:slow_cleanup", {0.3}, {}, options);
  double late_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - deadline).count();
  REQUIRE_FALSE(r.has_value());
  CAPTURE(r.error().to_string(), r.error().traceback);
  CHECK(r.error().code == ErrorCode::deadline_exceeded);
  CHECK(r.error().phase == DeadlinePhase::soft);
  CHECK(r.error().type == "gilkeeper.DeadlineExceeded");
  CHECK(r.error().traceback.find(", in slow_cleanup\n") != std::string::npos);
  CHECK(r.error().traceback.find("    while True:\n") != std::string::npos);
  // Told before the 300 ms cleanup ends.
  CHECK(late_ms < 150);
  // The interpreter is free again once the cleanup ended.
  auto next = rt.call("gk_testmod:add", {1, 2}, {}, within(2s));
  REQUIRE(next.has_value());
  CHECK(next->as_int() == 3);
  CHECK(rt.stats().type("call")->missed_soft == 1);
}

TEST_CASE("a deep recursion's soft traceback folds repeated frames as Python does, with the source lines",
          "[deadline][traceback]") {
  Runtime rt(test::test_config("[timeouts]\ninterrupted_reply_wait = \"100ms\"\n"));
  REQUIRE(rt.import_module("gk_softmod").has_value());
  auto r = rt.call("gk_softmod:recurse", {}, {}, within(20ms));
  REQUIRE_FALSE(r.has_value());
  const std::string& tb = r.error().traceback;
  CAPTURE(tb);
  CHECK(r.error().type == "gilkeeper.DeadlineExceeded");
  CHECK(tb.find(", in recurse\n    return _down(40)\n") != std::string::npos);
  // _down(40) .. _down(1) on one line: three shown, then folded; _down(0) loops.
  CHECK(tb.find("    return _down(n - 1)\n  [Previous line repeated 37 more times]\n") != std::string::npos);
  CHECK(tb.find(", in _down\n    while True:\ngilkeeper.DeadlineExceeded: call gk_softmod:recurse ran past its "
                "deadline\n")
        != std::string::npos);
}

TEST_CASE("[timeouts] interrupted_reply_wait bounds how late the caller of code stuck in native code is told",
          "[deadline][traceback][config]") {
  CHECK(Config{}.timeouts.interrupted_reply_wait == 1500us);
  CHECK_THROWS_WITH(parse_config("[timeouts]\ninterrupted_reply_wait = \"none\"\n", "t.toml"),
                    Catch::Contains("timeouts.interrupted_reply_wait"));
  Runtime rt(test::test_config("[timeouts]\ninterrupted_reply_wait = \"40ms\"\n"));
  REQUIRE(rt.import_module("gk_testext").has_value());
  auto options = within(20ms);
  auto deadline = options.deadline.when();
  // A C loop holding the GIL for 400 ms: the interrupt cannot reach Python.
  auto r = rt.call("gk_testext:spin", {0.4}, {}, options);
  double late_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - deadline).count();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == ErrorCode::deadline_exceeded);
  CHECK(r.error().phase == DeadlinePhase::soft);
  CHECK(r.error().type.empty());
  CHECK(late_ms >= 40);
  CHECK(late_ms < 300);
}
