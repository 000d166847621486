// Pipelines: backpressure, order, retries, C++ and Python stages, stop,
// completion; worker actors.
#include "../support.hpp"

#include "gilkeeper/runtime/pipeline.hpp"
#include "gilkeeper/runtime/pipeline_actor.hpp"
#include "gilkeeper/runtime/workers.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <mutex>
#include <random>
#include <thread>

using namespace gk;
using namespace std::chrono_literals;

namespace {

struct Collected {
  std::mutex m;
  std::vector<Output> outputs;
  std::vector<Failure> failures;
  void attach(Pipeline& p) {
    p.on_output([this](Output&& o) {
      std::lock_guard<std::mutex> g(m);
      outputs.push_back(std::move(o));
    });
    p.on_failure([this](Failure&& f) {
      std::lock_guard<std::mutex> g(m);
      failures.push_back(std::move(f));
    });
  }
};

StageFunction sleepy_cpp(std::chrono::milliseconds max_delay) {
  return [max_delay](const Value& v) -> Expected<Value> {
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<int> d(0, static_cast<int>(max_delay.count()));
    std::this_thread::sleep_for(std::chrono::milliseconds(d(rng)));
    return v;
  };
}

} // namespace

TEST_CASE("a slow stage slows the source: records in flight stay within the bound", "[pipeline][backpressure]") {
  Runtime rt(test::test_config());
  PipelineOptions opts;
  opts.max_in_flight = 8;
  Pipeline p(rt, {Stage::python("slow", "gk_testmod:sleep_for").with_parallelism(2)}, opts);
  Collected c;
  c.attach(p);
  // An independent measurement of what is in flight, sampled while pushing.
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> max_seen{0};
  std::thread sampler([&] {
    while (!done) {
      auto pr = p.progress();
      std::uint64_t cur = max_seen.load();
      while (pr.in_flight > cur && !max_seen.compare_exchange_weak(cur, pr.in_flight)) {
      }
      std::this_thread::sleep_for(1ms);
    }
  });
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 40; ++i)
    REQUIRE(p.push(static_cast<std::uint64_t>(i), Value(0.01)));
  double push_ms = test::ms_since(t0);
  p.close();
  auto report = p.wait();
  done = true;
  sampler.join();
  CHECK(report.ok == 40);
  CHECK(report.max_in_flight_seen <= 8);
  CHECK(max_seen.load() <= 8);
  CHECK(max_seen.load() >= 4);
  // 40 records at ~10 ms each, one at a time in the interpreter: the source
  // had to wait for most of them.
  CHECK(push_ms > 250);
}

TEST_CASE("ordered output keeps input order with parallel stages and random delays, unordered is a permutation",
          "[pipeline][order]") {
  Runtime rt(test::test_config());
  for (bool ordered : {true, false}) {
    CAPTURE(ordered);
    PipelineOptions opts;
    opts.ordered = ordered;
    opts.max_in_flight = 32;
    Pipeline p(rt,
               {Stage::cpp("shuffle", sleepy_cpp(5ms)).with_parallelism(6),
                Stage::python("double", "gk_testmod:double").with_parallelism(3)},
               opts);
    Collected c;
    c.attach(p);
    for (int i = 0; i < 120; ++i)
      REQUIRE(p.push(static_cast<std::uint64_t>(i), Value(i)));
    p.close();
    auto report = p.wait();
    REQUIRE(report.ok == 120);
    REQUIRE(c.outputs.size() == 120);
    std::vector<std::uint64_t> ids;
    for (auto& o : c.outputs) {
      CHECK(o.value.as_int() == static_cast<std::int64_t>(o.id) * 2);
      ids.push_back(o.id);
    }
    std::vector<std::uint64_t> sorted = ids;
    std::sort(sorted.begin(), sorted.end());
    if (ordered)
      CHECK(ids == sorted);
    for (std::uint64_t i = 0; i < 120; ++i)
      CHECK(sorted[i] == i);
  }
}

