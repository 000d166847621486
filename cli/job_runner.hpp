#pragma once

// The two job commands of the CLI: `gilkeeper run` and `gilkeeper check`.
// Both return the process exit status (see ExitStatus) and report on stderr;
// neither throws.

#include "cli/nodes.hpp"
#include "cli/sync_policy.hpp"

#include <string>

namespace gk::cli {

/// The exit statuses of the CLI (docs/cli.md).
enum ExitStatus : int {
  /// Every record succeeded (`run`), every stage resolves (`check`).
  exit_ok = 0,
  /// A bug, reading the input failed, a runtime that could not start, or
  /// some records could not be written (the summary's `not_written`).
  exit_internal = 1,
  /// A usage error, a bad job file, an input that cannot be opened, or a
  /// stage whose callable does not resolve. Nothing was processed.
  exit_usage = 2,
  /// The run finished but some records failed (see the errors file).
  exit_some_failed = 3,
  /// Interrupted by SIGINT or SIGTERM: records in flight finished or failed,
  /// the summary was written, every line read is in the output or errors.
  /// (A record that could not be written makes it exit_internal instead.)
  exit_interrupted = 130,
};

/// `gilkeeper run`'s arguments.
struct RunOptions {
  std::string job;
  /// "-" is stdin.
  std::string input = "-";
  /// "-" is stdout.
  std::string output = "-";
  /// Empty: `<output>.errors.jsonl`, or `./errors.jsonl` when output is stdout.
  std::string errors;
  /// Empty: no summary file.
  std::string summary_json;
  /// "auto" (a bar on a terminal), "always" (a bar on a terminal, plain
  /// lines otherwise), "never".
  std::string progress = "auto";
  /// Overrides `[runtime] workers` when > 0.
  int workers = 0;
  /// Go on from the output and errors files of an interrupted run.
  bool resume = false;
  /// When the output and errors are made durable (see SyncPolicy).
  std::string sync = kDefaultSync;
  /// `--log FILE` and `--log-format text|json`: win over the job's `[log]`.
  std::string log_file;
  std::string log_format;
  /// Empty: none. Rewritten with the runtime's metrics every
  /// `metrics_interval` and at the end of the run.
  std::string metrics_file;
  /// A duration (`5s`, `500ms`).
  std::string metrics_interval = "5s";
  /// Empty: none. `[ADDR:]PORT` to serve GET /metrics on.
  std::string metrics_listen;
  /// `--nodes`, `--no-local`, `--tls-*`: remote runtimes to share with.
  NodeOptions nodes;
};

/// How a run shows its progress on stderr.
struct ProgressOptions {
  std::string mode = "auto";
};

/// The errors file a run writes to when `--errors` is not given.
std::string default_errors_path(const std::string& output);

/// Runs a job over JSONL records. Single-threaded caller; starts (and shuts
/// down) one runtime, so only one may run per process.
/// PRECONDITION: the stop signals are blocked (block_stop_signals()) in
/// every thread of the process.
int run_job(const RunOptions& options);

/// Validates a job: the file parses, it has stages, and each stage's callable
/// imports and resolves, locally (unless --no-local) and on each node (with
/// --nodes or [cluster] nodes: which answer, their versions and
/// capabilities). Prints one line per stage on stdout.
int check_job(const std::string& job, const NodeOptions& nodes = {});

} // namespace gk::cli
