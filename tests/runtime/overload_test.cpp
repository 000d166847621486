// Overload: requests whose callers were already told do not pile up.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <thread>
#include <vector>

using namespace gk;
using namespace std::chrono_literals;

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
