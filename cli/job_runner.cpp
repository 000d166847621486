// The two job commands: `gilkeeper run` (JobRun: reading, the pipeline, the
// writer thread, syncing, the accounting and the summary) and
// `gilkeeper check`.

#include "cli/job_runner.hpp"

#include "cli/job_setup.hpp"
#include "cli/json_value.hpp"
#include "cli/line_file.hpp"
#include "cli/metrics_export.hpp"
#include "cli/progress.hpp"
#include "cli/resume.hpp"
#include "cli/say.hpp"
#include "cli/stop_signals.hpp"

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
#include <optional>
#include <pthread.h>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gk::cli {

namespace {

using steady = std::chrono::steady_clock;

bool is_blank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// -- the run -------------------------------------------------------------------

// Errors that would only happen again, or a runtime that takes no work.
std::vector<ErrorCode> retryable_codes() {
  return {ErrorCode::python_exception, ErrorCode::deadline_exceeded, ErrorCode::worker_crashed,
          ErrorCode::degraded, ErrorCode::stale_ref, ErrorCode::overloaded, ErrorCode::internal};
}

class JobRun {
public:
  // `done`: records an interrupted run already wrote (see --resume), whose
  // lines are in `output` and `errors` (opened to append after them).
  JobRun(const Config& job, LineFile& output, LineFile& errors, const SyncPolicy& sync, StopWatcher& stops,
         const ResumePoint& done)
    : job_(job), output_(output), errors_(errors), sync_(sync), stops_(stops), by_code_(done.failed_by_code),
      resumed_(done.done.size()), errors_before_(errors.lines()) {}

  // Reads every line of `input` that is not in `skip` (ascending line
  // numbers) and sends each record through the stages. Stops early once
  // interrupt() is called (before or during). False when reading failed.
  //
  // Three threads carry the records: this one reads and parses lines and
  // pushes them in runs; the pipeline's thread dispatches them (in batches)
  // to the runtime and orders the results; a writer thread encodes and
  // writes them. The thread that dispatches never parses, encodes or writes.
  bool process(Runtime& rt, std::FILE* input, const std::vector<std::uint64_t>& skip,
               const ProgressOptions& progress) {
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
    options.remotes = nodes_;
    options.local = job_.cluster.local;
    options.node_retries = job_.cluster.node_retries;
    options.ordered = ordered;
    options.max_in_flight = std::max<std::size_t>(kReadRun * 4, 4 * width);
    // Room for every node's batches too (each up to the automatic cap).
    options.max_in_flight += nodes_.size() * static_cast<std::size_t>(job_.cluster.credit) * 128;
    options.stop_grace = job_.runtime.shutdown_grace;
    Pipeline pipeline(rt, std::move(stages), options);
    Writer writer(*this);
    pipeline.on_output([&](Output&& o) { writer.pending.outputs.push_back(std::move(o)); });
    pipeline.on_failure([&](Failure&& f) { writer.pending.failures.push_back(std::move(f)); });
    pipeline.on_flush([&] { writer.hand_on(); });

    Publish unpublish{*this};
    {
      std::lock_guard<std::mutex> g(pipeline_mutex_);
      pipeline_ = &pipeline;
      if (stopping_)
        pipeline.stop();
    }
    Progress bar(progress, pipeline, rt, total_lines_);
    // From a pipe or a terminal, records may trickle in: hand them on
    // before waiting for more input, not only when a run is full.
    struct stat st {};
    bool trickles = ::fstat(::fileno(input), &st) != 0 || !S_ISREG(st.st_mode);
    char* buffer = nullptr;
    std::size_t capacity = 0;
    ssize_t n;
    std::uint64_t line = 0;
    auto next_skip = skip.begin();
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
      if (stopping_)
        break;
      if (run.size() >= kReadRun || (trickles && input_buffer_empty(input))) {
        if (!push_run())
          break;
      }
      errno = 0;
      if ((n = ::getline(&buffer, &capacity, input)) == -1) {
        if (errno == EINTR && !stopping_) {
          std::clearerr(input);
          continue;
        }
        break;
      }
      ++line;
      if (next_skip != skip.end() && *next_skip == line) {
        ++next_skip;  // done by the interrupted run
        continue;
      }
      std::string text(buffer, static_cast<std::size_t>(n));
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
      if (is_blank(text))
        continue;
      PipelineRecord r;
      r.id = line;
      if (Error e = parse_record(text, r.value))
        r.failed = std::move(e);  // reported in its turn, like the others
      r.input = Value(std::move(text));
      run.push_back(std::move(r));
    }
    if (!stopping_)
      push_run();
    not_run.insert(not_run.end(), std::make_move_iterator(run.begin()), std::make_move_iterator(run.end()));
    bool read_ok = !std::ferror(input) || stopping_;
    std::free(buffer);
    if (stopping_)
      pipeline.stop();
    else
      pipeline.close();
    report_ = pipeline.wait();
    writer.finish();
    bar.finish();
    for (auto& r : not_run)
      fail(r.id, r.input->as_string(),
           r.failed ? *r.failed
                    : Error(ErrorCode::runtime_stopped, "the run was stopped before this record was processed"),
           "", !r.failed);
    elapsed_ = steady::now() - started_;
    return read_ok;
  }

