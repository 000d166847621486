#pragma once

// `gilkeeper run --metrics-file / --metrics-listen`: a run's metrics (the
// runtime's Prometheus exposition, Runtime::metrics()) rewritten into a
// file on a cadence, and served over HTTP at GET /metrics.

#include "gilkeeper/gilkeeper.hpp"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace gk::cli {

/// Where `--metrics-listen` listens.
struct ListenAddress {
  std::string host = "127.0.0.1";
  int port = 0;  ///< 0: any free port (said on stderr)
};

/// Parses `[ADDR:]PORT` (`9100`, `0.0.0.0:9100`, `localhost:0`,
/// `[::1]:9100`); a bare port listens on 127.0.0.1. nullopt for anything
/// else. Thread-safe.
std::optional<ListenAddress> parse_listen_address(const std::string& text);

/// What to export, and where.
struct MetricsExportOptions {
  /// Empty: no file.
  std::string file;
  /// How often the file is rewritten (above zero).
  std::chrono::nanoseconds interval = std::chrono::seconds(5);
  /// Unset: no HTTP server.
  std::optional<ListenAddress> listen;
};

/// Publishes a runtime's metrics while a run goes on. Its threads:
/// `gk-metrics` rewrites the file every interval (a file beside it, then a
/// rename over it, so a reader sees the old text or the new one, never a
/// torn one); `gk-metrics-http` serves GET /metrics one connection at a
/// time (1 s read and write timeouts; 503 while no runtime is attached).
/// open() is called once, first; the other members are thread-safe.
class MetricsExport {
public:
  MetricsExport();
  ~MetricsExport();
  MetricsExport(const MetricsExport&) = delete;
  MetricsExport& operator=(const MetricsExport&) = delete;

  /// Checks that the file's directory takes a new file and binds the
  /// address (then says where it serves on stderr), before anything runs.
  /// False, having said why on stderr, when either cannot be done.
  bool open(const MetricsExportOptions& options);

  /// From now on the metrics are `runtime`'s; starts the file's cadence.
  /// PRECONDITION: `runtime` outlives finish().
  void attach(Runtime& runtime);

  /// Ends the export: stops the cadence, writes the file once more when
  /// `final_write` (and a runtime is attached), lets go of the runtime,
  /// stops serving and joins both threads (a client still connected holds
  /// this up for at most its timeouts). Idempotent.
  void finish(bool final_write);

private:
  void end(bool final_write);
  void rewrite_every_interval();
  bool write_file(const std::string& text);

  MetricsExportOptions options_;
  std::mutex mutex_;  // guards runtime_, the cadence's stop, and the file
  std::condition_variable cv_;
  Runtime* runtime_ = nullptr;
  bool stopping_ = false;
  bool file_failed_ = false;  // said once; later failures stay quiet
  std::thread file_thread_;
  std::once_flag finish_once_;
  struct Server;
  std::unique_ptr<Server> server_;
};

} // namespace gk::cli
