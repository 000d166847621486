// Runtime::metrics(): the Prometheus text exposition of the runtime's
// counters, read back with prometheus_client's parser, agrees with stats()
// in both isolations; the formatting of a Stats value on its own.
#include "../support.hpp"
#include "runtime/detail/metrics.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <sstream>
#include <thread>

using namespace gk;
using namespace std::chrono_literals;

using test::metric_sum;
using test::MetricSample;
using test::within;

namespace {

std::vector<MetricSample> parsed(const std::string& text) {
  std::vector<MetricSample> samples;
  std::string error;
  INFO(text);
  INFO(error);
  bool ok = test::parse_metrics(text, samples, error);
  INFO(error);
  REQUIRE(ok);
  REQUIRE_FALSE(samples.empty());
  return samples;
}

std::uint64_t replies_counted(const Stats& s) {
  std::uint64_t n = 0;
  for (auto& t : s.targets)
    for (auto& [outcome, count] : t.outcomes)
      n += count;
  return n;
}

// Waits (bounded) until `n` replies are counted by target: a caller can be
// told at its deadline before the executor's own reply is counted.
Stats settled_stats(Runtime& rt, std::uint64_t n) {
  Stats s = rt.stats();
  for (int i = 0; i < 1000 && replies_counted(s) < n; ++i) {
    std::this_thread::sleep_for(10ms);
    s = rt.stats();
  }
  return s;
}

// Every family of the text has a HELP and a TYPE line before its samples.
void check_help_and_type(const std::string& text) {
  std::set<std::string> helped, typed;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    INFO(line);
    if (line.rfind("# HELP ", 0) == 0) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      auto name = line.substr(7, line.find(' ', 7) - 7);
      CHECK(helped.count(name) == 1);
      typed.insert(name);
      continue;
    }
    REQUIRE_FALSE(line.empty());
    std::string name = line.substr(0, line.find_first_of("{ "));
    bool known = typed.count(name) > 0;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s = suffix;
      if (!known && name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0)
        known = typed.count(name.substr(0, name.size() - s.size())) > 0;
    }
    CHECK(known);
  }
}

// What metrics() says agrees with stats(): replies per (type, target,
// outcome), deadline misses per (type, phase), restarts per cause, and
// each type's histograms.
void check_agreement(const Stats& s, const std::vector<MetricSample>& m) {
  double total = 0;
  for (auto& t : s.targets) {
    for (auto& [outcome, n] : t.outcomes) {
      CAPTURE(t.type, t.target, outcome);
      CHECK(metric_sum(m, "gilkeeper_requests_total", {{"type", t.type}, {"target", t.target}, {"outcome", outcome}})
            == static_cast<double>(n));
      total += static_cast<double>(n);
    }
  }
  CHECK(metric_sum(m, "gilkeeper_requests_total") == total);
  for (auto& t : s.types) {
    CAPTURE(t.type);
    CHECK(metric_sum(m, "gilkeeper_deadline_misses_total", {{"type", t.type}, {"phase", "queued"}})
          == static_cast<double>(t.missed_queued));
    CHECK(metric_sum(m, "gilkeeper_deadline_misses_total", {{"type", t.type}, {"phase", "soft"}})
          == static_cast<double>(t.missed_soft));
    CHECK(metric_sum(m, "gilkeeper_deadline_misses_total", {{"type", t.type}, {"phase", "hard"}})
          == static_cast<double>(t.missed_hard));
    CHECK(metric_sum(m, "gilkeeper_request_errors_total", {{"type", t.type}}) == static_cast<double>(t.errors));
    CHECK(metric_sum(m, "gilkeeper_request_seconds_count", {{"type", t.type}})
          == static_cast<double>(t.run_histogram.count));
    CHECK(metric_sum(m, "gilkeeper_request_queue_seconds_count", {{"type", t.type}})
          == static_cast<double>(t.queue_histogram.count));
    CHECK(metric_sum(m, "gilkeeper_request_seconds_bucket", {{"type", t.type}, {"le", "+Inf"}})
          == static_cast<double>(t.run_histogram.count));
    // Cumulative: never fewer at a larger bound.
    double before = 0;
    for (std::size_t i = 0; i < t.run_histogram.le_seconds.size(); ++i) {
      double n = static_cast<double>(t.run_histogram.cumulative[i]);
      CHECK(n >= before);
      CHECK(n <= static_cast<double>(t.run_histogram.count));
      before = n;
    }
  }
  for (auto& [cause, n] : s.restarts_by_cause) {
    CAPTURE(cause);
    CHECK(metric_sum(m, "gilkeeper_worker_restarts_total", {{"cause", cause}}) == static_cast<double>(n));
  }
  CHECK(metric_sum(m, "gilkeeper_worker_restarts_total") == static_cast<double>(s.restarts));
  CHECK(metric_sum(m, "gilkeeper_capability_denials_total") == static_cast<double>(s.capability_denials));
  CHECK(metric_sum(m, "gilkeeper_workers") == static_cast<double>(s.workers));
  CHECK(metric_sum(m, "gilkeeper_info", {{"isolation", s.isolation}, {"python_version", s.python_version}}) == 1);
}