  void set_total_lines(std::int64_t n) noexcept { total_lines_ = n; }

  /// Stops the run (thread-safe, idempotent): no more lines are read, the
  /// records in flight finish or fail within the grace period.
  void interrupt() {
    stopping_ = true;
    std::lock_guard<std::mutex> g(pipeline_mutex_);
    if (pipeline_)
      pipeline_->stop();
  }

  /// Writes what is left, makes both files durable (unless `--sync off`)
  /// and closes them. False when a file failed (see write_failures()).
  bool finish_files() {
    std::lock_guard<std::mutex> g(sink_mutex_);
    if (sync_.kind != SyncPolicy::Kind::off)
      sync_now();
    bool ok = output_.close() & errors_.close();
    settle();
    return ok;
  }

  /// Why the files failed, one line each ("" when neither did).
  std::vector<std::string> write_failures() const {
    std::vector<std::string> why;
    for (const LineFile* f : {&output_, &errors_})
      if (f->failed())
        why.push_back(f->failure());
    return why;
  }

  bool any_failed() const noexcept { return errors_.lines() > 0; }
  std::uint64_t not_written() const noexcept { return output_.lost() + errors_.lost(); }

  /// Interpreters the runtime replaced during the run (process isolation).
  void set_restarts(const Stats& s) {
    workers_restarted_ = s.restarts;
    restarts_by_cause_ = s.restarts_by_cause;
    capability_denials_ = s.capability_denials;
  }

  // Remote runtimes the Python stages share their records with.
  void set_nodes(std::vector<std::shared_ptr<BatchTarget>> nodes) { nodes_ = std::move(nodes); }

