// Monitoring: slow calls are logged with their stack while they run, the
// interpreter hold timeout, and the traces (docs/observability.md).
#include "../support.hpp"
#include "../support_log.hpp"

#include <catch2/catch.hpp>

#include <thread>
#include <unistd.h>

using namespace gk;
using namespace std::chrono_literals;

using test::within;

namespace {

const std::string kTestMod = std::string(GK_TEST_PYTHON_DIR) + "/gk_testmod.py";

// Starts `target(args)` and waits for its slow_call event.
struct SlowCall {
  std::optional<test::EventLog::Entry> event;
  double after_ms = 0;  // from the call's start to the event
};

SlowCall watch_slow(test::EventLog& events, Runtime& rt, const std::string& target, List args) {
  auto t0 = std::chrono::steady_clock::now();
  auto future = rt.call_async(target, std::move(args), {}, within(3000ms));
  SlowCall out;
  out.event = events.wait_for("slow_call", 5000ms, [&](const LogEvent& e) { return e.text("target") == target; });
  if (out.event)
    out.after_ms = std::chrono::duration<double, std::milli>(out.event->at - t0).count();
  future.cancel();
  (void)future.get();
  return out;
}

// Calls a function that keeps 1 MiB per call until the leak check reports
// it (at most 5 s).
std::optional<test::EventLog::Entry> leak_until_reported(test::EventLog& events, Runtime& rt) {
  auto t0 = std::chrono::steady_clock::now();
  std::optional<test::EventLog::Entry> leak;
  while (!leak && test::ms_since(t0) < 5000) {
    REQUIRE(rt.call("gk_testmod:leak_mb").has_value());
    std::this_thread::sleep_for(20ms);
    leak = events.wait_for("leak_suspected", 0ms);
  }
  return leak;
}

} // namespace

TEST_CASE("a slow call's stack is logged while it runs, naming the line that sleeps", "[monitoring][slow]") {
  test::EventLog events;
  Runtime rt(test::test_config("[monitoring]\nslow_call = \"200ms\"\n"));
  REQUIRE(rt.call("gk_testmod:add", {1, 2})->as_int() == 3);  // warm
  auto slow = watch_slow(events, rt, "gk_testmod:sleep_for", {2.0});
  REQUIRE(slow.event);
  auto& e = slow.event->event;
  CAPTURE(log::to_text(e));
  CHECK(slow.after_ms >= 200);
  CHECK(slow.after_ms < 300 * kTimeFactor);
  CHECK(e.level == LogLevel::warn);
  CHECK(e.text("label") == "call gk_testmod:sleep_for");
  int line = test::line_of(kTestMod, "    time.sleep(seconds)");
  REQUIRE(line > 0);
  CHECK(e.text("stack").find("gk_testmod.py\", line " + std::to_string(line) + " in sleep_for") != std::string::npos);
  CHECK(e.text("where").find("in sleep_for") != std::string::npos);
  // time.sleep releases the GIL: a blocking call in native code.
  CHECK(e.text("in_native") == "true");
  CHECK(e.text("gil_held") == "false");
  CHECK(e.message.find("native code") != std::string::npos);
  CHECK(e.text("threshold_ms") == "200");
}

TEST_CASE("a slow Python loop is reported as Python code, a C loop as native code holding the GIL",
          "[monitoring][slow]") {
  test::EventLog events;
  Runtime rt(test::test_config("[monitoring]\nslow_call = \"100ms\"\n"));
  auto python = watch_slow(events, rt, "gk_testmod:busy_loop", {});
  REQUIRE(python.event);
  CAPTURE(log::to_text(python.event->event));
  CHECK(python.event->event.text("in_native") == "false");
  CHECK(python.event->event.text("where").find("in busy_loop") != std::string::npos);

  auto native = watch_slow(events, rt, "gk_testmod:spin_native", {1.0});
  REQUIRE(native.event);
  CAPTURE(log::to_text(native.event->event));
  CHECK(native.event->event.text("in_native") == "true");
  CHECK(native.event->event.text("gil_held") == "true");
  // The last Python frame is the one that called into C.
  CHECK(native.event->event.text("where").find("in spin_native") != std::string::npos);
  CHECK(native.event->event.message.find("native code holding the GIL") != std::string::npos);
}

