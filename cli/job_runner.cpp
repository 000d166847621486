// The two job commands: `gilkeeper run` (JobRun: reading, the pipeline, the
// writer thread, the summary) and `gilkeeper check`.

#include "cli/job_runner.hpp"

#include "cli/job_setup.hpp"
#include "cli/json_value.hpp"
#include "cli/line_file.hpp"
#include "cli/progress.hpp"
#include "cli/say.hpp"

#include "gilkeeper/gilkeeper.hpp"
#include "gilkeeper/runtime/pipeline.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <pthread.h>
#include <thread>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gk::cli {

namespace {

using steady = std::chrono::steady_clock;

bool is_blank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// -- the run -------------------------------------------------------------------

sigset_t stop_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Errors that would only happen again, or a runtime that takes no work.
std::vector<ErrorCode> retryable_codes() {
  return {ErrorCode::python_exception, ErrorCode::deadline_exceeded, ErrorCode::worker_crashed,
          ErrorCode::degraded, ErrorCode::stale_ref, ErrorCode::overloaded, ErrorCode::internal};
}

class JobRun {
public:
  JobRun(Runtime& rt, const Config& job, LineFile& output, LineFile& errors)
    : rt_(rt), job_(job), output_(output), errors_(errors) {}

  // Reads every line of `input` and sends each record through the stages.
  // Stops early when `interrupted` is set. False when reading failed.
  //
  // Three threads carry the records: this one reads and parses lines and
  // pushes them in runs; the pipeline's thread dispatches them (in batches)
  // to the runtime and orders the results; a writer thread encodes and
  // writes them. The thread that dispatches never parses, encodes or writes.
  bool process(std::FILE* input, const std::atomic<bool>& interrupted, const ProgressOptions& progress) {
    struct Publish {
      JobRun& run;
      ~Publish() {
        std::lock_guard<std::mutex> g(run.pipeline_mutex_);
        run.pipeline_ = nullptr;
      }
    };
    started_ = steady::now();
    std::vector<Stage> stages;
    bool ordered = true;
    std::size_t width = 0;
    for (auto& s : job_.stages) {
      RetryPolicy retry;
      retry.attempts = s.retries + 1;
      retry.on = retryable_codes();
      // By default a stage keeps every worker process busy.
      int parallelism = s.parallelism > 0 ? s.parallelism
                        : job_.runtime.isolation == Isolation::process ? std::max(1, job_.runtime.workers)
                                                                       : 1;
      Stage st = Stage::python(s.name, s.call).with_parallelism(parallelism).with_retry(retry);
      if (s.timeout)
        st.with_timeout(*s.timeout);
      st.with_batch(s.batch_size);
      stages.push_back(std::move(st));
      ordered = ordered && s.ordered;
      width = std::max<std::size_t>(width, static_cast<std::size_t>(parallelism * std::max(1, s.batch_size)));
    }
    PipelineOptions options;
    options.ordered = ordered;
    options.max_in_flight = std::max<std::size_t>(kReadRun * 4, 4 * width);
    options.stop_grace = job_.runtime.shutdown_grace;
    Pipeline pipeline(rt_, std::move(stages), options);
    Writer writer(*this);
    pipeline.on_output([&](Output&& o) { writer.pending.outputs.push_back(std::move(o)); });
    pipeline.on_failure([&](Failure&& f) { writer.pending.failures.push_back(std::move(f)); });
    pipeline.on_flush([&] { writer.hand_on(); });

    Publish unpublish{*this};
    {
      std::lock_guard<std::mutex> g(pipeline_mutex_);
      pipeline_ = &pipeline;
      if (interrupted)
        pipeline.stop();
    }
    Progress bar(progress, pipeline, rt_, total_lines_);
    // From a pipe or a terminal, records may trickle in: hand them on
    // before waiting for more input, not only when a run is full.
    struct stat st {};
    bool trickles = ::fstat(::fileno(input), &st) != 0 || !S_ISREG(st.st_mode);
    char* buffer = nullptr;
    std::size_t capacity = 0;
    ssize_t n;
    std::uint64_t line = 0;
    std::vector<PipelineRecord> run;
    run.reserve(kReadRun);
    // Read but refused (the run was stopped): each still gets its line.
    std::vector<PipelineRecord> not_run;
    auto push_run = [&] {
      if (run.empty())
        return true;
      std::size_t accepted = pipeline.push(run);
      if (accepted < run.size())
        not_run.insert(not_run.end(), std::make_move_iterator(run.begin() + static_cast<long>(accepted)),
                       std::make_move_iterator(run.end()));
      run.clear();
      return not_run.empty();
    };
    for (;;) {
      if (interrupted)
        break;
      if (run.size() >= kReadRun || (trickles && input_buffer_empty(input))) {
        if (!push_run())
          break;
      }
      errno = 0;
      if ((n = ::getline(&buffer, &capacity, input)) == -1) {
        if (errno == EINTR && !interrupted) {
          std::clearerr(input);
          continue;
        }
        break;
      }
      ++line;
      std::string text(buffer, static_cast<std::size_t>(n));
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
      if (is_blank(text))
        continue;
      ++records_;
      PipelineRecord r;
      r.id = line;
      if (Error e = parse_record(text, r.value))
        r.failed = std::move(e);  // reported in its turn, like the others
      r.input = Value(std::move(text));
      run.push_back(std::move(r));
    }
    if (!interrupted)
      push_run();
    not_run.insert(not_run.end(), std::make_move_iterator(run.begin()), std::make_move_iterator(run.end()));
    bool read_ok = !std::ferror(input) || interrupted;
    std::free(buffer);
    if (interrupted)
      pipeline.stop();
    else
      pipeline.close();
    report_ = pipeline.wait();
    writer.finish();
    bar.finish();
    for (auto& r : not_run)
      fail(r.id, r.input->as_string(),
           r.failed ? *r.failed
                    : Error(ErrorCode::runtime_stopped, "the run was interrupted before this record was processed"),
           "", !r.failed);
    elapsed_ = steady::now() - started_;
    return read_ok;
  }

