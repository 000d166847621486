#include "job_runner.hpp"

#include "json_value.hpp"
#include "latency.hpp"

#include "gilkeeper/gilkeeper.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>

namespace gk::cli {

namespace {

using steady = std::chrono::steady_clock;

void say(const std::string& message) {
  std::fprintf(stderr, "gilkeeper: %s\n", message.c_str());
}

// -- the job file --------------------------------------------------------------

// Loads a job and checks what the config layer does not: that it has stages
// and uses only what `run` supports. Prints the problem and returns false.
bool load_job(const std::string& path, Config& job) {
  try {
    job = load_config_file(path);
  } catch (const ConfigError& e) {
    say(e.what());
    return false;
  }
  if (job.stages.empty()) {
    say(path + ": a job needs at least one [[stage]]; this file has none");
    return false;
  }
  for (std::size_t i = 0; i < job.stages.size(); ++i) {
    auto& s = job.stages[i];
    if (s.batch_size != 1) {
      say(path + ": stage[" + std::to_string(i) + "] \"" + s.name + "\": batch_size = "
          + std::to_string(s.batch_size)
          + " is not supported yet (each call gets one record); remove it or set it to 1");
      return false;
    }
  }
  return true;
}

// Starts a runtime for a job; prints why it could not.
std::unique_ptr<Runtime> start_runtime(const Config& job) {
  try {
    return std::make_unique<Runtime>(job);
  } catch (const RuntimeStartError& e) {
    say("cannot start the Python runtime: " + e.error().to_string());
  } catch (const ConfigError& e) {
    say(e.what());
  }
  return nullptr;
}

std::string describe(const Error& e) {
  if (e.code == ErrorCode::python_exception && !e.type.empty())
    return e.type + ": " + e.message;
  return std::string(to_string(e.code)) + ": " + e.message;
}

// Imports a stage's module and resolves its callable, without calling it.
Error resolve_stage(Runtime& rt, const StageConfig& stage) {
  std::string module = stage.call.substr(0, stage.call.find(':'));
  if (auto imported = rt.import_module(module); !imported)
    return imported.error();
  RequestOptions as_ref;
  as_ref.want_ref = true;
  auto object = rt.getattr(stage.call, as_ref);
  if (!object)
    return object.error();
  List args;
  args.push_back(*object);
  auto callable = rt.call("builtins:callable", std::move(args));
  if (!callable)
    return callable.error();
  if (!callable->is_bool() || !callable->as_bool()) {
    std::string type = object->is_ref() ? object->as_ref().type_name() : "?";
    Error e(ErrorCode::bad_request, stage.call + " is not callable (its type is " + type + ")");
    e.where = stage.call;
    return e;
  }
  return {};
}

// Checks every stage; prints one line per stage (only the failures unless
// `print_ok`) on `out`. True when all resolve.
bool check_stages(Runtime& rt, const Config& job, std::FILE* out, bool print_ok) {
  bool all_ok = true;
  for (auto& stage : job.stages) {
    Error e = resolve_stage(rt, stage);
    std::string head = "stage \"" + stage.name + "\" (" + stage.call + "): ";
    if (e || print_ok)
      std::fprintf(out, "%s%s\n", head.c_str(), e ? describe(e).c_str() : "ok");
    all_ok = all_ok && !e;
  }
  return all_ok;
}

// -- files ---------------------------------------------------------------------

// A buffered output file (or stdout) that remembers write failures.
class LineFile {
public:
  ~LineFile() {
    if (file_ && owned_)
      std::fclose(file_);
  }

  // Opens for writing (truncating); "-" is stdout. Prints why it could not.
  bool open(const std::string& path, const char* what) {
    path_ = path;
    if (path == "-") {
      file_ = stdout;
      owned_ = false;
    } else {
      file_ = std::fopen(path.c_str(), "w");
      owned_ = true;
      if (!file_) {
        say("cannot open the " + std::string(what) + " file " + path + ": " + std::strerror(errno));
        return false;
      }
    }
    // stdio allocates (and keeps) the buffer: stdout outlives this object.
    std::setvbuf(file_, nullptr, _IOFBF, 1 << 16);
    return true;
  }

  void flush() { std::fflush(file_); }

  void write_line(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), file_);
    std::fputc('\n', file_);
    ++lines_;
  }

  // Flushes and closes; false (with a message) when any write failed.
  bool close(const char* what) {
    bool ok = std::fflush(file_) == 0 && !std::ferror(file_);
    int saved = errno;
    if (owned_)
      ok = std::fclose(file_) == 0 && ok;
    file_ = nullptr;
    if (!ok)
      say("writing the " + std::string(what) + " file " + path_ + " failed: " + std::strerror(saved));
    return ok;
  }

  const std::string& path() const noexcept { return path_; }
  std::uint64_t lines() const noexcept { return lines_; }

private:
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  std::string path_;
  std::uint64_t lines_ = 0;
};

