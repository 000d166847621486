// The stats collector's counting by target: slow calls, a batch's calls
// each under its own target, the bound on targets; Stats with targets and
// histograms survives CAF's serializer.
#include "actors/detail/stats_collector.hpp"
#include "gilkeeper/actors/messages.hpp"

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <catch2/catch.hpp>

using namespace gk;

namespace {

// A slot nobody waits on.
class DroppedSlot final : public ReplySlot {
protected:
  void deliver(AnyReply&&) override {}
};

// A job with a caller, labelled and tallied as the front door does it.
Job job_for(detail::TargetTable& table, AnyRequest request, const std::string& type, const std::string& label) {
  Job job;
  job.type = type;
  job.label = label;
  job.slot = std::make_shared<DroppedSlot>();
  detail::tally_targets(table, request, job);
  job.request = std::move(request);
  return job;
}

const TargetStats* find(const std::vector<TargetStats>& all, const std::string& type, const std::string& target) {
  for (auto& t : all)
    if (t.type == type && t.target == target)
      return &t;
  return nullptr;
}

} // namespace

TEST_CASE("slow() counts a call past its threshold under its target and in the total", "[actors][stats]") {
  detail::TargetTable table;
  detail::StatsCollector stats;
  auto job = job_for(table, CallRequest("m:f"), "call", "call m:f");
  stats.received(job);  // as an executor admits it
  stats.slow("m:f");
  stats.slow("m:f");
  stats.slow("m:g");  // no request yet: an entry of its own

  auto targets = table.snapshot();
  REQUIRE(find(targets, "call", "m:f") != nullptr);
  CHECK(find(targets, "call", "m:f")->slow == 2);
  CHECK(find(targets, "call", "m:f")->outcomes.empty());
  REQUIRE(find(targets, "call", "m:g") != nullptr);
  CHECK(find(targets, "call", "m:g")->slow == 1);
  CHECK(table.slow_calls() == 3);

  detail::reply_to(stats, job, Expected<Value>(Value(1)));
  targets = table.snapshot();
  CHECK(find(targets, "call", "m:f")->count("ok") == 1);
  CHECK(find(targets, "call", "m:f")->slow == 2);
}

TEST_CASE("a batch's replies count each call under its own target, and a refused batch counts every call",
          "[actors][stats]") {
  detail::TargetTable table;
  detail::StatsCollector stats;
  BatchRequest mixed;
  mixed.calls = {CallRequest("m:f"), CallRequest("m:g"), CallRequest("m:f")};
  auto job = job_for(table, mixed, "batch", "batch of 3 (first: call m:f)");
  stats.received(job);
  BatchReply reply;
  reply.results.emplace_back(Value(1));
  reply.results.emplace_back(Error(ErrorCode::python_exception, "no"));
  reply.results.emplace_back(Error::deadline(DeadlinePhase::soft, "late"));
  detail::reply_to(stats, job, AnyReply(std::move(reply)));

  auto targets = table.snapshot();
  REQUIRE(find(targets, "batch", "m:f") != nullptr);
  CHECK(find(targets, "batch", "m:f")->count("ok") == 1);
  CHECK(find(targets, "batch", "m:f")->count("deadline_exceeded") == 1);
  REQUIRE(find(targets, "batch", "m:g") != nullptr);
  CHECK(find(targets, "batch", "m:g")->count("python_exception") == 1);
  CHECK(find(targets, "batch", "m:g")->count("ok") == 0);

  BatchRequest uniform;
  uniform.calls.assign(4, CallRequest("m:f"));
  auto refused = job_for(table, uniform, "batch", "batch of 4 (first: call m:f)");
  REQUIRE(refused.targets.batch != nullptr);
  CHECK(refused.targets.batch->all != nullptr);  // one target: one entry for all
  detail::refuse(stats, refused, Error(ErrorCode::overloaded, "full"));
  targets = table.snapshot();
  CHECK(find(targets, "batch", "m:f")->count("overloaded") == 4);
  CHECK(stats.snapshot().front().errors == 1);  // the batch's reply, once
}

TEST_CASE("targets beyond the bound count under other, and a request answered while queued counts",
          "[actors][stats]") {
  detail::TargetTable table;
  detail::StatsCollector stats;
  for (std::size_t i = 0; i < kMaxTargets + 5; ++i) {
    std::string target = "gen:f" + std::to_string(i);
    auto job = job_for(table, CallRequest(target), "call", "call " + target);
    detail::reply_to(stats, job, Expected<Value>(Value()));
  }
  auto targets = table.snapshot();
  CHECK(targets.size() == kMaxTargets + 1);
  REQUIRE(find(targets, "call", "other") != nullptr);
  CHECK(find(targets, "call", "other")->count("ok") == 5);
  CHECK(find(targets, "call", "gen:f0") != nullptr);
  CHECK(find(targets, "call", "gen:f" + std::to_string(kMaxTargets)) == nullptr);

  // A request its caller was told about at its deadline, found in the queue.
  auto queued = job_for(table, CallRequest("gen:f1"), "call", "call gen:f1");
  queued.slot->complete(Expected<Value>(Error::deadline(DeadlinePhase::queued, "late")));
  CHECK(detail::answered_while_queued(stats, queued));
  CHECK(find(table.snapshot(), "call", "gen:f1")->count("deadline_exceeded") == 1);
}

TEST_CASE("Stats with targets and histograms survives CAF's binary serializer", "[actors][stats][wire]") {
  Stats s;
  TypeStats call;
  call.type = "call";
  call.calls = 7;
  call.run_histogram.le_seconds = {0.001, 0.01};
  call.run_histogram.cumulative = {3, 6};
  call.run_histogram.sum_seconds = 0.02;
  call.run_histogram.count = 7;
  call.queue_histogram.count = 7;
  s.types.push_back(call);
  TargetStats t;
  t.target = "m:f";
  t.type = "call";
  t.outcomes = {{"ok", 6}, {"python_exception", 1}};
  t.slow = 2;
  s.targets.push_back(t);
  s.slow_calls = 2;
  s.isolation = "process";

  std::vector<char> buf;
  caf::binary_serializer sink(nullptr, buf);
  REQUIRE_FALSE(sink(s));
  Stats back;
  caf::binary_deserializer source(nullptr, buf);
  REQUIRE_FALSE(source(back));
  REQUIRE(back.types.size() == 1);
  CHECK(back.types[0].run_histogram.le_seconds == call.run_histogram.le_seconds);
  CHECK(back.types[0].run_histogram.cumulative == call.run_histogram.cumulative);
  CHECK(back.types[0].run_histogram.sum_seconds == 0.02);
  CHECK(back.types[0].run_histogram.count == 7);
  CHECK(back.types[0].queue_histogram.count == 7);
  REQUIRE(back.target("call", "m:f") != nullptr);
  CHECK(back.target("call", "m:f")->outcomes == t.outcomes);
  CHECK(back.target("call", "m:f")->slow == 2);
  CHECK(back.slow_calls == 2);
  CHECK(back.isolation == "process");
}