  void set_total_lines(std::int64_t n) noexcept { total_lines_ = n; }

  /// Stops the pipeline (from the signal watcher): no more records are
  /// accepted, the ones in flight finish or fail within the grace period.
  void interrupt() {
    std::lock_guard<std::mutex> g(pipeline_mutex_);
    if (pipeline_)
      pipeline_->stop();
  }
  bool any_failed() const noexcept { return failed_ > 0; }

  /// Interpreters the runtime replaced during the run (process isolation).
  void set_restarts(const Stats& s) {
    workers_restarted_ = s.restarts;
    restarts_by_cause_ = s.restarts_by_cause;
    capability_denials_ = s.capability_denials;
  }

  // The human summary (stderr).
  void print_summary() const {
    double secs = elapsed_seconds();
    double rate = secs > 0 ? static_cast<double>(records_) / secs : 0.0;
    std::fprintf(stderr, "gilkeeper: %llu %s in %.3f s (%.0f records/s): %llu ok, %llu failed%s\n",
                 ull(records_), records_ == 1 ? "record" : "records", secs, rate, ull(ok_), ull(failed_),
                 report_.stopped ? " (interrupted)" : "");
    if (!by_code_.empty()) {
      std::string codes;
      for (auto& [code, n] : by_code_)
        codes += (codes.empty() ? "" : ", ") + code + " " + std::to_string(n);
      std::fprintf(stderr, "  failed by code: %s\n", codes.c_str());
    }
    for (auto& s : report_.stages) {
      std::fprintf(stderr, "  stage \"%s\": %llu calls, p50 %.3f ms, p99 %.3f ms%s\n", s.name.c_str(),
                   ull(s.calls), s.p50_ms, s.p99_ms,
                   s.retries ? (", " + std::to_string(s.retries) + " retried").c_str() : "");
    }
    auto miss = [&](const char* phase) {
      auto i = report_.deadline_misses.find(phase);
      return ull(i == report_.deadline_misses.end() ? 0 : i->second);
    };
    std::fprintf(stderr, "  deadline misses: queued %llu, soft %llu, hard %llu\n", miss("queued"), miss("soft"),
                 miss("hard"));
    if (workers_restarted_ > 0) {
      std::string causes;
      for (auto& [cause, n] : restarts_by_cause_)
        causes += (causes.empty() ? "" : ", ") + cause + " " + std::to_string(n);
      std::fprintf(stderr, "  workers restarted: %llu (%s)\n", ull(workers_restarted_), causes.c_str());
    }
    if (capability_denials_ > 0)
      std::fprintf(stderr, "  capability denials: %llu\n", ull(capability_denials_));
    std::fprintf(stderr, "  errors: %s (%llu %s)\n", absolute(errors_.path()).c_str(), ull(errors_.lines()),
                 errors_.lines() == 1 ? "line" : "lines");
  }