TEST_CASE("a slow pbkdf2 (OpenSSL, the GIL released) is logged with the line that called it", "[monitoring][slow]") {
  test::EventLog events;
  Runtime rt(test::test_config("[monitoring]\nslow_call = \"150ms\"\n"));
  REQUIRE(rt.exec("import hashlib\n"
                  "def kdf(n):\n"
                  "    return hashlib.pbkdf2_hmac('sha256', b'pw', b'salt', n).hex()\n")
              .has_value());
  auto t0 = std::chrono::steady_clock::now();
  auto future = rt.eval_async("kdf(3_000_000)", RequestOptions::with_deadline(Deadline::after(10s)));
  auto slow = events.wait_for("slow_call", 5000ms);
  REQUIRE(slow);
  CAPTURE(log::to_text(slow->event));
  CHECK(std::chrono::duration<double, std::milli>(slow->at - t0).count() < 400 * kTimeFactor);
  CHECK(slow->event.text("in_native") == "true");
  CHECK(slow->event.text("where").find("line 3 in kdf") != std::string::npos);
  future.cancel();
  (void)future.get();
}

TEST_CASE("a fast call is never reported, and slow_call = \"none\" switches the alert off", "[monitoring][slow]") {
  test::EventLog events;
  {
    Runtime rt(test::test_config("[monitoring]\nslow_call = \"500ms\"\n"));
    for (int i = 0; i < 100; ++i)
      REQUIRE(rt.call("gk_testmod:add", {i, 1})->as_int() == i + 1);
  }
  {
    Runtime rt(test::test_config("[monitoring]\nslow_call = \"none\"\n"));
    REQUIRE(rt.call("gk_testmod:sleep_for", {0.3})->as_double() == 0.3);
  }
  log::flush();
  CHECK(events.named("slow_call").empty());
}

TEST_CASE("slow_call thresholds by message type and by target", "[monitoring][slow]") {
  test::EventLog events;
  Runtime rt(test::test_config("[monitoring.slow_call]\ndefault = \"5s\"\neval = \"100ms\"\n"
                               "[monitoring.slow_call.targets]\n\"gk_testmod:sleep_for\" = \"100ms\"\n"));
  REQUIRE(rt.call("gk_testmod:sleep_for", {0.3}).has_value());
  REQUIRE(rt.eval("__import__('time').sleep(0.3)").has_value());
  REQUIRE(rt.call("gk_testmod:sleep_then_record", {0.3, "x"}).has_value());
  log::flush();
  auto slow = events.named("slow_call");
  std::vector<std::string> labels;
  for (auto& s : slow)
    labels.push_back(s.event.text("label"));
  CHECK(labels == std::vector<std::string>{"call gk_testmod:sleep_for", "eval"});
}

TEST_CASE("debug.gil.timeout alerts when one request holds the interpreter too long", "[monitoring][gil]") {
  test::EventLog events;
  Runtime rt(test::test_config("[monitoring]\nslow_call = \"none\"\n[debug.gil]\ntimeout = \"100ms\"\n"));
  REQUIRE(rt.call("gk_testmod:spin_native", {0.4}).has_value());
  log::flush();
  auto alerts = events.named("gil_timeout");
  REQUIRE(alerts.size() == 1);
  CAPTURE(log::to_text(alerts[0].event));
  CHECK(alerts[0].event.text("label") == "call gk_testmod:spin_native");
  CHECK(alerts[0].event.text("gil_held") == "true");
  CHECK(alerts[0].event.text("threshold_ms") == "100");
}

TEST_CASE("debug.gil.trace and debug.trace_calls write one event per request taking and leaving", "[monitoring][trace]") {
  test::EventLog events(LogLevel::debug);
  Runtime rt(test::test_config("[debug]\ntrace_calls = true\n[debug.gil]\ntrace = true\n"));
  REQUIRE(rt.call("gk_testmod:add", {1, 2})->as_int() == 3);
  REQUIRE_FALSE(rt.call("gk_testmod:raise_value_error", {"no"}).has_value());
  log::flush();
  CHECK(events.named("gil_take").size() == 2);
  auto leaves = events.named("gil_leave");
  REQUIRE(leaves.size() == 2);
  CHECK(leaves[0].event.text("label") == "call gk_testmod:add");
  auto calls = events.named("call_trace");
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].event.text("outcome") == "ok");
  CHECK(calls[1].event.text("outcome") == "python_exception");
  CHECK(calls[1].event.text("target") == "gk_testmod:raise_value_error");
}

