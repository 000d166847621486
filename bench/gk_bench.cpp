// gk_bench: one figure per invocation, printed as one JSON line.
//
//   gk_bench FIGURE [--iterations N]
//
// Each figure runs in its own process (there is one interpreter per process).
// bench/run drives it and prints the table with ratios.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "gilkeeper/gilkeeper.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct Result {
  std::string unit = "us";
  std::vector<double> samples;  // one per iteration, in `unit`
  std::map<std::string, double> extra;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[k];
}

double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

#ifndef GK_BENCH_EXT_DIR
#define GK_BENCH_EXT_DIR ""
#endif

gk::Config bench_config(const std::string& extra = "") {
  return gk::parse_config(std::string("[python]\npath = [\"") + GK_BENCH_PYTHON_DIR + "\", \"" + GK_BENCH_EXT_DIR
                              + "\"]\n" + extra,
                          "bench.toml");
}

gk::Config process_config(const std::string& extra = "") {
  return bench_config("[runtime]\nisolation = \"process\"\n" + extra);
}

void must(const gk::Expected<gk::Value>& v) {
  if (!v) {
    std::cerr << v.error().to_string() << "\n";
    std::exit(1);
  }
}

// -- gilkeeper, process isolation -----------------------------------------------

Result process_roundtrip(int n, std::size_t payload) {
  gk::Runtime rt(process_config());
  gk::Value arg = payload ? gk::Value(gk::Bytes{std::string(payload, 'x')}) : gk::Value();
  for (int i = 0; i < 50; ++i)
    must(rt.call("gk_benchmod:identity", {arg}));
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    auto v = rt.call("gk_benchmod:identity", {arg});
    r.samples.push_back(us_since(t0));
    must(v);
  }
  return r;
}

// Calls/s of a CPU-bound function from 4 client threads for `seconds`.
Result process_cpu(int seconds, int workers) {
  gk::Runtime rt(process_config("workers = " + std::to_string(workers) + "\n"));
  for (int i = 0; i < 4; ++i)
    must(rt.call("gk_benchmod:cpu", {1000}));
  std::atomic<long> calls{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  auto t0 = clock_type::now();
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&] {
      while (!stop) {
        must(rt.call("gk_benchmod:cpu", {200000}));
        calls++;
      }
    });
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : clients)
    t.join();
  double s = us_since(t0) / 1e6;
  Result r;
  r.unit = "calls/s";
  r.samples.push_back(static_cast<double>(calls.load()) / s);
  return r;
}

// A C loop past its deadline: how late the caller is told, and how long
// after the kill (deadline + grace) the next call is served.
Result hard_deadline(int n, bool spare, bool next_served) {
  gk::Runtime rt(process_config(std::string("spare = ") + (spare ? "true" : "false")
                                + "\n[timeouts]\ngrace = \"20ms\"\n"));
  Result r;
  auto budget = std::chrono::milliseconds(20);
  for (int i = 0; i < n; ++i) {
    must(rt.call("gk_benchmod:noop"));  // a worker is ready
    if (spare)
      std::this_thread::sleep_for(std::chrono::milliseconds(60));  // and so is the spare
    auto deadline = gk::Deadline::after(budget);
    auto v = rt.call("gk_benchmod:spin_native", {10.0}, {}, gk::RequestOptions::with_deadline(deadline));
    if (v)
      std::exit(1);
    if (!next_served) {
      r.samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - deadline.when()).count());
      continue;
    }
    auto kill_at = deadline.when() + std::chrono::milliseconds(20);
    must(rt.call("gk_benchmod:noop"));
    r.samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - kill_at).count());
  }
  return r;
}

// -- floors -------------------------------------------------------------------

Result floor_condvar(int n) {
  std::mutex m;
  std::condition_variable cv;
  int turn = 0;  // 0: main's turn to send, 1: echo's turn, 2: stop
  std::thread echo([&] {
    std::unique_lock<std::mutex> lk(m);
    for (;;) {
      cv.wait(lk, [&] { return turn != 0; });
      if (turn == 2)
        return;
      turn = 0;
      cv.notify_all();
    }
  });
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    std::unique_lock<std::mutex> lk(m);
    turn = 1;
    cv.notify_all();
    cv.wait(lk, [&] { return turn == 0; });
    lk.unlock();
    r.samples.push_back(us_since(t0));
  }
  {
    std::lock_guard<std::mutex> lk(m);
    turn = 2;
  }
  cv.notify_all();
  echo.join();
  return r;
}

Result floor_pyobject_call(int n) {
  Py_InitializeEx(0);
  PyObject* fn = PyRun_String("lambda: None", Py_eval_input, PyModule_GetDict(PyImport_AddModule("__main__")),
                              PyModule_GetDict(PyImport_AddModule("__main__")));
  PyObject* args = PyTuple_New(0);
  Result r;
  r.unit = "ns";
  // Individual calls are too short to time one by one: time blocks of 1000.
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    for (int k = 0; k < 1000; ++k)
      Py_DECREF(PyObject_Call(fn, args, nullptr));
    r.samples.push_back(us_since(t0));  // us per 1000 calls == ns per call
  }
  Py_DECREF(args);
  Py_DECREF(fn);
  Py_FinalizeEx();
  return r;
}