  // The `--summary-json` document.
  Json summary_json() const {
    Json j = Json::object();
    j["records"] = records_;
    j["ok"] = ok_;
    j["failed"] = failed_;
    Json codes = Json::object();
    for (auto& [code, n] : by_code_)
      codes[code] = n;
    j["by_code"] = std::move(codes);
    j["elapsed_s"] = elapsed_seconds();
    j["workers_restarted"] = workers_restarted_;
    Json causes = Json::object();
    for (auto& [cause, n] : restarts_by_cause_)
      causes[cause] = n;
    j["workers_restarted_by_cause"] = std::move(causes);
    Json misses = Json::object();
    for (auto& [phase, n] : report_.deadline_misses)
      misses[phase] = n;
    j["deadline_misses"] = std::move(misses);
    j["interrupted"] = report_.stopped;
    j["capability_denials"] = capability_denials_;
    Json stages = Json::object();
    for (auto& s : report_.stages) {
      Json one = Json::object();
      one["calls"] = s.calls;
      one["p50_ms"] = s.p50_ms;
      one["p99_ms"] = s.p99_ms;
      one["retries"] = s.retries;
      stages[s.name] = std::move(one);
    }
    j["stages"] = std::move(stages);
    return j;
  }

private:
  // Lines read before they are pushed together (one hand-off per run).
  static constexpr std::size_t kReadRun = 256;

  // The writer thread: encodes and writes what the pipeline emitted, run by
  // run. `pending` is filled on the pipeline's thread and handed on at each
  // flush.
  class Writer {
  public:
    struct Batch {
      std::vector<Output> outputs;
      std::vector<Failure> failures;
    };
    Batch pending;

    explicit Writer(JobRun& run) : run_(run), thread_([this] { loop(); }) {}
    ~Writer() { finish(); }

    void hand_on() {
      {
        std::lock_guard<std::mutex> g(m_);
        queue_.push_back(std::move(pending));
      }
      pending = Batch{};
      cv_.notify_one();
    }
    // Writes what is left and ends the thread.
    void finish() {
      {
        std::lock_guard<std::mutex> g(m_);
        if (done_)
          return;
        done_ = true;
      }
      cv_.notify_one();
      thread_.join();
    }

  private:
    void loop() {
      pthread_setname_np(pthread_self(), "gk-writer");
      std::string line;
      for (;;) {
        std::deque<Batch> batches;
        {
          std::unique_lock<std::mutex> lk(m_);
          cv_.wait(lk, [&] { return done_ || !queue_.empty(); });
          if (queue_.empty())
            return;
          batches.swap(queue_);
        }
        for (auto& b : batches) {
          for (auto& o : b.outputs)
            run_.write_output(o, line);
          for (auto& f : b.failures)  // an empty stage: the line is not JSON
            run_.fail(f.id, f.input.as_string(), f.error, f.stage, !f.stage.empty());
        }
        // Nothing more to write right now: let readers of the output see it.
        bool idle;
        {
          std::lock_guard<std::mutex> g(m_);
          idle = queue_.empty();
        }
        if (idle) {
          std::lock_guard<std::mutex> s(run_.sink_mutex_);
          run_.output_.flush();
          run_.errors_.flush();
        }
      }
    }

    JobRun& run_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<Batch> queue_;
    bool done_ = false;
    std::thread thread_;
  };