TEST_CASE("a slow call in a worker process is logged with its stack and the worker's pid", "[monitoring][slow][process]") {
  test::EventLog events;
  Runtime rt(test::process_config("[monitoring]\nslow_call = \"200ms\"\n"));
  auto slow = watch_slow(events, rt, "gk_testmod:sleep_for", {2.0});
  REQUIRE(slow.event);
  auto& e = slow.event->event;
  CAPTURE(log::to_text(e));
  CHECK(slow.after_ms < 300 * kTimeFactor);
  CHECK(e.text("where").find("in sleep_for") != std::string::npos);
  CHECK(e.text("in_native") == "true");
  CHECK(e.text("worker_pid") != "");
  CHECK(e.text("worker_pid") != std::to_string(::getpid()));
  // A C loop holding the GIL in a worker.
  auto native = watch_slow(events, rt, "gk_testmod:spin_native", {1.0});
  REQUIRE(native.event);
  CHECK(native.event->event.text("gil_held") == "true");
  CHECK(native.event->event.text("in_native") == "true");
}

TEST_CASE("detect_leaks names the allocating line of a function that leaks 1 MiB per call", "[monitoring][memory]") {
  test::EventLog events;
  Runtime rt(test::test_config("[debug.memory]\ndetect_leaks = true\ncheck_interval = \"200ms\"\n"));
  int line = test::line_of(kTestMod, "_hoard.append(bytearray(1 << 20))");
  REQUIRE(line > 0);
  auto t0 = std::chrono::steady_clock::now();
  auto leak = leak_until_reported(events, rt);
  REQUIRE(leak);
  CAPTURE(log::to_text(leak->event));
  // Within three check intervals of the first call (plus the checks' own
  // time: a snapshot walks every allocation).
  CHECK(std::chrono::duration<double, std::milli>(leak->at - t0).count() < (3 * 200 + 300) * kTimeFactor);
  CHECK(leak->event.text("top_site") == kTestMod + ":" + std::to_string(line));
  CHECK(leak->event.text("memory_grows") == "true");
}

TEST_CASE("detect_leaks in a worker process reports through the host's log", "[monitoring][memory][process]") {
  test::EventLog events;
  Runtime rt(test::process_config("[debug.memory]\ndetect_leaks = true\ncheck_interval = \"200ms\"\n"));
  auto leak = leak_until_reported(events, rt);
  REQUIRE(leak);
  CHECK(leak->event.text("top_site").find("gk_testmod.py:") != std::string::npos);
  CHECK(leak->event.text("worker_pid") != "");
}

TEST_CASE("a steady workload is not reported as a leak", "[monitoring][memory]") {
  test::EventLog events;
  Runtime rt(test::test_config("[debug.memory]\ndetect_leaks = true\ncheck_interval = \"100ms\"\n"));
  auto t0 = std::chrono::steady_clock::now();
  while (test::ms_since(t0) < 800) {
    auto r = rt.call("gk_testmod:alloc_temporarily", {2});
    CAPTURE(r ? std::string() : r.error().to_string());
    REQUIRE(r.has_value());
  }
  log::flush();
  CHECK(events.named("leak_suspected").empty());
}

TEST_CASE("memory_threshold alerts once per crossing, with the top allocation sites when tracked", "[monitoring][memory]") {
  test::EventLog events;
  // This process's RSS now, with the interpreter started.
  std::uint64_t rss_now = 0;
  {
    Runtime probe(test::test_config());
    rss_now = probe.stats().rss_bytes;
  }
  Runtime rt(test::test_config("[monitoring]\nmemory_threshold = \"" + std::to_string((rss_now >> 20) + 150)
                               + "MiB\"\ninterval = \"50ms\"\n[debug.memory]\ntrack = true\n"));
  REQUIRE(rt.call("gk_testmod:leak_mb").has_value());
  log::flush();
  CHECK(events.named("memory_threshold").empty());
  // Hold 300 MiB: above the threshold.
  for (int i = 0; i < 300; ++i)
    REQUIRE(rt.call("gk_testmod:leak_mb").has_value());
  auto alert = events.wait_for("memory_threshold", 3000ms);
  REQUIRE(alert);
  CAPTURE(log::to_text(alert->event));
  CHECK(alert->event.level == LogLevel::warn);
  auto sites = events.wait_for("memory_sites", 3000ms);
  REQUIRE(sites);
  CHECK(sites->event.text("top_site").find("gk_testmod.py:") != std::string::npos);
  std::this_thread::sleep_for(300ms);
  CHECK(events.named("memory_threshold").size() == 1);
}