  // The human summary (stderr). `interrupted`: a stop signal came.
  void print_summary(bool interrupted) const {
    std::uint64_t records = total_records();
    double secs = elapsed_seconds();
    double rate = secs > 0 ? static_cast<double>(records - resumed_) / secs : 0.0;
    std::string resumed =
        resumed_ > 0 ? " (" + std::to_string(resumed_) + " done before this run resumed)" : std::string();
    std::fprintf(stderr, "gilkeeper: %llu %s%s in %.3f s (%.0f records/s): %llu ok, %llu failed%s%s\n",
                 ull(records), records == 1 ? "record" : "records", resumed.c_str(), secs, rate, ull(output_.lines()),
                 ull(errors_.lines()),
                 not_written() > 0 ? (", " + std::to_string(not_written()) + " not written").c_str() : "",
                 interrupted ? " (interrupted)" : "");
    if (!by_code_.empty()) {
      std::string codes;
      for (auto& [code, n] : by_code_)
        codes += (codes.empty() ? "" : ", ") + code + " " + std::to_string(n);
      std::fprintf(stderr, "  failed by code: %s\n", codes.c_str());
    }
    for (auto& s : stage_reports()) {
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
    for (auto& n : report_.nodes)
      std::fprintf(stderr, "  node %s: %llu records in %llu batches%s\n", n.name.c_str(), ull(n.records),
                   ull(n.batches), n.lost ? (", " + std::to_string(n.lost) + " lost with it").c_str() : "");
    std::fprintf(stderr, "  errors: %s (%llu %s)\n", absolute(errors_.path()).c_str(), ull(errors_.lines()),
                 errors_.lines() == 1 ? "line" : "lines");
    if (not_written() > 0)
      std::fprintf(stderr, "  not written: %llu %s (in neither file; `--resume` runs them again)\n",
                   ull(not_written()), not_written() == 1 ? "record" : "records");
  }

  // The `--summary-json` document. PRECONDITION: after finish_files().
  Json summary_json(bool interrupted) const {
    Json j = Json::object();
    j["records"] = total_records();
    j["ok"] = output_.lines();
    j["failed"] = errors_.lines();
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
    j["interrupted"] = interrupted;
    j["capability_denials"] = capability_denials_;
    Json stages = Json::object();
    for (auto& s : stage_reports()) {
      Json one = Json::object();
      one["calls"] = s.calls;
      one["p50_ms"] = s.p50_ms;
      one["p99_ms"] = s.p99_ms;
      one["retries"] = s.retries;
      stages[s.name] = std::move(one);
    }
    j["stages"] = std::move(stages);
    Json nodes = Json::object();
    for (auto& n : report_.nodes) {
      Json one = Json::object();
      one["records"] = n.records;
      one["batches"] = n.batches;
      one["lost"] = n.lost;
      nodes[n.name] = std::move(one);
    }
    j["nodes"] = std::move(nodes);
    j["not_written"] = not_written();
    j["resumed"] = resumed_;
    return j;
  }

private:
  // Lines read before they are pushed together (one hand-off per run).
  static constexpr std::size_t kReadRun = 256;

  // The writer thread: encodes and writes what the pipeline emitted, run by
  // run, and syncs on the run's cadence. `pending` is filled on the
  // pipeline's thread and handed on at each flush.
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
        // Sleeps until there is work, or until written lines are due to be
        // made durable (`--sync interval:...`).
        std::optional<steady::time_point> sync_due = run_.sync_due();
        {
          std::unique_lock<std::mutex> lk(m_);
          auto ready = [&] { return done_ || !queue_.empty(); };
          if (sync_due)
            cv_.wait_until(lk, *sync_due, ready);
          else
            cv_.wait(lk, ready);
          if (queue_.empty() && done_)
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
        run_.flush_files();
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
    wrote_line();
  }

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
    unsettled_codes_.push_back(to_string(e.code));
    wrote_line();
  }

  // PRECONDITION (this and the helpers below): sink_mutex_ held.
  void wrote_line() {
    if (!unsynced_since_)
      unsynced_since_ = steady::now();
    if (sync_.kind == SyncPolicy::Kind::every && ++lines_since_sync_ >= sync_.records)
      sync_now();
    settle();
  }

  // Hands both files' lines to the file system, and syncs them when the
  // interval is due.
  void flush_files() {
    std::lock_guard<std::mutex> g(sink_mutex_);
    output_.flush();
    errors_.flush();
    if (sync_.kind == SyncPolicy::Kind::interval && unsynced_since_
        && steady::now() - *unsynced_since_ >= sync_.interval)
      sync_now();
    settle();
  }

  void sync_now() {
    output_.sync();
    errors_.sync();
    unsynced_since_.reset();
    lines_since_sync_ = 0;
  }

  // When lines written since the last sync must be made durable.
  std::optional<steady::time_point> sync_due() {
    std::lock_guard<std::mutex> g(sink_mutex_);
    if (sync_.kind != SyncPolicy::Kind::interval || !unsynced_since_)
      return std::nullopt;
    return *unsynced_since_ + std::chrono::duration_cast<steady::duration>(sync_.interval);
  }

  // Counts the error codes of the errors lines that reached the file; drops
  // those of lines lost with a failed file. A file that fails stops the run:
  // what would follow could not be written.
  void settle() {
    std::uint64_t written = errors_.lines() - errors_before_;
    while (settled_errors_ < written && !unsettled_codes_.empty()) {
      ++by_code_[unsettled_codes_.front()];
      unsettled_codes_.pop_front();
      ++settled_errors_;
    }
    if (errors_.failed())
      unsettled_codes_.clear();
    if ((output_.failed() || errors_.failed()) && !stop_asked_) {
      stop_asked_ = true;
      stops_.request_stop();
    }
  }

  // True when the next read of `input` has to wait for the OS (glibc).
  static bool input_buffer_empty(std::FILE* input) {
    return input->_IO_read_ptr >= input->_IO_read_end;
  }