bool is_blank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// True (with a message) when two of the files a run reads and writes are the
// same file: writing would destroy the input or interleave two outputs.
bool same_files(const RunOptions& options, const std::string& errors_path) {
  std::vector<std::pair<std::string, std::string>> files = {
      {"--input", options.input}, {"--output", options.output}, {"--errors", errors_path},
      {"--summary-json", options.summary_json}};
  for (std::size_t i = 0; i < files.size(); ++i) {
    for (std::size_t j = i + 1; j < files.size(); ++j) {
      auto& [name_a, a] = files[i];
      auto& [name_b, b] = files[j];
      if (a.empty() || b.empty() || a == "-" || b == "-")
        continue;
      std::error_code ec_a, ec_b;
      auto pa = std::filesystem::weakly_canonical(a, ec_a);
      auto pb = std::filesystem::weakly_canonical(b, ec_b);
      if (!ec_a && !ec_b && pa == pb) {
        say(name_a + " and " + name_b + " are the same file: " + a);
        return true;
      }
    }
  }
  return false;
}

std::string absolute(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

// -- the run -------------------------------------------------------------------

// Errors that would only happen again, or a runtime that takes no work.
bool retryable(ErrorCode code) {
  switch (code) {
    case ErrorCode::bad_request:
    case ErrorCode::capability_denied:
    case ErrorCode::conversion:
    case ErrorCode::runtime_stopped:
    case ErrorCode::wedged:
      return false;
    default:
      return true;
  }
}

struct StageStats {
  std::string name;
  LatencyHistogram latency;
  // How long a call that expired in the queue (it never ran) may be sent
  // again; zero: never.
  std::chrono::nanoseconds resend_window{0};
};

// A call that expired in the queue never ran: it waited behind a call stuck
// past its own deadline. Such a call is sent again, with a fresh deadline,
// until the runtime has dealt with the stuck one: killed it (process
// isolation) or declared itself wedged (thread isolation), which happens at
// most `[timeouts].grace` after we were told of the stuck call's deadline.
// The window adds one more timeout so that one attempt starts after that.
// A timeout under a millisecond (or "none") gets no resends: with it a call
// can expire in the queue without anything being stuck.
std::chrono::nanoseconds resend_window(const Config& job, const StageConfig& stage) {
  Timeout t = stage.timeout ? *stage.timeout : resolve_timeout(job.timeouts, "call", stage.call);
  if (t.infinite || t.value < std::chrono::milliseconds(1))
    return std::chrono::nanoseconds(0);
  return job.timeouts.grace + t.value;
}

class JobRun {
public:
  JobRun(Runtime& rt, const Config& job, LineFile& output, LineFile& errors)
    : rt_(rt), job_(job), output_(output), errors_(errors) {
    for (auto& s : job.stages)
      stages_.push_back(StageStats{s.name, {}, resend_window(job, s)});
  }

  // Reads every line of `input` and sends each record through the stages.
  // False when reading failed.
  bool process(std::FILE* input) {
    started_ = steady::now();
    // From a pipe or a terminal, records may trickle in: hand the results on
    // before waiting for more input, not only when a buffer fills.
    struct stat st {};
    bool trickles = ::fstat(::fileno(input), &st) != 0 || !S_ISREG(st.st_mode);
    char* buffer = nullptr;
    std::size_t capacity = 0;
    ssize_t n;
    std::uint64_t line = 0;
    for (;;) {
      if (trickles && input_buffer_empty(input)) {
        output_.flush();
        errors_.flush();
      }
      if ((n = ::getline(&buffer, &capacity, input)) == -1)
        break;
      ++line;
      std::string_view text(buffer, static_cast<std::size_t>(n));
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.remove_suffix(1);
      if (is_blank(text))
        continue;
      ++records_;
      process_record(line, text);
    }
    bool read_ok = !std::ferror(input);
    std::free(buffer);
    elapsed_ = steady::now() - started_;
    return read_ok;
  }

  bool any_failed() const noexcept { return failed_ > 0; }

  /// Interpreters the runtime replaced during the run (process isolation).
  void set_workers_restarted(std::uint64_t n) noexcept { workers_restarted_ = n; }

  // The human summary (stderr).
  void print_summary() const {
    double secs = elapsed_seconds();
    double rate = secs > 0 ? static_cast<double>(records_) / secs : 0.0;
    std::fprintf(stderr, "gilkeeper: %llu %s in %.3f s (%.0f records/s): %llu ok, %llu failed\n",
                 ull(records_), records_ == 1 ? "record" : "records", secs, rate, ull(ok_), ull(failed_));
    if (!by_code_.empty()) {
      std::string codes;
      for (auto& [code, n] : by_code_)
        codes += (codes.empty() ? "" : ", ") + code + " " + std::to_string(n);
      std::fprintf(stderr, "  failed by code: %s\n", codes.c_str());
    }
    for (auto& s : stages_)
      std::fprintf(stderr, "  stage \"%s\": %llu calls, p50 %.3f ms, p99 %.3f ms\n", s.name.c_str(),
                   ull(s.latency.count()), s.latency.percentile_ms(0.50),
                   s.latency.percentile_ms(0.99));
    std::fprintf(stderr, "  deadline misses: queued %llu, soft %llu, hard %llu\n", ull(missed_[1]),
                 ull(missed_[2]), ull(missed_[3]));
    if (workers_restarted_ > 0)
      std::fprintf(stderr, "  workers restarted: %llu\n", ull(workers_restarted_));
    std::fprintf(stderr, "  errors: %s (%llu %s)\n", absolute(errors_.path()).c_str(),
                 ull(errors_.lines()), errors_.lines() == 1 ? "line" : "lines");
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
    Json stages = Json::object();
    for (auto& s : stages_) {
      Json one = Json::object();
      one["calls"] = s.latency.count();
      one["p50_ms"] = s.latency.percentile_ms(0.50);
      one["p99_ms"] = s.latency.percentile_ms(0.99);
      stages[s.name] = std::move(one);
    }
    j["stages"] = std::move(stages);
    return j;
  }

private:
  // True when the next read of `input` has to wait for the OS (glibc).
  static bool input_buffer_empty(std::FILE* input) {
    return input->_IO_read_ptr >= input->_IO_read_end;
  }

  static unsigned long long ull(std::uint64_t n) { return static_cast<unsigned long long>(n); }

  double elapsed_seconds() const { return std::chrono::duration<double>(elapsed_).count(); }

  void process_record(std::uint64_t line, std::string_view text) {
    Value value;
    if (Error e = parse_record(text, value)) {
      fail(line, text, e, "", false);
      return;
    }
    for (std::size_t i = 0; i < job_.stages.size(); ++i) {
      auto result = call_stage(i, std::move(value));
      if (!result) {
        fail(line, text, result.error(), job_.stages[i].name, true);
        return;
      }
      value = std::move(*result);
    }
    Json json;
    if (Error e = value_to_json(value, json)) {
      fail(line, text, e, job_.stages.back().name, true);
      return;
    }
    Json out = Json::object();
    out["line"] = line;
    out["value"] = std::move(json);
    output_.write_line(dump_line(out));
    ++ok_;
  }

  // One call of stage `index` with the record's current value, retried as
  // the stage allows, and sent again when it expired in the queue (see
  // resend_window). The runtime applies the stage's timeout to each call.
  Expected<Value> call_stage(std::size_t index, Value value) {
    const StageConfig& stage = job_.stages[index];
    StageStats& stats = stages_[index];
    int retries_left = stage.retries;
    bool may_send_again = retries_left > 0 || stats.resend_window.count() > 0;
    auto first_sent = steady::now();
    for (;;) {
      List args;
      args.push_back(may_send_again ? value : std::move(value));
      CallRequest request(stage.call, std::move(args));
      auto t0 = steady::now();
      auto result = rt_.call(std::move(request), stage.timeout);
      auto t1 = steady::now();
      stats.latency.add(t1 - t0);
      if (result)
        return result;
      const Error& e = result.error();
      if (e.code == ErrorCode::deadline_exceeded)
        ++missed_[static_cast<std::size_t>(e.phase) & 3];
      if (e.code == ErrorCode::deadline_exceeded && e.phase == DeadlinePhase::queued
          && t1 - first_sent < stats.resend_window)
        continue;
      if (retries_left == 0 || !retryable(e.code))
        return result;
      --retries_left;
      may_send_again = retries_left > 0 || stats.resend_window.count() > 0;
      first_sent = steady::now();
    }
  }

  // Writes a failed record to the errors file; `parsed` when its text is JSON.
  void fail(std::uint64_t line, std::string_view text, const Error& e, const std::string& stage,
            bool parsed) {
    Json error = Json::object();
    error["code"] = to_string(e.code);
    error["phase"] = to_string(e.phase);
    error["stage"] = stage;
    error["type"] = e.type;
    error["message"] = e.message;
    error["traceback"] = e.traceback;
    // Assembled by hand so that the input appears verbatim.
    errors_.write_line("{\"line\":" + std::to_string(line)
                       + ",\"input\":" + input_json_text(text, parsed)
                       + ",\"error\":" + dump_line(error) + "}");
    ++failed_;
    ++by_code_[to_string(e.code)];
  }

  Runtime& rt_;
  const Config& job_;
  LineFile& output_;
  LineFile& errors_;
  std::vector<StageStats> stages_;
  std::uint64_t records_ = 0;
  std::uint64_t ok_ = 0;
  std::uint64_t failed_ = 0;
  std::map<std::string, std::uint64_t> by_code_;
  // Indexed by DeadlinePhase: none, queued, soft, hard.
  std::uint64_t missed_[4] = {0, 0, 0, 0};
  std::uint64_t workers_restarted_ = 0;
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
  bool read_ok = run.process(input);
  run.set_workers_restarted(rt->stats().restarts);
  if (!read_ok)
    say("reading the input " + options.input + " failed: " + std::strerror(errno));
  bool written = output.close("output") & errors.close("errors");
  if (!options.summary_json.empty()) {
    summary.write_line(run.summary_json().dump(2));
    written = summary.close("summary") && written;
  }
  run.print_summary();

  int status = !read_ok || !written ? exit_internal : run.any_failed() ? exit_some_failed : exit_ok;
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