TEST_CASE("Runtime::dump shows the running call's stack and the queue without stopping anything", "[monitoring][dump]") {
  Runtime rt(test::test_config());
  auto running = rt.call_async("gk_testmod:sleep_for", {0.8}, {}, within(5000ms));
  auto queued = rt.call_async("gk_testmod:add", {1, 2}, {}, within(5000ms));
  std::this_thread::sleep_for(200ms);
  auto dump = rt.dump();
  CAPTURE(dump);
  CHECK(dump.find("running: call gk_testmod:sleep_for for ") != std::string::npos);
  CHECK(dump.find("in sleep_for") != std::string::npos);
  CHECK(dump.find("the GIL released") != std::string::npos);
  CHECK(dump.find("queued: 1, oldest first:\n    call gk_testmod:add: queued ") != std::string::npos);
  // Nothing was stopped.
  CHECK(running.get()->as_double() == 0.8);
  CHECK(queued.get()->as_int() == 3);
  CHECK(rt.dump().find("running: nothing") != std::string::npos);
}

TEST_CASE("Runtime::dump in process isolation shows each worker process and the stack of its call", "[monitoring][dump][process]") {
  Runtime rt(test::process_config("workers = 2\n"));
  // Both calls run while the dump is taken (the workers start warm).
  REQUIRE(rt.call("gk_testmod:add", {1, 1}).has_value());
  // Long enough to outlast a slow second worker start (sanitizer builds).
  const double seconds = 2.0 * kTimeFactor;
  auto a = rt.call_async("gk_testmod:sleep_for", {seconds}, {}, within(10000ms * kTimeFactor));
  auto b = rt.call_async("gk_testmod:spin_native", {seconds}, {}, within(10000ms * kTimeFactor));
  // Until both run (the second worker may still be starting): each dump
  // shows the queue meanwhile.
  std::string dump;
  auto t0 = std::chrono::steady_clock::now();
  do {
    std::this_thread::sleep_for(100ms);
    dump = rt.dump();
  } while (test::ms_since(t0) < 1500 * kTimeFactor
           // Each call in its function (a fresh worker first imports the
           // module: its stack is then in importlib).
           && (dump.find("in spin_native") == std::string::npos || dump.find("in sleep_for") == std::string::npos));
  CAPTURE(dump);
  CHECK(dump.find("supervisor (process isolation, 2 worker(s)") != std::string::npos);
  CHECK(dump.find(": busy, ") != std::string::npos);
  CHECK(dump.find("running: call gk_testmod:sleep_for") != std::string::npos);
  CHECK(dump.find("in sleep_for") != std::string::npos);
  CHECK(dump.find("in spin_native") != std::string::npos);
  CHECK(dump.find("native code holding the GIL") != std::string::npos);
  CHECK(a.get()->as_double() == seconds);
  CHECK(b.get().has_value());
}

TEST_CASE("slow calls are counted per target in stats and metrics, in both isolations", "[monitoring][slow][stats]") {
  for (auto isolation : {"thread", "process"}) {
    CAPTURE(isolation);
    test::EventLog events;
    Runtime rt(test::test_config(std::string("[runtime]\nisolation = \"") + isolation
                                 + "\"\n[monitoring]\nslow_call = \"100ms\"\n"));
    REQUIRE(rt.call("gk_testmod:sleep_for", {0.3}).has_value());
    REQUIRE(rt.call("gk_testmod:sleep_for", {0.3}).has_value());
    REQUIRE(rt.call("gk_testmod:add", {1, 2}).has_value());
    log::flush();
    auto s = rt.stats();
    std::uint64_t slow = 0;
    for (auto& t : s.targets)
      if (t.target == "gk_testmod:sleep_for")
        slow += t.slow;
    CHECK(slow == 2);
    CHECK(s.slow_calls == 2);
    CHECK(s.gil_enabled);
    CHECK_FALSE(s.free_threaded);
    CHECK(rt.metrics().find("gilkeeper_slow_calls_total{target=\"gk_testmod:sleep_for\"} 2") != std::string::npos);
    CHECK(rt.metrics().find("gilkeeper_free_threaded_build 0") != std::string::npos);
  }
}