  static unsigned long long ull(std::uint64_t n) { return static_cast<unsigned long long>(n); }

  double elapsed_seconds() const { return std::chrono::duration<double>(elapsed_).count(); }

  // Every record of the input that is done or was read: in the output, in
  // the errors, or not written.
  std::uint64_t total_records() const { return output_.lines() + errors_.lines() + not_written(); }

  // The pipeline's stage reports, or the job's stages with no calls when it
  // never ran (stopped before the first record).
  std::vector<StageReport> stage_reports() const {
    if (!report_.stages.empty())
      return report_.stages;
    std::vector<StageReport> none;
    for (auto& s : job_.stages) {
      none.emplace_back();
      none.back().name = s.name;
    }
    return none;
  }

  const Config& job_;
  LineFile& output_;
  LineFile& errors_;
  const SyncPolicy sync_;
  StopWatcher& stops_;
  std::atomic<bool> stopping_{false};
  // Guards both files and the accounting below.
  std::mutex sink_mutex_;
  std::optional<steady::time_point> unsynced_since_;
  std::uint64_t lines_since_sync_ = 0;
  std::deque<std::string> unsettled_codes_;
  std::uint64_t settled_errors_ = 0;
  bool stop_asked_ = false;
  std::mutex pipeline_mutex_;
  Pipeline* pipeline_ = nullptr;
  std::int64_t total_lines_ = -1;
  std::map<std::string, std::uint64_t> by_code_;
  const std::uint64_t resumed_;
  const std::uint64_t errors_before_;
  std::uint64_t workers_restarted_ = 0;
  std::uint64_t capability_denials_ = 0;
  std::vector<std::pair<std::string, std::uint64_t>> restarts_by_cause_;
  PipelineReport report_;
  std::vector<std::shared_ptr<BatchTarget>> nodes_;
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

// Opens `--metrics-file` / `--metrics-listen`, if given: false (said on
// stderr) when the file cannot be written there or the address not bound.
bool open_metrics(const RunOptions& options, MetricsExport& metrics) {
  if (options.metrics_file.empty() && options.metrics_listen.empty())
    return true;
  MetricsExportOptions o;
  if (!options.metrics_file.empty()) {
    if (options.metrics_file == "-") {
      say("--metrics-file needs a file (it is rewritten whole, by a rename), not -");
      return false;
    }
    auto interval = parse_duration(options.metrics_interval);
    if (!interval || interval->count() <= 0) {
      say("--metrics-interval " + options.metrics_interval + ": expected a duration above zero, like 5s or 500ms");
      return false;
    }
    o.file = options.metrics_file;
    o.interval = *interval;
  }
  if (!options.metrics_listen.empty()) {
    o.listen = parse_listen_address(options.metrics_listen);
    if (!o.listen) {
      say("--metrics-listen " + options.metrics_listen + ": expected [ADDR:]PORT, like 9100 or 127.0.0.1:9100");
      return false;
    }
  }
  return metrics.open(o);
}

} // namespace

std::string default_errors_path(const std::string& output) {
  return output == "-" ? std::string("errors.jsonl") : output + ".errors.jsonl";
}