  // One output line (a result with no JSON form fails instead).
  void write_output(Output& o, std::string& line) {
    line = "{\"line\":";
    line += std::to_string(o.id);
    line += ",\"value\":";
    if (Error e = encode_json(o.value, line)) {
      fail(o.id, o.input.as_string(), e, job_.stages.back().name, true);
      return;
    }
    line += '}';
    std::lock_guard<std::mutex> g(sink_mutex_);
    output_.write_line(line);
    ++ok_;
  }

  // True when the next read of `input` has to wait for the OS (glibc).
  static bool input_buffer_empty(std::FILE* input) {
    return input->_IO_read_ptr >= input->_IO_read_end;
  }

  static unsigned long long ull(std::uint64_t n) { return static_cast<unsigned long long>(n); }

  double elapsed_seconds() const { return std::chrono::duration<double>(elapsed_).count(); }

  // Writes a failed record to the errors file; `parsed` when its text is JSON.
  void fail(std::uint64_t line, std::string_view text, const Error& e, const std::string& stage, bool parsed) {
    Json error = Json::object();
    error["code"] = to_string(e.code);
    error["phase"] = to_string(e.phase);
    error["stage"] = stage;
    error["type"] = e.type;
    error["message"] = e.message;
    error["traceback"] = e.traceback;
    // Assembled by hand so that the input appears verbatim.
    std::lock_guard<std::mutex> g(sink_mutex_);
    errors_.write_line("{\"line\":" + std::to_string(line) + ",\"input\":" + input_json_text(text, parsed)
                       + ",\"error\":" + dump_line(error) + "}");
    ++failed_;
    ++by_code_[to_string(e.code)];
  }

  Runtime& rt_;
  const Config& job_;
  LineFile& output_;
  LineFile& errors_;
  std::mutex sink_mutex_;
  std::mutex pipeline_mutex_;
  Pipeline* pipeline_ = nullptr;
  std::int64_t total_lines_ = -1;
  std::uint64_t records_ = 0;
  std::uint64_t ok_ = 0;
  std::uint64_t failed_ = 0;
  std::map<std::string, std::uint64_t> by_code_;
  std::uint64_t workers_restarted_ = 0;
  std::uint64_t capability_denials_ = 0;
  std::vector<std::pair<std::string, std::uint64_t>> restarts_by_cause_;
  PipelineReport report_;
  steady::time_point started_;
  steady::duration elapsed_{};
};

// Ends the runtime. When it could not stop (a call stuck in native code),
// the process must not run static destructors under a live interpreter:
// flush and leave at once.
void stop_runtime(std::unique_ptr<Runtime>& rt, int status) {
  ShutdownReport report = rt->shutdown();
  if (!report.finalized) {
    if (!report.message.empty())
      say("warning: " + report.message);
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(status);
  }
  rt.reset();
}

} // namespace

std::string default_errors_path(const std::string& output) {
  return output == "-" ? std::string("errors.jsonl") : output + ".errors.jsonl";
}