// A hand-made Stats: one message type with histograms, an awkward target.
Stats sample_stats() {
  Stats s;
  TypeStats call;
  call.type = "call";
  call.submitted = 5;
  call.calls = 5;
  call.errors = 1;
  call.missed_soft = 1;
  call.run_histogram.le_seconds = {0.001, 0.01};
  call.run_histogram.cumulative = {2, 3};
  call.run_histogram.sum_seconds = 0.0125;
  call.run_histogram.count = 4;
  call.queue_histogram = call.run_histogram;
  s.types.push_back(call);
  TargetStats odd;
  odd.type = "call";
  odd.target = "we\"ird\\path\nx";
  odd.outcomes = {{"ok", 3}, {"python_exception", 1}};
  odd.slow = 2;
  s.targets.push_back(odd);
  s.slow_calls = 2;
  s.restarts = 2;
  s.restarts_by_cause = {{"crashed", 2}};
  s.isolation = "process";
  s.python_version = "3.11.2";
  s.workers = 3;
  s.rss_bytes = 123456789;
  return s;
}

} // namespace

TEST_CASE("the exposition of a Stats value escapes label values and parses with Prometheus' parser",
          "[metrics][format]") {
  auto text = detail::metrics_text(sample_stats(), "9.9.9");
  INFO(text);
  check_help_and_type(text);
  // Backslash, double quote and newline escaped as the format says.
  CHECK(text.find("target=\"we\\\"ird\\\\path\\nx\"") != std::string::npos);

  auto m = parsed(text);
  std::string odd = "we\"ird\\path\nx";
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"type", "call"}, {"target", odd}, {"outcome", "ok"}}) == 3);
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"target", odd}, {"outcome", "python_exception"}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_slow_calls_total", {{"target", odd}}) == 2);
  CHECK(metric_sum(m, "gilkeeper_request_seconds_bucket", {{"type", "call"}, {"le", "0.001"}}) == 2);
  CHECK(metric_sum(m, "gilkeeper_request_seconds_bucket", {{"type", "call"}, {"le", "0.01"}}) == 3);
  CHECK(metric_sum(m, "gilkeeper_request_seconds_bucket", {{"type", "call"}, {"le", "+Inf"}}) == 4);
  CHECK(metric_sum(m, "gilkeeper_request_seconds_sum", {{"type", "call"}}) == Approx(0.0125));
  CHECK(metric_sum(m, "gilkeeper_request_seconds_count", {{"type", "call"}}) == 4);
  CHECK(metric_sum(m, "gilkeeper_deadline_misses_total", {{"type", "call"}, {"phase", "soft"}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_worker_restarts_total", {{"cause", "crashed"}}) == 2);
  // Causes that did not occur are there, at 0.
  std::size_t causes = 0;
  for (auto& s : m)
    causes += s.name == "gilkeeper_worker_restarts_total" ? 1 : 0;
  CHECK(causes == 5);
  CHECK(metric_sum(m, "gilkeeper_resident_memory_bytes") == 123456789);
  CHECK(metric_sum(m, "gilkeeper_info", {{"version", "9.9.9"}, {"python_version", "3.11.2"}, {"isolation", "process"}})
        == 1);

  // The families' types, as the parser reads them.
  std::map<std::string, std::string> types;
  for (auto& s : m)
    types[s.family] = s.type;
  CHECK(types["gilkeeper_requests"] == "counter");
  CHECK(types["gilkeeper_request_seconds"] == "histogram");
  CHECK(types["gilkeeper_request_queue_seconds"] == "histogram");
  CHECK(types["gilkeeper_queued_requests"] == "gauge");
  CHECK(types["gilkeeper_resident_memory_bytes"] == "gauge");
}

TEST_CASE("thread isolation: metrics after ok calls, exceptions and a deadline miss agree with stats()",
          "[metrics][runtime]") {
  Runtime rt(test::test_config());
  for (int i = 0; i < 3; ++i)
    REQUIRE(rt.call("gk_testmod:add", {i, 1}).has_value());
  for (int i = 0; i < 2; ++i)
    REQUIRE_FALSE(rt.call("gk_testmod:raise_value_error", {"no"}).has_value());
  auto late = rt.call("gk_testmod:sleep_for", {5.0}, {}, within(100ms));
  REQUIRE_FALSE(late.has_value());
  CHECK(late.error().code == ErrorCode::deadline_exceeded);
  auto box = rt.call_ref("gk_testmod:make_box", {1});
  REQUIRE(box.has_value());
  REQUIRE(rt.call(*box, "add", {2}).has_value());
  std::vector<CallRequest> calls = {CallRequest("gk_testmod:add", {1, 2}),
                                    CallRequest("gk_testmod:raise_value_error", {"in a batch"}),
                                    CallRequest("gk_testmod:add", {3, 4})};
  auto batch = rt.batch(calls);
  REQUIRE(batch.has_value());
  REQUIRE(rt.eval("1 + 1").has_value());

  // 3 + 2 + 1 calls, make_box, the Ref's add, 3 calls of the batch, eval.
  Stats s = settled_stats(rt, 12);
  auto* add = s.target("call", "gk_testmod:add");
  REQUIRE(add != nullptr);
  CHECK(add->count("ok") == 3);
  REQUIRE(s.target("call", "gk_testmod:raise_value_error") != nullptr);
  CHECK(s.target("call", "gk_testmod:raise_value_error")->count("python_exception") == 2);
  REQUIRE(s.target("call", "gk_testmod:sleep_for") != nullptr);
  CHECK(s.target("call", "gk_testmod:sleep_for")->count("deadline_exceeded") == 1);
  REQUIRE(s.target("call", "<gk_testmod.Box>.add") != nullptr);
  CHECK(s.target("call", "<gk_testmod.Box>.add")->count("ok") == 1);
  // Each call of the batch under its own target.
  REQUIRE(s.target("batch", "gk_testmod:add") != nullptr);
  CHECK(s.target("batch", "gk_testmod:add")->count("ok") == 2);
  REQUIRE(s.target("batch", "gk_testmod:raise_value_error") != nullptr);
  CHECK(s.target("batch", "gk_testmod:raise_value_error")->count("python_exception") == 1);
  REQUIRE(s.target("eval", "") != nullptr);
  CHECK(s.target("eval", "")->count("ok") == 1);
  CHECK(s.type("call")->missed_soft == 1);

  auto text = rt.metrics();
  check_help_and_type(text);
  auto m = parsed(text);
  check_agreement(s, m);
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"type", "call"}, {"target", "gk_testmod:sleep_for"},
                                                   {"outcome", "deadline_exceeded"}})
        == 1);
  CHECK(metric_sum(m, "gilkeeper_deadline_misses_total", {{"type", "call"}, {"phase", "soft"}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_worker_restarts_total") == 0);
  CHECK(metric_sum(m, "gilkeeper_live_refs") == 1);
  CHECK(metric_sum(m, "gilkeeper_info", {{"isolation", "thread"}}) == 1);
  // The run time of the 100 ms miss lands in a bucket above 50 ms.
  CHECK(metric_sum(m, "gilkeeper_request_seconds_bucket", {{"type", "call"}, {"le", "+Inf"}})
        - metric_sum(m, "gilkeeper_request_seconds_bucket", {{"type", "call"}, {"le", "0.05"}})
        >= 1);
  CHECK(metric_sum(m, "gilkeeper_request_seconds_sum", {{"type", "call"}}) >= 0.09);

  // After shutdown: the last counts.
  double replies = metric_sum(m, "gilkeeper_requests_total");
  rt.shutdown();
  auto after = parsed(rt.metrics());
  CHECK(metric_sum(after, "gilkeeper_requests_total") >= replies);
  CHECK(metric_sum(after, "gilkeeper_requests_total", {{"type", "call"}, {"target", "gk_testmod:add"}, {"outcome", "ok"}})
        == 3);
}

TEST_CASE("process isolation: metrics after exceptions, misses, a crash and a kill agree with stats()",
          "[metrics][process]") {
  Runtime rt(test::process_config("[timeouts]\ngrace = \"200ms\"\n"));
  for (int i = 0; i < 3; ++i)
    REQUIRE(rt.call("gk_testmod:add", {i, 1}, {}, within(10000ms)).has_value());
  for (int i = 0; i < 2; ++i)
    REQUIRE_FALSE(rt.call("gk_testmod:raise_value_error", {"no"}, {}, within(10000ms)).has_value());
  auto soft = rt.call("gk_testmod:sleep_for", {5.0}, {}, within(300ms));
  REQUIRE_FALSE(soft.has_value());
  CHECK(soft.error().code == ErrorCode::deadline_exceeded);
  auto crashed = rt.call("gk_testmod:crash_segv", {}, {}, within(10000ms));
  REQUIRE_FALSE(crashed.has_value());
  CHECK(crashed.error().code == ErrorCode::worker_crashed);
  auto hard = rt.call("gk_testmod:spin_native", {30.0}, {}, within(300ms));
  REQUIRE_FALSE(hard.has_value());
  CHECK(hard.error().code == ErrorCode::deadline_exceeded);
  std::vector<CallRequest> calls = {CallRequest("gk_testmod:add", {1, 2}),
                                    CallRequest("gk_testmod:raise_value_error", {"in a batch"})};
  REQUIRE(rt.batch(calls, within(10000ms)).has_value());

  // The kill comes `grace` after the deadline; its reply is counted then.
  for (int i = 0; i < 500 && test::restarts(rt, "hard_deadline") < 1; ++i)
    std::this_thread::sleep_for(10ms);
  // 3 + 2 + soft + crash + hard, and the 2 calls of the batch.
  Stats s = settled_stats(rt, 10);
  CHECK(s.target("call", "gk_testmod:add")->count("ok") == 3);
  CHECK(s.target("call", "gk_testmod:raise_value_error")->count("python_exception") == 2);
  REQUIRE(s.target("call", "gk_testmod:sleep_for") != nullptr);
  CHECK(s.target("call", "gk_testmod:sleep_for")->count("deadline_exceeded") == 1);
  REQUIRE(s.target("call", "gk_testmod:crash_segv") != nullptr);
  CHECK(s.target("call", "gk_testmod:crash_segv")->count("worker_crashed") == 1);
  REQUIRE(s.target("call", "gk_testmod:spin_native") != nullptr);
  CHECK(s.target("call", "gk_testmod:spin_native")->count("deadline_exceeded") == 1);
  REQUIRE(s.target("batch", "gk_testmod:raise_value_error") != nullptr);
  CHECK(s.target("batch", "gk_testmod:raise_value_error")->count("python_exception") == 1);
  CHECK(s.type("call")->missed_hard == 1);
  CHECK(test::restarts(rt, "crashed") == 1);
  CHECK(test::restarts(rt, "hard_deadline") == 1);

  auto text = rt.metrics();
  check_help_and_type(text);
  auto m = parsed(text);
  check_agreement(s, m);
  CHECK(metric_sum(m, "gilkeeper_deadline_misses_total", {{"type", "call"}, {"phase", "hard"}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_worker_restarts_total", {{"cause", "crashed"}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_worker_restarts_total", {{"cause", "hard_deadline"}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"target", "gk_testmod:crash_segv"}, {"outcome", "worker_crashed"}})
        == 1);
  CHECK(metric_sum(m, "gilkeeper_info", {{"isolation", "process"}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_resident_memory_bytes") > 0);
}
