// gk_bench: one figure per invocation, printed as one JSON line.
//
//   gk_bench FIGURE [--iterations N] [--seconds S]
//   gk_bench --list
//
// Each figure runs in its own process (there is one interpreter per process).
// bench/run drives it and prints the table with ratios. Latency figures
// report one sample per round trip (in `unit`); throughput figures also
// report `calls_per_s`, and figures with several clients `fairness` (the
// busiest client's calls divided by the least busy one's).
//
// Figure families:
//   floor.*     what a round trip cannot beat on this machine
//   thread.*    gilkeeper, thread isolation
//   process.*   gilkeeper, process isolation
//   host.*      Python calling the host (Runtime::expose)
//   peer.*      the usual ways to call Python from C++ host threads
//   deadline.*  how late deadlines are reported, and recovery after a kill
//
// Knobs for investigations (not used by bench/run): GK_BENCH_TRACE=1 makes
// the deadline.hard.* figures print each iteration's deadline (steady clock,
// to line up with `perf record -k CLOCK_MONOTONIC`), GK_BENCH_SPARE_WAIT_MS
// sets how long they let the spare start (60 ms by default).
#include "gilkeeper/actors/messages.hpp"
#include "gilkeeper/actors/py_runtime.hpp"
#include "gilkeeper/gilkeeper.hpp"

#include "harness.hpp"
#include "native_peers.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <iostream>
#include <deque>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <spawn.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace {

using namespace gk_bench;

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

bool read_exactly(int fd, char* buf, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, buf + got, n - got);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    got += static_cast<std::size_t>(k);
  }
  return true;
}

bool write_all(int fd, const char* buf, std::size_t n) {
  std::size_t put = 0;
  while (put < n) {
    ssize_t k = write(fd, buf + put, n - put);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    put += static_cast<std::size_t>(k);
  }
  return true;
}

// The child side of floor.socketpair: echoes 8-byte messages until EOF.
int echo_main(int fd) {
  char buf[8];
  while (read_exactly(fd, buf, sizeof buf))
    if (!write_all(fd, buf, sizeof buf))
      return 1;
  return 0;
}

// 8 bytes there and back between this process and a child (this very
// program, posix_spawn'ed in its echo mode) over an AF_UNIX socketpair.
Result floor_socketpair(int n) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    std::perror("socketpair");
    std::exit(1);
  }
  constexpr int kChildFd = 100;  // dup2 clears close-on-exec on it
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], kChildFd);
  std::string self = "/proc/self/exe";
  std::string fd_arg = std::to_string(kChildFd);
  char* argv[] = {self.data(), const_cast<char*>("--echo-fd"), fd_arg.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, self.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(sv[1]);
  if (rc != 0) {
    std::cerr << "posix_spawn: " << std::strerror(rc) << "\n";
    std::exit(1);
  }
  char msg[8] = {'g', 'i', 'l', 'k', 'e', 'e', 'p', 'r'};
  char back[8];
  auto once = [&] {
    if (!write_all(sv[0], msg, sizeof msg) || !read_exactly(sv[0], back, sizeof back)) {
      std::cerr << "floor.socketpair: the echo child went away\n";
      std::exit(1);
    }
  };
  for (int i = 0; i < 200; ++i)
    once();
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    once();
    r.samples.push_back(us_since(t0));
  }
  close(sv[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return r;
}

// -- gilkeeper, thread isolation ------------------------------------------------

// `extra`: config appended (the monitoring figures switch the default
// slow-call alert off, or turn the traces on, written to a file).
Result gk_thread_roundtrip(int n, const std::string& extra = "") {
  gk::Runtime rt(bench_config(extra));
  for (int i = 0; i < 200; ++i)
    must(rt.call("gk_benchmod:noop"));
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    auto v = rt.call("gk_benchmod:noop");
    r.samples.push_back(us_since(t0));
    must(v);
  }
  return r;
}