int run_job(const RunOptions& options) {
  // The stop signals have been blocked since main began (every thread the
  // runtime starts inherits the mask); from here this watcher takes them. A
  // signal that came before is taken at once: the run then starts nothing,
  // writes its (empty) files and summary, and exits 130.
  StopWatcher stops;
  if (!stops.ok())
    return exit_internal;
  // A file size limit makes a write fail (EFBIG), counted like a full disk,
  // instead of killing the process before it writes its summary.
  std::signal(SIGXFSZ, SIG_IGN);

  Config job;
  if (!load_job(options.job, job))
    return exit_usage;
  // The environment switches (GILKEEPER_TRACE, ...): a bad value is a usage
  // error, said before anything starts (the runtime applies them too).
  try {
    apply_environment(job);
  } catch (const ConfigError& e) {
    say(e.what());
    return exit_usage;
  }
  if (!apply_node_options(options.nodes, job.cluster))
    return exit_usage;
  // The logger: --log and --log-format win over the job's [log].
  apply_log_options(job, options.log_file, options.log_format);
  if (options.workers > 0) {
    if (options.workers > 1 && job.runtime.isolation == Isolation::thread) {
      say("--workers " + std::to_string(options.workers) + " needs isolation = \"process\" in " + options.job
          + " (thread isolation has one interpreter)");
      return exit_usage;
    }
    job.runtime.workers = options.workers;
  }
  std::optional<SyncPolicy> sync = parse_sync_policy(options.sync);
  if (!sync) {
    say("--sync " + options.sync + ": expected off, every:N or interval:DURATION");
    return exit_usage;
  }

  std::string errors_path = options.errors.empty() ? default_errors_path(options.output) : options.errors;
  if (same_files(options, errors_path))
    return exit_usage;

  ResumePoint done;
  if (options.resume) {
    if (options.input == "-" || options.output == "-") {
      say("--resume needs --input FILE and --output FILE: it reads the input and the interrupted run's files again");
      return exit_usage;
    }
    bool ordered = true;
    std::vector<std::string> stages;
    for (auto& s : job.stages) {
      ordered = ordered && s.ordered;
      stages.push_back(s.name);
    }
    std::string why;
    if (!find_resume_point(options.input, options.output, errors_path, ordered, stages, done, why)) {
      say("cannot resume: " + why);
      return exit_usage;
    }
    for (auto& note : done.notes)
      say("resume: " + note);
    say("resume: " + std::to_string(done.done.size()) + " records done (" + std::to_string(done.output.lines)
        + " in " + options.output + ", " + std::to_string(done.errors.lines) + " in " + errors_path
        + "); going on with the rest of " + options.input);
  }

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

  // Interrupted already: no runtime to start, nothing to run.
  std::unique_ptr<Runtime> rt;
  // Declared after the runtime: on every way out it lets go of the runtime
  // before the runtime stops.
  MetricsExport metrics;
  if (!open_metrics(options, metrics))
    return exit_usage;
  // Remote runtimes: every node answers and runs this version, or nothing
  // is run.
  std::vector<std::shared_ptr<RemoteRuntime>> nodes;
  if (!stops.stopped() && !job.cluster.nodes.empty() && !connect_nodes(job.cluster, nodes)) {
    say(options.job + ": a node cannot be used; nothing was run (see `gilkeeper check --nodes`)");
    return exit_usage;
  }
  if (!stops.stopped()) {
    // With --no-local the local runtime only carries the pipeline: one
    // interpreter in this process, no worker processes.
    Config local_job = job;
    if (!job.cluster.local) {
      local_job.runtime.isolation = Isolation::thread;
      local_job.runtime.workers = 1;
      local_job.runtime.spare = false;
    }
    rt = start_runtime(local_job);
    if (!rt)
      return exit_internal;
    // Results own stdout: Python's print() goes to stderr.
    if (auto redirected = rt->exec("import sys\nsys.stdout = sys.stderr\n"); !redirected) {
      say("cannot redirect Python's stdout: " + redirected.error().to_string());
      stop_runtime(rt, exit_internal);
      return exit_internal;
    }
    // A stage that cannot resolve would fail every record the same way,
    // here or on a node.
    bool resolved = stops.stopped() || !job.cluster.local || check_stages(*rt, job, stderr, false);
    for (auto& node : nodes)
      resolved = (stops.stopped() || check_stages_on(*node, job, stderr, false)) && resolved;
    if (!resolved) {
      say(options.job + ": a stage does not resolve; nothing was run (see `gilkeeper check`)");
      stop_runtime(rt, exit_usage);
      return exit_usage;
    }
  }
  if (rt)
    metrics.attach(*rt);
  auto leave = [&](int status) {
    metrics.finish(false);
    if (rt)
      stop_runtime(rt, status);
    return status;
  };

  LineFile output, errors;
  bool opened = options.resume
                    ? output.open_to_append(options.output, "output", done.output.keep_bytes, done.output.lines)
                          && errors.open_to_append(errors_path, "errors", done.errors.keep_bytes, done.errors.lines)
                    : output.open(options.output, "output") && errors.open(errors_path, "errors");
  // The summary is written whole at the end; here only whether it can be.
  if (opened && !options.summary_json.empty() && options.summary_json != "-") {
    int fd = ::open(options.summary_json.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
      say("cannot open the summary file " + options.summary_json + ": " + std::strerror(errno));
    else
      ::close(fd);
    opened = fd >= 0;
  }
  if (!opened)
    return leave(exit_usage);

  JobRun run(job, output, errors, *sync, stops, done);
  run.set_nodes(std::vector<std::shared_ptr<BatchTarget>>(nodes.begin(), nodes.end()));
  // The total is for the progress display: no second read of the input
  // when nothing shows it.
  bool progress_shown = options.progress == "always" || (options.progress == "auto" && ::isatty(2));
  if (progress_shown)
    run.set_total_lines(count_lines(options.input) - static_cast<std::int64_t>(done.done.size()));

  // Ctrl-C / SIGTERM, or a file that cannot be written: the watcher stops
  // the pipeline and wakes the reader out of a blocking read.
  stops.attach([&run] { run.interrupt(); });
  // kill -QUIT: what the runtime is doing, on stderr; the run goes on.
  Runtime* dumped = rt.get();
  stops.attach_dump([dumped] {
    std::string text = "gilkeeper: dump (SIGQUIT); the run goes on\n";
    text += dumped ? dumped->dump() : std::string("no runtime\n");
    std::fputs(text.c_str(), stderr);
    std::fflush(stderr);
  });
  bool read_ok = !rt || run.process(*rt, input, done.done, ProgressOptions{options.progress});
  stops.finish();
  bool interrupted = stops.signal() != 0;
  if (rt)
    run.set_restarts(rt->stats());
  // The run's last metrics, before the runtime stops.
  metrics.finish(true);
  if (!read_ok)
    say("reading the input " + options.input + " failed: " + std::strerror(errno));
  // The summary comes after the lines it counts are in the files (and
  // durable, unless --sync off).
  bool written = run.finish_files();
  for (auto& why : run.write_failures())
    say(why);
  if (!options.summary_json.empty())
    written = replace_file(options.summary_json, run.summary_json(interrupted).dump(2) + "\n", "summary") && written;
  run.print_summary(interrupted);

  int status = !written ? exit_internal
               : interrupted ? exit_interrupted
               : !read_ok ? exit_internal
               : run.any_failed() ? exit_some_failed
                                  : exit_ok;
  return leave(status);
}

int check_job(const std::string& path, const NodeOptions& node_options) {
  Config job;
  if (!load_job(path, job))
    return exit_usage;
  if (!apply_node_options(node_options, job.cluster))
    return exit_usage;
  // Each node: whether it answers, what it runs, and the stages there.
  bool ok = true, nodes_ok = true;
  if (!job.cluster.nodes.empty()) {
    std::vector<std::shared_ptr<RemoteRuntime>> nodes;
    nodes_ok = connect_nodes(job.cluster, nodes);
    for (auto& node : nodes) {
      auto info = node->info();
      std::string caps;
      for (auto& c : info.capabilities)
        caps += (caps.empty() ? "" : "; ") + c;
      std::printf("node %s: gilkeeper %s, Python %s, %s isolation, %llu worker(s), capabilities: %s\n",
                  node->name().c_str(), info.version.c_str(), info.python_version.c_str(), info.isolation.c_str(),
                  static_cast<unsigned long long>(info.workers), caps.empty() ? "unrestricted" : caps.c_str());
      ok = check_stages_on(*node, job, stdout, true) && ok;
    }
  }
  std::unique_ptr<Runtime> rt;
  if (job.cluster.local) {
    rt = start_runtime(job);
    if (!rt)
      return exit_internal;
    ok = check_stages(*rt, job, stdout, true) && ok;
  }
  std::fflush(stdout);
  if (ok && nodes_ok)
    std::printf("%s: ok (%zu %s%s)\n", path.c_str(), job.stages.size(), job.stages.size() == 1 ? "stage" : "stages",
                job.cluster.nodes.empty() ? ""
                                          : (", " + std::to_string(job.cluster.nodes.size()) + " node(s)").c_str());
  if (!nodes_ok)
    say(path + ": some nodes cannot be used");
  if (!ok)
    say(path + ": some stages do not resolve");
  ok = ok && nodes_ok;
  int status = ok ? exit_ok : exit_usage;
  if (rt)
    stop_runtime(rt, status);
  return status;
}

} // namespace gk::cli
