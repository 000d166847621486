// Overload: requests whose callers were already told do not pile up.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace gk;
using namespace std::chrono_literals;

namespace {

std::uint64_t self_rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

} // namespace

TEST_CASE("requests answered at their deadline while queued do not pile up behind a slow call", "[runtime][deadline][overload]") {
  Runtime rt(test::test_config());
  REQUIRE(rt.import_module("gk_testmod").has_value());
  // The interpreter is busy for a while: everything behind it expires.
  auto blocker = rt.call_async("gk_testmod:sleep_for", {2.0}, {}, RequestOptions::with_deadline(Deadline::after(10s)));
  constexpr int n = 20000;
  std::vector<Future<Value>> futures;
  futures.reserve(n);
  std::size_t most_queued = 0;
  for (int i = 0; i < n; ++i) {
    futures.push_back(rt.call_async("gk_testmod:identity", {i}, {}, RequestOptions::with_deadline(Deadline::after(1ms))));
    if (i % 1000 == 999) {
      std::this_thread::sleep_for(3ms);  // their deadlines pass meanwhile
      most_queued = std::max(most_queued, rt.stats().queued);
    }
  }
  CHECK_FALSE(blocker.ready());
  INFO("the most requests queued at once: " << most_queued);
  // Without dropping the answered ones the queue would hold all 20,000
  // until the slow call ends.
  CHECK(most_queued < 5000);
  // Each caller got exactly its one reply: deadline_exceeded, while queued.
  int queued_misses = 0;
  for (auto& f : futures) {
    auto r = f.get();
    if (!r && r.error().code == ErrorCode::deadline_exceeded && r.error().phase == DeadlinePhase::queued)
      ++queued_misses;
  }
  CHECK(queued_misses == n);
  blocker.cancel();
  REQUIRE(rt.call("gk_testmod:identity", {1}).has_value());
  auto stats = rt.stats();  // type() points into it
  auto* call = stats.type("call");
  REQUIRE(call != nullptr);
  CHECK(call->missed_queued >= static_cast<std::uint64_t>(n));
}

TEST_CASE("a request beyond max_queued is refused at once with overloaded, and answered requests make room",
          "[runtime][overload]") {
  Runtime rt(test::test_config("[runtime]\nmax_queued = 100\n"));
  REQUIRE(rt.import_module("gk_testmod").has_value());
  auto blocker = rt.call_async("gk_testmod:sleep_for", {5.0}, {}, RequestOptions::with_deadline(Deadline::after(10s)));
  while (rt.stats().queued != 0)  // the blocker runs
    std::this_thread::sleep_for(1ms);
  std::vector<Future<Value>> waiting;
  for (int i = 0; i < 100; ++i)
    waiting.push_back(rt.call_async("gk_testmod:identity", {i}, {}, RequestOptions::with_deadline(Deadline::after(10s))));
  auto t0 = std::chrono::steady_clock::now();
  auto refused = rt.call("gk_testmod:identity", {-1}, {}, RequestOptions::with_deadline(Deadline::after(10s)));
  CHECK(test::ms_since(t0) < 1000);  // at once, not at its deadline
  REQUIRE_FALSE(refused.has_value());
  CAPTURE(refused.error().message);
  CHECK(refused.error().code == ErrorCode::overloaded);
  CHECK(refused.error().message.find("max_queued = 100") != std::string::npos);
  // Cancelled while queued: answered, so they no longer count.
  for (auto& f : waiting)
    f.cancel();
  std::this_thread::sleep_for(20ms);  // past the sweep's period
  auto admitted = rt.call_async("gk_testmod:identity", {7}, {}, RequestOptions::with_deadline(Deadline::after(10s)));
  blocker.cancel();
  auto r = admitted.get();
  REQUIRE(r.has_value());
  CHECK(r->as_int() == 7);
  for (auto& f : waiting)
    CHECK(f.get().error().code == ErrorCode::cancelled);
}

TEST_CASE("1,000 threads with 1-20 ms deadlines for 60 s: one reply each, and the host's memory stays flat",
          "[runtime][overload]" GK_TAG_SERIAL_LOAD) {
  Runtime rt(test::test_config());
  REQUIRE(rt.import_module("gk_testmod").has_value());
  constexpr int threads = 1000;
  const auto run_for = 60s;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> calls{0}, replies{0}, ok{0}, late{0}, other{0};
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::uint64_t state = 0x9e3779b97f4a7c15ull * static_cast<std::uint64_t>(t + 1);
      while (!stop.load(std::memory_order_relaxed)) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        auto budget = std::chrono::milliseconds(1 + static_cast<int>(state % 20));
        calls++;
        // A slow call now and then keeps the queue long.
        auto target = state % 500 == 0 ? "gk_testmod:sleep_for" : "gk_testmod:identity";
        Value arg = state % 500 == 0 ? Value(0.05) : Value(static_cast<std::int64_t>(state % 1000));
        auto r = rt.call(target, {arg}, {}, RequestOptions::with_deadline(Deadline::after(budget)));
        replies++;
        if (r)
          ok++;
        else if (r.error().code == ErrorCode::deadline_exceeded)
          late++;
        else
          other++;
      }
    });
  // RSS of this process, sampled: after a warm-up, it must not keep growing.
  auto rss = [] { return self_rss_bytes(); };
  std::this_thread::sleep_for(10s);
  auto after_warmup = rss();
  std::uint64_t most = after_warmup;
  std::size_t most_queued = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < run_for - 10s) {
    std::this_thread::sleep_for(500ms);
    most = std::max(most, rss());
    most_queued = std::max(most_queued, rt.stats().queued);
  }
  stop = true;
  for (auto& th : pool)
    th.join();
  INFO("calls " << calls << ", ok " << ok << ", deadline_exceeded " << late << ", other " << other
                << "; RSS after warm-up " << after_warmup / 1048576 << " MiB, most " << most / 1048576
                << " MiB; most queued " << most_queued);
  CHECK(replies == calls);
  CHECK(other == 0);
  CHECK(ok > 0);
  CHECK(late > 0);
  // Flat: within 64 MiB of the warm-up (unbounded growth was ~25 MB/s).
  CHECK(most < after_warmup + (64u << 20));
  CHECK(most_queued <= 2 * threads + 1024);
}
