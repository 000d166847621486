#pragma once

// The benchmark harness shared by gk_bench's figures: results, percentiles,
// and drivers for one or many calling threads. Knows neither gilkeeper nor
// Python.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gk_bench {

using clock_type = std::chrono::steady_clock;

struct Result {
  std::string unit = "us";
  std::vector<double> samples;  // one per iteration, in `unit`
  std::map<std::string, double> extra;
};

// At most this many samples are printed (evenly spaced quantiles of all of
// them); median and p99 are computed over all samples.
constexpr std::size_t kMaxPrintedSamples = 20000;

inline double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[k];
}

inline double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

// Per-client counts and latencies of a fixed-duration run with many clients.
struct ClientRun {
  std::vector<std::vector<double>> latencies;  // per client, us
  double seconds = 0;

  Result result() const {
    Result r;
    long total = 0, most = 0, least = -1;
    for (auto& l : latencies) {
      long c = static_cast<long>(l.size());
      total += c;
      most = std::max(most, c);
      least = least < 0 ? c : std::min(least, c);
      r.samples.insert(r.samples.end(), l.begin(), l.end());
    }
    r.extra["calls_per_s"] = static_cast<double>(total) / seconds;
    r.extra["clients"] = static_cast<double>(latencies.size());
    r.extra["min_client_calls"] = static_cast<double>(least);
    r.extra["max_client_calls"] = static_cast<double>(most);
    // A client that never got a call through counts as one call (and shows
    // as min_client_calls = 0).
    r.extra["fairness"] = static_cast<double>(most) / static_cast<double>(std::max(1L, least));
    return r;
  }
};

// Runs `clients` threads, each calling `call()` in a loop for `seconds`, and
// records every round trip. All threads start together.
inline ClientRun run_clients(int clients, double seconds, const std::function<void()>& call,
                      const std::function<void()>& at_exit = {}) {
  ClientRun run;
  run.latencies.resize(static_cast<std::size_t>(clients));
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      auto& lat = run.latencies[static_cast<std::size_t>(c)];
      lat.reserve(1 << 16);
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return go; });
      }
      while (!stop.load(std::memory_order_relaxed)) {
        auto t0 = clock_type::now();
        call();
        lat.push_back(us_since(t0));
      }
      if (at_exit)
        at_exit();
    });
  // Let every thread reach the gate.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto t0 = clock_type::now();
  {
    std::lock_guard<std::mutex> lk(m);
    go = true;
  }
  cv.notify_all();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads)
    t.join();
  run.seconds = us_since(t0) / 1e6;
  return run;
}

// The shape every peer figure shares. One thread: 200 warm-up calls, then
// `n` timed round trips. Several: every thread calls for `seconds` (see
// run_clients). `at_exit` runs on each calling thread when it is done.
inline Result drive(int threads, int n, double seconds, const std::function<void()>& call,
                    const std::function<void()>& at_exit = {}) {
  if (threads > 1)
    return run_clients(threads, seconds, call, at_exit).result();
  Result r;
  std::thread t([&] {
    for (int i = 0; i < 200; ++i)
      call();
    for (int i = 0; i < n; ++i) {
      auto t0 = clock_type::now();
      call();
      r.samples.push_back(us_since(t0));
    }
    if (at_exit)
      at_exit();
  });
  t.join();
  return r;
}

} // namespace gk_bench