// The round trip from an event-based CAF actor (request(...).then) with
// `inflight` requests outstanding at all times: each reply sends the next
// request. Samples are send-to-reply times; calls_per_s is the throughput.
Result gk_actor_roundtrip(int n, int inflight) {
  gk::Runtime rt(bench_config());
  for (int i = 0; i < 200; ++i)
    must(rt.call("gk_benchmod:noop"));
  auto h = gk::runtime_actor(rt);

  struct State {
    int warmup = 0;
    int total = 0;
    int sent = 0;
    int done = 0;
    std::vector<double> samples;
    clock_type::time_point measured_from;
    double measured_seconds = 0;
    std::string error;
    std::promise<void> finished;
    bool over = false;
  };
  auto st = std::make_shared<State>();
  st->warmup = std::max(200, 4 * inflight);
  st->total = st->warmup + n;
  st->samples.reserve(static_cast<std::size_t>(n));

  rt.system().spawn([h, st, inflight](caf::event_based_actor* self) -> caf::behavior {
    auto send_one = std::make_shared<std::function<void()>>();
    auto finish = [st, self, send_one](std::string error) {
      if (st->over)
        return;
      st->over = true;
      st->error = std::move(error);
      st->measured_seconds = us_since(st->measured_from) / 1e6;
      *send_one = nullptr;  // breaks the cycle
      st->finished.set_value();
      self->quit();
    };
    *send_one = [st, self, h, send_one, finish] {
      auto t0 = clock_type::now();
      st->sent++;
      self->request(h, caf::infinite, gk::CallRequest{"gk_benchmod:noop"})
          .then(
              [st, t0, send_one, finish](const gk::Value&) {
                if (st->over)
                  return;
                st->done++;
                if (st->done == st->warmup)
                  st->measured_from = clock_type::now();
                else if (st->done > st->warmup)
                  st->samples.push_back(us_since(t0));
                if (st->sent < st->total)
                  (*send_one)();
                else if (st->done == st->total)
                  finish("");
              },
              [finish](const caf::error& e) { finish(gk::from_caf_error(e).to_string()); });
    };
    for (int i = 0; i < inflight; ++i)
      (*send_one)();
    return {[](int) {}};
  });
  st->finished.get_future().wait();
  if (!st->error.empty()) {
    std::cerr << st->error << "\n";
    std::exit(1);
  }
  Result r;
  r.samples = std::move(st->samples);
  r.extra["inflight"] = inflight;
  r.extra["calls_per_s"] = static_cast<double>(n) / st->measured_seconds;
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
    if (!v) {
      std::cerr << v.error().to_string() << "\n";
      std::exit(1);
    }
  }
  r.extra["calls_per_s"] = 1e9 / percentile(r.samples, 0.5);
  return r;
}

// One plain thread keeping `inflight` requests in flight through futures:
// a call is submitted for each one taken. Samples: each call's round trip.
Result gk_future_inflight(int n, int inflight) {
  gk::Runtime rt(bench_config());
  for (int i = 0; i < 200; ++i)
    must(rt.call("gk_benchmod:noop"));
  std::deque<std::pair<gk::Future<gk::Value>, clock_type::time_point>> window;
  auto submit = [&] { window.emplace_back(rt.call_async("gk_benchmod:noop"), clock_type::now()); };
  Result r;
  r.samples.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < inflight; ++i)
    submit();
  auto t0 = clock_type::now();
  for (int done = 0; done < n; ++done) {
    auto [f, sent] = std::move(window.front());
    window.pop_front();
    must(f.get());
    r.samples.push_back(us_since(sent));
    if (done + inflight < n)
      submit();
  }
  double seconds = us_since(t0) / 1e6;
  r.extra["inflight"] = inflight;
  r.extra["calls_per_s"] = static_cast<double>(n) / seconds;
  return r;
}

// `clients` plain host threads calling one runtime for `seconds`.
Result gk_thread_clients(int clients, double seconds) {
  gk::Runtime rt(bench_config());
  for (int i = 0; i < 200; ++i)
    must(rt.call("gk_benchmod:noop"));
  auto run = run_clients(clients, seconds, [&] { must(rt.call("gk_benchmod:noop")); });
  return run.result();
}

// -- host functions and buffers -------------------------------------------------