TEST_CASE("a record that crashes its worker once is retried and appears once with attempts 2", "[pipeline][retry]") {
  Runtime rt(test::test_config("[runtime]\nisolation = \"process\"\n"));
  auto dir = test::temp_dir();
  RetryPolicy retry;
  retry.attempts = 3;
  retry.on = {ErrorCode::worker_crashed};
  Pipeline p(rt, {Stage::cpp("route",
                             [](const Value& v) -> Expected<Value> {
                               // Record 3 always crashes; the others crash once.
                               auto& d = v.as_dict();
                               return Value::dict({{"x", d[0].second}, {"dir", d[1].second},
                                                   {"always", d[0].second.as_int() == 3}});
                             }),
                  Stage::cpp("pick", [](const Value& v) -> Expected<Value> { return v; }),
                  // One record per request: each crash is that record's own.
                  Stage::python("crashy", "gk_testmod:crash_once_rec").with_retry(retry).with_batch(1)});
  Collected c;
  c.attach(p);
  for (int i = 0; i < 3; ++i)
    REQUIRE(p.push(static_cast<std::uint64_t>(i), Value::dict({{"x", i}, {"dir", dir}})));
  p.close();
  auto report = p.wait();
  REQUIRE(c.outputs.size() == 3);
  for (auto& o : c.outputs) {
    CHECK(o.attempts == 4);  // two C++ stages, then two tries of the Python one
  }
  CHECK(report.stages[2].retries == 3);
  CHECK(c.failures.empty());
}

TEST_CASE("a record that always fails appears once in the failures with its attempts", "[pipeline][retry]") {
  Runtime rt(test::test_config("[runtime]\nisolation = \"process\"\n"));
  RetryPolicy retry;
  retry.attempts = 3;
  retry.on = {ErrorCode::worker_crashed};
  Pipeline p(rt, {Stage::python("crashy", "gk_testmod:crash_always").with_retry(retry)});
  Collected c;
  c.attach(p);
  REQUIRE(p.push(7, Value::dict({{"x", 1}})));
  p.close();
  auto report = p.wait();
  CHECK(c.outputs.empty());
  REQUIRE(c.failures.size() == 1);
  CHECK(c.failures[0].id == 7);
  CHECK(c.failures[0].attempts == 3);
  CHECK(c.failures[0].stage == "crashy");
  CHECK(c.failures[0].error.code == ErrorCode::worker_crashed);
  CHECK(c.failures[0].input == Value::dict({{"x", 1}}));
  CHECK(report.by_code["worker_crashed"] == 1);
}

TEST_CASE("a C++ stage and a Python stage in one pipeline, failures go to the sink and the pipeline goes on",
          "[pipeline]") {
  Runtime rt(test::test_config());
  Pipeline p(rt, {Stage::cpp("plus_one", [](const Value& v) -> Expected<Value> { return Value(v.as_int() + 1); }),
                  Stage::python("check", "gk_testmod:identity"),
                  Stage::cpp("reject_13",
                             [](const Value& v) -> Expected<Value> {
                               if (v.as_int() == 13)
                                 return Error(ErrorCode::bad_input, "13 is unlucky");
                               return v;
                             })});
  Collected c;
  c.attach(p);
  for (int i = 0; i < 20; ++i)
    REQUIRE(p.push(static_cast<std::uint64_t>(i), Value(i)));
  p.close();
  auto report = p.wait();
  CHECK(report.ok == 19);
  CHECK(report.failed == 1);
  REQUIRE(c.failures.size() == 1);
  CHECK(c.failures[0].id == 12);
  CHECK(c.failures[0].stage == "reject_13");
  CHECK(c.failures[0].input == Value(12));
  CHECK(c.outputs[12].value.as_int() == 14);
}

TEST_CASE("a record past its stage timeout fails with deadline_exceeded and its neighbours succeed",
          "[pipeline][deadline]") {
  Runtime rt(test::test_config());
  Pipeline p(rt, {Stage::python("nap", "gk_testmod:sleep_for").with_timeout(Timeout::after(150ms))});
  Collected c;
  c.attach(p);
  REQUIRE(p.push(0, Value(0.01)));
  REQUIRE(p.push(1, Value(30)));
  REQUIRE(p.push(2, Value(0.01)));
  p.close();
  auto t0 = std::chrono::steady_clock::now();
  auto report = p.wait();
  CHECK(test::ms_since(t0) < 3000);
  CHECK(report.ok == 2);
  REQUIRE(c.failures.size() == 1);
  CHECK(c.failures[0].id == 1);
  CHECK(c.failures[0].error.code == ErrorCode::deadline_exceeded);
  CHECK(report.deadline_misses["soft"] == 1);
}

