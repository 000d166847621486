// The Prometheus text exposition (format 0.0.4) of a runtime's Stats. Names
// follow Prometheus' conventions: base units (seconds, bytes), `_total` on
// counters, a HELP and a TYPE line per family. docs/metrics.md lists them.

#include "runtime/detail/metrics.hpp"

#include <charconv>
#include <cmath>
#include <map>
#include <string_view>
#include <utility>

namespace gk::detail {

namespace {

// The causes of a worker's replacement, always exposed (0 when none), so
// that a rate over them exists from the first scrape.
constexpr const char* kRestartCauses[] = {"crashed", "hard_deadline", "max_calls", "max_memory", "failed_start"};

// The shortest text that reads back as `v`, written as Prometheus' own
// clients write it (Go's 'g', Python's repr): plain from 1e-4 to 1e16,
// else with an exponent. So a bucket's bound reads `le="0.0001"`, as in
// other exporters, and queries that name it match.
std::string format_double(double v) {
  if (std::isnan(v))
    return "NaN";
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  double magnitude = std::fabs(v);
  auto format = magnitude == 0 || (magnitude >= 1e-4 && magnitude < 1e16) ? std::chars_format::fixed
                                                                          : std::chars_format::scientific;
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v, format);
  if (ec != std::errc())
    return "NaN";
  return std::string(buffer, end);
}

std::string escape_help(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// One label set: `{a="x",b="y"}`, or nothing when empty.
using Labels = std::initializer_list<std::pair<const char*, std::string_view>>;

class Exposition {
public:
  void family(const char* name, const char* type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += escape_help(help);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(std::string_view name, Labels labels, std::string_view value) {
    out_ += name;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (auto& [label, v] : labels) {
        if (!first)
          out_ += ',';
        first = false;
        out_ += label;
        out_ += "=\"";
        out_ += escape_label_value(std::string(v));
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, Labels labels, std::uint64_t value) {
    sample(name, labels, std::to_string(value));
  }

  // The samples of one histogram series: cumulative buckets, +Inf, sum, count.
  void histogram(const std::string& name, const char* label, std::string_view label_value,
                 const LatencyBuckets& h) {
    std::string bucket = name + "_bucket";
    for (std::size_t i = 0; i < h.le_seconds.size() && i < h.cumulative.size(); ++i) {
      std::string le = format_double(h.le_seconds[i]);
      sample(bucket, {{label, label_value}, {"le", le}}, h.cumulative[i]);
    }
    sample(bucket, {{label, label_value}, {"le", "+Inf"}}, h.count);
    sample(name + "_sum", {{label, label_value}}, format_double(h.sum_seconds));
    sample(name + "_count", {{label, label_value}}, h.count);
  }

  std::string take() { return std::move(out_); }

private:
  std::string out_;
};

} // namespace

std::string escape_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string metrics_text(const Stats& stats, const std::string& version) {
  Exposition x;

  x.family("gilkeeper_requests_total", "counter",
           "Replies, by message type, target and outcome (ok, or the error code); each call of a batch counts "
           "on its own, under its own target.");
  for (auto& t : stats.targets)
    for (auto& [outcome, n] : t.outcomes)
      x.sample("gilkeeper_requests_total", {{"type", t.type}, {"target", t.target}, {"outcome", outcome}}, n);

  x.family("gilkeeper_requests_submitted_total", "counter",
           "Requests through the runtime's front door, by message type (a batch counts once).");
  for (auto& t : stats.types)
    x.sample("gilkeeper_requests_submitted_total", {{"type", t.type}}, t.submitted);

  x.family("gilkeeper_executor_requests_total", "counter",
           "Requests that reached the executor, by message type (a batch counts once).");
  for (auto& t : stats.types)
    x.sample("gilkeeper_executor_requests_total", {{"type", t.type}}, t.calls);

  x.family("gilkeeper_request_errors_total", "counter",
           "Requests whose reply was an error, by message type (a batch counts once, when its reply as a whole "
           "is an error).");
  for (auto& t : stats.types)
    x.sample("gilkeeper_request_errors_total", {{"type", t.type}}, t.errors);

  x.family("gilkeeper_deadline_misses_total", "counter",
           "Deadlines missed, by message type and phase: queued (it never ran), soft (it was running), hard "
           "(its worker process was killed); each call of a batch counts on its own.");
  for (auto& t : stats.types) {
    x.sample("gilkeeper_deadline_misses_total", {{"type", t.type}, {"phase", "queued"}}, t.missed_queued);
    x.sample("gilkeeper_deadline_misses_total", {{"type", t.type}, {"phase", "soft"}}, t.missed_soft);
    x.sample("gilkeeper_deadline_misses_total", {{"type", t.type}, {"phase", "hard"}}, t.missed_hard);
  }

  x.family("gilkeeper_request_seconds", "histogram",
           "Time a request ran (a batch: the whole batch), by message type. Bucket counts come from 2%-wide "
           "buckets: a time within 2% of a bound may count on either side of it.");
  for (auto& t : stats.types)
    x.histogram("gilkeeper_request_seconds", "type", t.type, t.run_histogram);

  x.family("gilkeeper_request_queue_seconds", "histogram",
           "Time from a request's submission to its start, by message type (same buckets as "
           "gilkeeper_request_seconds).");
  for (auto& t : stats.types)
    x.histogram("gilkeeper_request_queue_seconds", "type", t.type, t.queue_histogram);

  x.family("gilkeeper_slow_calls_total", "counter", "Calls that ran past the slow-call threshold, by target.");
  std::map<std::string_view, std::uint64_t> slow_by_target;
  for (auto& t : stats.targets)
    if (t.slow > 0)
      slow_by_target[t.target] += t.slow;
  for (auto& [target, n] : slow_by_target)
    x.sample("gilkeeper_slow_calls_total", {{"target", target}}, n);

  x.family("gilkeeper_worker_restarts_total", "counter",
           "Interpreters replaced (process isolation), by cause: crashed, hard_deadline, max_calls, max_memory, "
           "failed_start.");
  std::map<std::string_view, std::uint64_t> restarts;
  for (const char* cause : kRestartCauses)
    restarts[cause] = 0;
  for (auto& [cause, n] : stats.restarts_by_cause)
    restarts[cause] += n;
  for (auto& [cause, n] : restarts)
    x.sample("gilkeeper_worker_restarts_total", {{"cause", cause}}, n);

  x.family("gilkeeper_wedges_total", "counter",
           "Times the runtime became wedged (a call stuck in native code past its deadline and grace period; "
           "thread isolation).");
  x.sample("gilkeeper_wedges_total", {}, stats.wedged_count);

  x.family("gilkeeper_capability_denials_total", "counter",
           "Actions the [capabilities] rules refused (in every worker process, gone ones included).");
  x.sample("gilkeeper_capability_denials_total", {}, stats.capability_denials);

  x.family("gilkeeper_queued_requests", "gauge", "Requests waiting in the runtime's queue now.");
  x.sample("gilkeeper_queued_requests", {}, stats.queued);

  x.family("gilkeeper_live_refs", "gauge", "Handles (Refs) to Python objects alive now.");
  x.sample("gilkeeper_live_refs", {}, stats.live_refs);

  x.family("gilkeeper_workers", "gauge", "Interpreters serving requests now.");
  x.sample("gilkeeper_workers", {}, stats.workers);

  x.family("gilkeeper_wedged", "gauge", "1 while the runtime is wedged, else 0.");
  x.sample("gilkeeper_wedged", {}, stats.wedged ? 1 : 0);

  x.family("gilkeeper_resident_memory_bytes", "gauge",
           "Resident memory of the interpreters' processes (thread isolation: the host process; process "
           "isolation: the worker processes together).");
  x.sample("gilkeeper_resident_memory_bytes", {}, stats.rss_bytes);

  x.family("gilkeeper_gil_enabled", "gauge", "1 when the interpreter has a GIL, 0 on a free-threaded build with it off.");
  x.sample("gilkeeper_gil_enabled", {}, stats.gil_enabled ? 1 : 0);

  x.family("gilkeeper_free_threaded_build", "gauge", "1 when the interpreter is a free-threaded build (3.13t).");
  x.sample("gilkeeper_free_threaded_build", {}, stats.free_threaded ? 1 : 0);

  x.family("gilkeeper_info", "gauge", "Always 1; the labels name gilkeeper's version, Python's and the isolation.");
  x.sample("gilkeeper_info",
           {{"version", version}, {"python_version", stats.python_version}, {"isolation", stats.isolation}}, 1);

  return x.take();
}

} // namespace gk::detail