// Python calling a host function: one request runs `per` calls of
// gilkeeper.host.noop; a sample is the time per call.
Result host_call(int n) {
  gk::Runtime rt(bench_config());
  rt.expose("noop", [](const gk::List&) -> gk::Expected<gk::Value> { return gk::Value(); });
  constexpr int per = 100;
  for (int i = 0; i < 20; ++i)
    must(rt.call("gk_benchmod:host_loop", {per}));
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    auto v = rt.call("gk_benchmod:host_loop", {per});
    r.samples.push_back(us_since(t0) / per);
    must(v);
  }
  return r;
}

// What copying `bytes` costs on this machine: the floor a buffer that is
// not copied is compared with.
Result floor_memcpy(int n, std::size_t bytes) {
  std::vector<char> from(bytes, 1), to(bytes, 0);
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    std::memcpy(to.data(), from.data(), bytes);
    r.samples.push_back(us_since(t0));
    from[static_cast<std::size_t>(i) % bytes] = to[bytes - 1 - static_cast<std::size_t>(i) % bytes];
  }
  return r;
}

// A buffer into numpy and back (numpy.asarray over the host's memory,
// returned): thread isolation here, process isolation (shared memory) with
// `process`.
Result buffer_roundtrip(int n, std::size_t bytes, bool process, const char* target) {
  gk::Runtime rt(process ? process_config() : bench_config());
  gk::Buffer b = gk::Buffer::allocate(bytes);
  std::memset(b.data(), 3, bytes);
  gk::Value arg(b);
  for (int i = 0; i < 20; ++i)
    must(rt.call(target, {arg}));
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    auto v = rt.call(target, {arg});
    r.samples.push_back(us_since(t0));
    must(v);
    if (!v->is_buffer() || v->as_buffer().size() != bytes) {
      std::cerr << "buffer_roundtrip: the result is not the buffer\n";
      std::exit(1);
    }
  }
  return r;
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

// A batch of `size` identity calls per request (what pipelines send), to a
// process-isolation runtime here or the same runtime served on loopback
// (`remote`: gk::Server + gk::connect). Samples: µs per call.
Result batch_of(int n, int size, bool remote) {
  gk::Runtime rt(process_config());
  std::unique_ptr<gk::Server> server;
  std::unique_ptr<gk::RemoteRuntime> node;
  if (remote) {
    auto s = gk::Server::start(rt, gk::ServeOptions{});
    auto c = s ? gk::connect((*s)->endpoint()) : gk::Expected<std::unique_ptr<gk::RemoteRuntime>>(s.error());
    if (!c) {
      std::cerr << c.error().to_string() << "\n";
      std::exit(1);
    }
    server = std::move(*s);
    node = std::move(*c);
  }
  std::vector<gk::CallRequest> calls(static_cast<std::size_t>(size), gk::CallRequest{"gk_benchmod:identity", {7}});
  auto once = [&] {
    auto copy = calls;
    auto v = node ? node->batch(std::move(copy)) : rt.batch(std::move(copy));
    if (!v) {
      std::cerr << v.error().to_string() << "\n";
      std::exit(1);
    }
  };
  for (int i = 0; i < 20; ++i)
    once();
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    once();
    r.samples.push_back(us_since(t0) / size);
  }
  r.extra["batch"] = size;
  return r;
}

// One call at a time to a process-isolation runtime served on loopback.
Result remote_roundtrip(int n) {
  gk::Runtime rt(process_config());
  auto s = gk::Server::start(rt, gk::ServeOptions{});
  auto c = s ? gk::connect((*s)->endpoint()) : gk::Expected<std::unique_ptr<gk::RemoteRuntime>>(s.error());
  if (!c) {
    std::cerr << c.error().to_string() << "\n";
    std::exit(1);
  }
  auto& node = **c;
  for (int i = 0; i < 50; ++i)
    must(node.call("gk_benchmod:identity", {7}));
  Result r;
  for (int i = 0; i < n; ++i) {
    auto t0 = clock_type::now();
    auto v = node.call("gk_benchmod:identity", {7});
    r.samples.push_back(us_since(t0));
    must(v);
  }
  return r;
}