// -- gilkeeper, thread isolation ------------------------------------------------

Result gk_thread_roundtrip(int n) {
  gk::Runtime rt(bench_config());
  for (int i = 0; i < 200; ++i)
    rt.call("gk_benchmod:noop");
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    auto v = rt.call("gk_benchmod:noop");
    r.samples.push_back(us_since(t0));
    if (!v) {
      std::cerr << v.error().to_string() << "\n";
      std::exit(1);
    }
  }
  return r;
}

Result gk_thread_batch(int n) {
  gk::Runtime rt(bench_config());
  std::vector<gk::CallRequest> calls(1000, gk::CallRequest{"gk_benchmod:noop"});
  Result r;
  r.unit = "ns";
  for (int i = 0; i < n; ++i) {
    auto copy = calls;
    auto t0 = clock_type::now();
    auto v = rt.batch(std::move(copy));
    r.samples.push_back(us_since(t0));  // us per 1000 == ns per call
    if (!v)
      std::exit(1);
  }
  r.extra["calls_per_s"] = 1e9 / percentile(r.samples, 0.5);
  return r;
}

// How late the caller is told after its deadline, and how long after the
// deadline the Python code was actually interrupted.
Result gk_deadline(int n, const std::string& target, bool interrupt_latency) {
  gk::Runtime rt(bench_config());
  Result r;
  auto budget = std::chrono::milliseconds(5);
  for (int i = 0; i < n; ++i) {
    auto deadline = gk::Deadline::after(budget);
    auto v = rt.call(target, {}, {}, gk::RequestOptions::with_deadline(deadline));
    double late_us = std::chrono::duration<double, std::micro>(clock_type::now() - deadline.when()).count();
    if (v || v.error().code != gk::ErrorCode::deadline_exceeded) {
      std::cerr << "expected deadline_exceeded\n";
      std::exit(1);
    }
    if (!interrupt_latency) {
      r.samples.push_back(late_us);
      continue;
    }
    auto caught = rt.call("gk_benchmod:last_caught");
    if (!caught || caught->is_null())
      std::exit(1);
    double caught_s = caught->as_double();
    double deadline_s = std::chrono::duration<double>(deadline.when().time_since_epoch()).count();
    r.samples.push_back((caught_s - deadline_s) * 1e6);
  }
  return r;
}

void print(const std::string& figure, const Result& r) {
  std::printf("{\"figure\": \"%s\", \"unit\": \"%s\", \"median\": %.3f, \"p99\": %.3f, \"iterations\": %zu",
              figure.c_str(), r.unit.c_str(), percentile(r.samples, 0.5), percentile(r.samples, 0.99),
              r.samples.size());
  for (auto& [k, v] : r.extra)
    std::printf(", \"%s\": %.3f", k.c_str(), v);
  std::printf(", \"samples\": [");
  for (std::size_t i = 0; i < r.samples.size(); ++i)
    std::printf("%s%.3f", i ? ", " : "", r.samples[i]);
  std::printf("]}\n");
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: gk_bench FIGURE [--iterations N]\n";
    return 2;
  }
  std::string figure = argv[1];
  int n = 10000;
  for (int i = 2; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--iterations") == 0)
      n = std::atoi(argv[i + 1]);

  std::map<std::string, std::function<Result()>> figures = {
      {"floor.condvar", [&] { return floor_condvar(n); }},
      {"floor.pyobject_call", [&] { return floor_pyobject_call(n); }},
      {"thread.roundtrip", [&] { return gk_thread_roundtrip(n); }},
      {"thread.batch1000", [&] { return gk_thread_batch(n); }},
      {"process.roundtrip", [&] { return process_roundtrip(n, 0); }},
      {"process.bytes1MiB", [&] { return process_roundtrip(n, 1 << 20); }},
      {"process.cpu.1worker", [&] { return process_cpu(n, 1); }},
      {"process.cpu.2workers", [&] { return process_cpu(n, 2); }},
      {"deadline.hard.told_late", [&] { return hard_deadline(n, true, false); }},
      {"deadline.hard.next_served.spare", [&] { return hard_deadline(n, true, true); }},
      {"deadline.hard.next_served.nospare", [&] { return hard_deadline(n, false, true); }},
      {"deadline.told_late.loop", [&] { return gk_deadline(n, "gk_benchmod:loop_until_interrupted", false); }},
      {"deadline.told_late.sleep", [&] { return gk_deadline(n, "gk_benchmod:sleep_until_interrupted", false); }},
      {"deadline.interrupt.loop", [&] { return gk_deadline(n, "gk_benchmod:loop_until_interrupted", true); }},
      {"deadline.interrupt.sleep", [&] { return gk_deadline(n, "gk_benchmod:sleep_until_interrupted", true); }},
  };
  if (figure == "--list") {
    for (auto& [name, fn] : figures)
      std::cout << name << "\n";
    return 0;
  }
  auto f = figures.find(figure);
  if (f == figures.end()) {
    std::cerr << "unknown figure " << figure << "\n";
    return 2;
  }
  print(figure, f->second());
  return 0;
}