TEST_CASE("batched Python stages give the same results", "[pipeline][batch]") {
  Runtime rt(test::test_config());
  Pipeline p(rt, {Stage::python("double", "gk_testmod:double").with_batch(16)});
  Collected c;
  c.attach(p);
  for (int i = 0; i < 100; ++i)
    REQUIRE(p.push(static_cast<std::uint64_t>(i), Value(i)));
  p.close();
  auto report = p.wait();
  REQUIRE(report.ok == 100);
  for (int i = 0; i < 100; ++i)
    CHECK(c.outputs[static_cast<std::size_t>(i)].value.as_int() == 2 * i);
  // Far fewer requests than records went to the runtime.
  CHECK(rt.stats().type("batch")->calls < 20);
}

TEST_CASE("stop lets records in flight finish or fail within the grace, and every record comes out once",
          "[pipeline][stop]") {
  Runtime rt(test::test_config());
  PipelineOptions opts;
  opts.max_in_flight = 4;
  opts.stop_grace = 200ms;
  Pipeline p(rt, {Stage::python("nap", "gk_testmod:sleep_for")}, opts);
  Collected c;
  c.attach(p);
  std::atomic<int> accepted{0};
  std::thread source([&] {
    for (int i = 0; i < 1000; ++i) {
      if (!p.push(static_cast<std::uint64_t>(i), Value(0.05)))
        break;
      accepted++;
    }
  });
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  p.stop();
  source.join();
  auto report = p.wait();
  CHECK(test::ms_since(t0) < 1500);
  CHECK(report.stopped);
  CHECK(static_cast<int>(report.pushed) == accepted.load());
  CHECK(c.outputs.size() + c.failures.size() == static_cast<std::size_t>(accepted.load()));
  for (auto& f : c.failures) {
    CHECK((f.error.code == ErrorCode::runtime_stopped || f.error.code == ErrorCode::deadline_exceeded));
    CHECK(f.stage == "nap");  // named, whether it ran or waited for the stage
  }
  CHECK_FALSE(p.push(99999, Value(0)));
}

TEST_CASE("an actor is told when a pipeline completes", "[pipeline][actor]") {
  Runtime rt(test::test_config());
  caf::scoped_actor self{rt.system()};
  Pipeline p(rt, {Stage::python("double", "gk_testmod:double")});
  p.notify(caf::actor_cast<caf::actor>(self));
  for (int i = 0; i < 5; ++i)
    REQUIRE(p.push(static_cast<std::uint64_t>(i), Value(i)));
  p.close();
  bool told = false;
  self->receive([&](pipeline_done_atom, const PipelineReport& r) {
    told = true;
    CHECK(r.ok == 5);
  }, caf::after(std::chrono::seconds(10)) >> [] {});
  CHECK(told);
}

TEST_CASE("a pool of 8 worker actors calling Python concurrently returns every result", "[workers]") {
  Runtime rt(test::test_config());
  auto pool = spawn_worker_pool(rt, 8, [](const Value& v) {
    // C++ first, then Python, then C++ again.
    auto n = v.as_int() + 1;
    return WorkerReply::python(CallRequest{"gk_testmod:double", {n}})
        .then([](Expected<Value> r) -> WorkerReply {
          if (!r)
            return r.error();
          return Value(r->as_int() + 1000);
        });
  });
  std::vector<std::thread> clients;
  std::vector<Expected<Value>> results(200);
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&, t] {
      for (int i = t; i < 200; i += 8)
        results[static_cast<std::size_t>(i)] = ask(rt, pool, Value(i));
    });
  for (auto& t : clients)
    t.join();
  for (int i = 0; i < 200; ++i) {
    REQUIRE(results[static_cast<std::size_t>(i)].has_value());
    CHECK(results[static_cast<std::size_t>(i)]->as_int() == (i + 1) * 2 + 1000);
  }
  // A worker's error comes back as a gilkeeper error.
  auto failing = spawn_worker(rt, [](const Value&) {
    return WorkerReply::python(CallRequest{"gk_testmod:raise_value_error", {"from a worker"}});
  });
  auto err = ask(rt, failing, Value());
  REQUIRE_FALSE(err.has_value());
  CHECK(err.error().type == "ValueError");
}

TEST_CASE("shutdown does not wait for the host to drop its worker handles", "[workers][shutdown]") {
  auto rt = std::make_unique<Runtime>(test::test_config());
  auto one = spawn_worker(*rt, [](const Value& v) { return WorkerReply(v); });
  auto pool = spawn_worker_pool(*rt, 4, [](const Value& v) { return WorkerReply(v); });
  REQUIRE(ask(*rt, one, Value(1)).has_value());
  REQUIRE(ask(*rt, pool, Value(2)).has_value());
  auto t0 = std::chrono::steady_clock::now();
  rt->shutdown();
  CHECK(test::ms_since(t0) < 3000);
}