// Calls/s of a CPU-bound function (about 10 ms of Python each) from 4 client
// threads for `seconds`.
Result process_cpu(double seconds, int workers) {
  gk::Runtime rt(process_config("workers = " + std::to_string(workers) + "\n"));
  for (int i = 0; i < 4; ++i)
    must(rt.call("gk_benchmod:cpu", {1000}));
  auto run = run_clients(4, seconds, [&] { must(rt.call("gk_benchmod:cpu", {200000})); });
  auto r = run.result();
  r.unit = "us";
  r.extra["workers"] = workers;
  return r;
}

// A C loop past its deadline (its worker is killed at deadline + grace): how
// late the caller is told, and how long after the deadline the caller's next
// call is served (on the warm spare, or on a new worker without one).
Result hard_deadline(int n, bool spare, bool next_served) {
  const char* env = std::getenv("GK_BENCH_SPARE_WAIT_MS");
  const int spare_wait_ms = env ? std::atoi(env) : 60;
  gk::Runtime rt(process_config(std::string("spare = ") + (spare ? "true" : "false")
                                + "\n[timeouts]\ngrace = \"20ms\"\n"));
  Result r;
  auto budget = std::chrono::milliseconds(20);
  for (int i = 0; i < n; ++i) {
    must(rt.call("gk_benchmod:noop"));  // a worker is ready
    if (spare)
      std::this_thread::sleep_for(std::chrono::milliseconds(spare_wait_ms));  // and so is the spare
    auto deadline = gk::Deadline::after(budget);
    auto v = rt.call("gk_benchmod:spin_native", {10.0}, {}, gk::RequestOptions::with_deadline(deadline));
    if (v) {
      std::cerr << "iteration " << i << ": spin_native returned a value past its deadline\n";
      std::exit(1);
    }
    if (!next_served) {
      r.samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - deadline.when()).count());
      continue;
    }
    must(rt.call("gk_benchmod:noop"));
    r.samples.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - deadline.when()).count());
    if (std::getenv("GK_BENCH_TRACE"))  // to line iterations up with a `perf record -k CLOCK_MONOTONIC` trace
      std::fprintf(stderr, "iteration %d deadline %.6f s, next served %.0f us after it\n", i,
                   std::chrono::duration<double>(deadline.when().time_since_epoch()).count(), r.samples.back());
  }
  return r;
}

// How late the caller is told after its deadline, and how long after the
// deadline the Python code was actually interrupted.
Result gk_deadline(int n, const std::string& target, bool interrupt_latency) {
  gk::Runtime rt(bench_config());
  // Import the module first: an import that outlives the 5 ms budget (on a
  // loaded machine) would take the interrupt instead of the code measured.
  must(rt.call("gk_benchmod:noop"));
  Result r;
  auto budget = std::chrono::milliseconds(5);
  int queued = 0;
  for (int i = 0; i < n; ++i) {
    auto deadline = gk::Deadline::after(budget);
    auto v = rt.call(target, {}, {}, gk::RequestOptions::with_deadline(deadline));
    double late_us = std::chrono::duration<double, std::micro>(clock_type::now() - deadline.when()).count();
    if (v || v.error().code != gk::ErrorCode::deadline_exceeded) {
      std::cerr << "iteration " << i << ": expected deadline_exceeded, got "
                << (v ? std::string("a value") : v.error().to_string()) << "\n";
      std::exit(1);
    }
    if (!interrupt_latency) {
      r.samples.push_back(late_us);
      continue;
    }
    if (v.error().phase == gk::DeadlinePhase::queued && queued < n) {
      // On a loaded machine (a parallel test run) the 5 ms budget can pass
      // before the call starts: nothing was interrupted. Count it, go again.
      ++queued;
      --i;
      continue;
    }
    auto caught = rt.call("gk_benchmod:last_caught");
    if (!caught || caught->is_null()) {
      std::cerr << "iteration " << i << ": the interrupted code did not record when it was interrupted: "
                << (caught ? std::string("null") : caught.error().to_string()) << "; the call said "
                << v.error().to_string() << "\n";
      std::exit(1);
    }
    double caught_s = caught->as_double();
    double deadline_s = std::chrono::duration<double>(deadline.when().time_since_epoch()).count();
    r.samples.push_back((caught_s - deadline_s) * 1e6);
  }
  if (interrupt_latency)
    r.extra["missed_queued"] = queued;
  return r;
}