int run_job(const RunOptions& options) {
  Config job;
  if (!load_job(options.job, job))
    return exit_usage;
  if (options.workers > 0) {
    if (options.workers > 1 && job.runtime.isolation == Isolation::thread) {
      say("--workers " + std::to_string(options.workers) + " needs isolation = \"process\" in " + options.job
          + " (thread isolation has one interpreter)");
      return exit_usage;
    }
    job.runtime.workers = options.workers;
  }
  // Before any thread starts: SIGINT and SIGTERM go to the watcher only.
  sigset_t stop_signals = stop_signal_set();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  struct sigaction wake {};
  wake.sa_handler = [](int) {};  // only interrupts a blocking read (no SA_RESTART)
  sigemptyset(&wake.sa_mask);
  sigaction(SIGUSR2, &wake, nullptr);

  std::string errors_path = options.errors.empty() ? default_errors_path(options.output) : options.errors;
  if (same_files(options, errors_path))
    return exit_usage;

  std::FILE* input = stdin;
  if (options.input != "-") {
    input = std::fopen(options.input.c_str(), "r");
    if (!input) {
      say("cannot open the input file " + options.input + ": " + std::strerror(errno));
      return exit_usage;
    }
  }
  struct CloseInput {
    std::FILE* f;
    ~CloseInput() {
      if (f != stdin)
        std::fclose(f);
    }
  } close_input{input};

  auto rt = start_runtime(job);
  if (!rt)
    return exit_internal;
  // Results own stdout: Python's print() goes to stderr.
  if (auto redirected = rt->exec("import sys\nsys.stdout = sys.stderr\n"); !redirected) {
    say("cannot redirect Python's stdout: " + redirected.error().to_string());
    stop_runtime(rt, exit_internal);
    return exit_internal;
  }
  // A stage that cannot resolve would fail every record the same way.
  if (!check_stages(*rt, job, stderr, false)) {
    say(options.job + ": a stage does not resolve; nothing was run (see `gilkeeper check`)");
    stop_runtime(rt, exit_usage);
    return exit_usage;
  }

  LineFile output, errors, summary;
  if (!output.open(options.output, "output") || !errors.open(errors_path, "errors")
      || (!options.summary_json.empty() && !summary.open(options.summary_json, "summary"))) {
    stop_runtime(rt, exit_usage);
    return exit_usage;
  }

  JobRun run(*rt, job, output, errors);
  // The total is for the progress display: no second read of the input
  // when nothing shows it.
  bool progress_shown = options.progress == "always" || (options.progress == "auto" && ::isatty(2));
  if (progress_shown)
    run.set_total_lines(count_lines(options.input));

  // Ctrl-C / SIGTERM: the signals are blocked in every thread (the
  // runtime's threads inherited the mask) and taken here by a watcher, which
  // stops the pipeline and wakes the reader out of a blocking read.
  std::atomic<bool> interrupted{false};
  pthread_t reader = pthread_self();
  // The watcher waits for a stop signal or for the end of the run (an
  // eventfd), with no polling tick.
  int signals_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  int finished_fd = eventfd(0, EFD_CLOEXEC);
  if (signals_fd < 0 || finished_fd < 0) {
    say(std::string("cannot watch for signals: ") + std::strerror(errno));
    stop_runtime(rt, exit_internal);
    return exit_internal;
  }
  std::thread watcher([&] {
    pollfd fds[2] = {{signals_fd, POLLIN, 0}, {finished_fd, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0 && errno != EINTR)
        return;
      if (fds[1].revents & POLLIN)
        return;
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info;
        if (::read(signals_fd, &info, sizeof info) != static_cast<ssize_t>(sizeof info))
          continue;
        interrupted = true;
        run.interrupt();
        // Wake the reader out of a blocking read until the run ends.
        for (;;) {
          pthread_kill(reader, SIGUSR2);
          pollfd done{finished_fd, POLLIN, 0};
          if (::poll(&done, 1, 50) > 0)
            return;
        }
      }
    }
  });
  bool read_ok = run.process(input, interrupted, ProgressOptions{options.progress});
  std::uint64_t one = 1;
  (void)!::write(finished_fd, &one, sizeof one);
  watcher.join();
  ::close(signals_fd);
  ::close(finished_fd);
  run.set_restarts(rt->stats());
  if (!read_ok)
    say("reading the input " + options.input + " failed: " + std::strerror(errno));
  bool written = output.close("output") & errors.close("errors");
  if (!options.summary_json.empty()) {
    summary.write_line(run.summary_json().dump(2));
    written = summary.close("summary") && written;
  }
  run.print_summary();

  int status = interrupted ? exit_interrupted
               : !read_ok || !written ? exit_internal
               : run.any_failed() ? exit_some_failed
                                  : exit_ok;
  stop_runtime(rt, status);
  return status;
}

int check_job(const std::string& path) {
  Config job;
  if (!load_job(path, job))
    return exit_usage;
  auto rt = start_runtime(job);
  if (!rt)
    return exit_internal;
  bool ok = check_stages(*rt, job, stdout, true);
  std::fflush(stdout);
  if (ok)
    std::printf("%s: ok (%zu %s)\n", path.c_str(), job.stages.size(),
                job.stages.size() == 1 ? "stage" : "stages");
  else
    say(path + ": some stages do not resolve");
  int status = ok ? exit_ok : exit_usage;
  stop_runtime(rt, status);
  return status;
}

} // namespace gk::cli