// How late the caller of a soft deadline is told, and how often its error
// carries the Python type and traceback (`with_traceback`), with the default
// `[timeouts] interrupted_reply_wait`: 5 ms deadlines on loops that allocate
// (a growing list of lists, a list comprehension of strings), a pure loop and
// time.sleep, in turn. `fresh`: the first interrupt of each of `n` fresh
// runtimes (a growing list of lists, the module imported first).
Result soft_traceback(int n, bool fresh) {
  static const char* kLoops[] = {"gk_benchmod:grow_lists_until_interrupted", "gk_benchmod:build_strs_until_interrupted",
                                 "gk_benchmod:loop_until_interrupted", "gk_benchmod:sleep_until_interrupted"};
  Result r;
  int with_traceback = 0, queued = 0;
  std::optional<gk::Runtime> rt;
  for (int i = 0; i < n; ++i) {
    if (fresh || !rt) {
      rt.reset();
      rt.emplace(bench_config());
      must(rt->call("gk_benchmod:noop"));  // the module is imported
    }
    std::string target = fresh ? kLoops[0] : kLoops[i % 4];
    auto deadline = gk::Deadline::after(std::chrono::milliseconds(5));
    auto v = rt->call(target, {}, {}, gk::RequestOptions::with_deadline(deadline));
    double late_us = std::chrono::duration<double, std::micro>(clock_type::now() - deadline.when()).count();
    if (v || v.error().code != gk::ErrorCode::deadline_exceeded) {
      std::cerr << "iteration " << i << ": expected deadline_exceeded, got "
                << (v ? std::string("a value") : v.error().to_string()) << "\n";
      std::exit(1);
    }
    if (v.error().phase == gk::DeadlinePhase::queued && queued < n) {
      ++queued;  // a loaded machine started it after its budget: go again
      --i;
      continue;
    }
    r.samples.push_back(late_us);
    auto function = target.substr(target.find(':') + 1);
    if (v.error().type == "gilkeeper.DeadlineExceeded"
        && v.error().traceback.find(", in " + function + "\n") != std::string::npos)
      ++with_traceback;
  }
  r.extra["with_traceback"] = with_traceback;
  r.extra["missed_queued"] = queued;
  return r;
}

// -- output -------------------------------------------------------------------

void print(const std::string& figure, const Result& r) {
  std::printf("{\"figure\": \"%s\", \"unit\": \"%s\", \"median\": %.3f, \"p99\": %.3f, \"iterations\": %zu",
              figure.c_str(), r.unit.c_str(), percentile(r.samples, 0.5), percentile(r.samples, 0.99),
              r.samples.size());
  for (auto& [k, v] : r.extra)
    std::printf(", \"%s\": %.3f", k.c_str(), v);
  std::vector<double> shown = r.samples;
  if (shown.size() > kMaxPrintedSamples) {
    // Evenly spaced quantiles: the distribution, not the time series.
    std::sort(shown.begin(), shown.end());
    std::vector<double> q;
    q.reserve(kMaxPrintedSamples);
    for (std::size_t i = 0; i < kMaxPrintedSamples; ++i)
      q.push_back(shown[i * (shown.size() - 1) / (kMaxPrintedSamples - 1)]);
    shown.swap(q);
    std::printf(", \"samples_are_quantiles\": true");
  }
  std::printf(", \"samples\": [");
  for (std::size_t i = 0; i < shown.size(); ++i)
    std::printf("%s%.3f", i ? ", " : "", shown[i]);
  std::printf("]}\n");
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--echo-fd") == 0)
    return echo_main(std::atoi(argv[2]));
  if (argc < 2) {
    std::cerr << "usage: gk_bench FIGURE [--iterations N] [--seconds S]\n       gk_bench --list\n";
    return 2;
  }
  std::string figure = argv[1];
  int n = 10000;
  double seconds = 2.0;
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--iterations") == 0)
      n = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--seconds") == 0)
      seconds = std::atof(argv[i + 1]);
  }

  std::map<std::string, std::function<Result()>> figures = {
      {"floor.condvar", [&] { return floor_condvar(n); }},
      {"floor.socketpair", [&] { return floor_socketpair(n); }},
      {"floor.pyobject_call", [&] { return floor_pyobject_call(n); }},
      {"thread.roundtrip", [&] { return gk_thread_roundtrip(n); }},
      {"thread.roundtrip.unmonitored",
       [&] { return gk_thread_roundtrip(n, "[monitoring]\nslow_call = \"none\"\n"); }},
      {"thread.roundtrip.traced",
       [&] {
         auto log = std::string("/tmp/gk_bench_trace.") + std::to_string(::getpid()) + ".log";
         auto r = gk_thread_roundtrip(n, "[debug]\ntrace_calls = true\n[debug.gil]\ntrace = true\n[log]\nlevel = "
                                         "\"debug\"\nfile = \"" + log + "\"\n");
         std::remove(log.c_str());
         return r;
       }},
      {"thread.actor.inflight1", [&] { return gk_actor_roundtrip(n, 1); }},
      {"thread.actor.inflight64", [&] { return gk_actor_roundtrip(n, 64); }},
      {"thread.batch1000", [&] { return gk_thread_batch(n); }},
      {"thread.future.inflight1000", [&] { return gk_future_inflight(n, 1000); }},
      {"thread.clients32", [&] { return gk_thread_clients(32, seconds); }},
      {"host.call", [&] { return host_call(n); }},
      {"floor.memcpy100MiB", [&] { return floor_memcpy(n, std::size_t{100} << 20); }},
      {"thread.numpy100MiB", [&] { return buffer_roundtrip(n, std::size_t{100} << 20, false, "gk_benchmod:numpy_identity"); }},
      {"process.buffer1MiB", [&] { return buffer_roundtrip(n, std::size_t{1} << 20, true, "gk_benchmod:identity"); }},
      {"process.roundtrip", [&] { return process_roundtrip(n, 0); }},
      {"process.bytes1MiB", [&] { return process_roundtrip(n, 1 << 20); }},
      {"process.batch128", [&] { return batch_of(n, 128, false); }},
      {"remote.roundtrip", [&] { return remote_roundtrip(n); }},
      {"remote.batch128", [&] { return batch_of(n, 128, true); }},
      {"process.cpu.1worker", [&] { return process_cpu(seconds, 1); }},
      {"process.cpu.2workers", [&] { return process_cpu(seconds, 2); }},
      {"peer.gilstate.1thread", [&] { return peer_gilstate(1, n, seconds); }},
      {"peer.gilstate.8threads", [&] { return peer_gilstate(8, n, seconds); }},
      {"peer.gilstate.32threads", [&] { return peer_gilstate(32, n, seconds); }},
      {"peer.tstate.1thread", [&] { return peer_kept_tstate(1, n, seconds); }},
      {"peer.tstate.32threads", [&] { return peer_kept_tstate(32, n, seconds); }},
#ifdef GK_BENCH_HAVE_PYBIND11
      {"peer.pybind11.1thread", [&] { return peer_pybind11(1, n, seconds); }},
      {"peer.pybind11.8threads", [&] { return peer_pybind11(8, n, seconds); }},
      {"peer.pybind11.32threads", [&] { return peer_pybind11(32, n, seconds); }},
#endif
      {"deadline.hard.told_late", [&] { return hard_deadline(n, true, false); }},
      {"deadline.hard.next_served.spare", [&] { return hard_deadline(n, true, true); }},
      {"deadline.hard.next_served.nospare", [&] { return hard_deadline(n, false, true); }},
      {"deadline.told_late.loop", [&] { return gk_deadline(n, "gk_benchmod:loop_until_interrupted", false); }},
      {"deadline.told_late.sleep", [&] { return gk_deadline(n, "gk_benchmod:sleep_until_interrupted", false); }},
      {"deadline.interrupt.loop", [&] { return gk_deadline(n, "gk_benchmod:loop_until_interrupted", true); }},
      {"deadline.interrupt.sleep", [&] { return gk_deadline(n, "gk_benchmod:sleep_until_interrupted", true); }},
      {"deadline.traceback.told_late", [&] { return soft_traceback(n, false); }},
      {"deadline.traceback.first", [&] { return soft_traceback(n, true); }},
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
