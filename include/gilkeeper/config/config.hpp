#pragma once

/// The validated configuration of a gilkeeper runtime or job.
///
/// `load_config_file` / `parse_config` turn TOML into these structs, checking
/// every key: an unknown key, a wrong type or a bad value is a `ConfigError`
/// naming the file, line, column and key, and what was expected (with a
/// suggestion when a key looks misspelt). Every key is documented in
/// `docs/config.md`.
///
/// This layer knows nothing of CAF or Python.

#include "gilkeeper/config/duration.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gk {

/// Where the interpreter lives.
enum class Isolation {
  /// In the host process, on the runtime's own thread.
  thread,
  /// In child processes, one interpreter each.
  process,
};

/// `[python]`: which interpreter and where its modules come from.
struct PythonConfig {
  /// Directories prepended to `sys.path`. Relative entries in a file are
  /// resolved against the directory of that file (absolute after loading).
  std::vector<std::string> path;
  /// The real Python executable, used by `multiprocessing` (an embedded
  /// interpreter's `sys.executable` is the host binary).
  std::string executable = "/usr/bin/python3";
};

/// Per-child resource limits (`[runtime.limits]`), process isolation only.
/// Unset means "inherit".
struct LimitsConfig {
  std::optional<std::uint64_t> address_space;  ///< bytes (RLIMIT_AS), e.g. "2GiB"
  std::optional<std::uint64_t> cpu_seconds;    ///< RLIMIT_CPU
  std::optional<std::uint64_t> open_files;     ///< RLIMIT_NOFILE
  std::optional<std::uint64_t> processes;      ///< RLIMIT_NPROC
  bool core_dumps = false;                     ///< RLIMIT_CORE = 0 unless true
};

/// `[runtime]`: the shape of the runtime.
struct RuntimeConfig {
  Isolation isolation = Isolation::thread;
  /// Number of interpreters (process isolation); must be 1 in thread isolation.
  int workers = 1;
  /// Threads of the actor scheduler (CAF `scheduler.max-threads`).
  int scheduler_threads = 2;
  /// The real-time signal offset used to interrupt running Python code:
  /// the signal is `SIGRTMIN + interrupt_signal`. nullopt means `"none"`
  /// (no soft interrupt; deadlines still reach the caller on time).
  /// In the file: an integer offset (default 2) or `"none"`.
  std::optional<int> interrupt_signal = 2;
  /// Keep one child started ahead (process isolation).
  bool spare = true;
  /// Replace a child after this many calls (0 = never).
  std::uint64_t max_calls = 0;
  /// Replace a child whose RSS exceeds this many bytes (0 = never). In the
  /// file: an integer number of bytes or a string like `"512MiB"`, `"2GB"`.
  std::uint64_t max_memory = 0;
  /// How long shutdown waits for the interpreter (and Python threads) to end.
  std::chrono::nanoseconds shutdown_grace = std::chrono::seconds(5);
  /// The most requests waiting in the runtime's queue (not counting those
  /// whose callers were already answered); one more is refused at once with
  /// `overloaded`.
  std::uint64_t max_queued = 100000;
  /// The crash breaker (process isolation). A call (its target and
  /// arguments) that crashed its worker this many times, run alone, is
  /// quarantined: its repeats fail with `worker_crashed` without running
  /// (0 = never quarantine).
  int quarantine_after = 2;
  /// How long a quarantine lasts, from the call's last crash.
  std::chrono::nanoseconds quarantine_for = std::chrono::minutes(10);
  /// How many calls that crashed the breaker remembers (the least recently
  /// crashed are forgotten first).
  std::uint64_t quarantine_size = 1024;
  /// This many failed starts of worker processes within `crash_window` make
  /// the runtime degraded: it refuses every request for `degraded_for`.
  /// Crashes while a call runs never count.
  int degraded_after = 5;
  std::chrono::nanoseconds crash_window = std::chrono::seconds(10);
  std::chrono::nanoseconds degraded_for = std::chrono::seconds(10);
  LimitsConfig limits;
};

/// `[timeouts]`: default deadlines per message type.
struct TimeoutsConfig {
  /// `[timeouts].default`: used when nothing more specific is set.
  Timeout default_timeout = Timeout::after(std::chrono::seconds(30));
  /// `[timeouts].<type>` for type in import, call, eval, exec, getattr, batch.
  std::map<std::string, Timeout> per_type;
  /// `[timeouts].grace`: how long after a deadline a call may keep running
  /// before the runtime declares itself wedged (thread) or kills the child
  /// (process).
  std::chrono::nanoseconds grace = std::chrono::seconds(2);
  /// `[timeouts].interrupted_reply_wait`: how long past its deadline a
  /// caller waiting on a running call (`Runtime::call` and friends, an
  /// actor's request) waits for the call's own interrupted error, which
  /// carries the Python type and the traceback of where the code was,
  /// before it is told `deadline_exceeded` without them (native code that
  /// holds the GIL never answers). The bound on how late such a caller is
  /// told.
  std::chrono::nanoseconds interrupted_reply_wait = std::chrono::microseconds(1500);
  /// `[timeouts.targets]`: keyed by `"module:function"`.
  std::map<std::string, Timeout> targets;
};

/// The configured timeout of one request, most specific first: the
/// `[timeouts.targets]` entry for `target` (a `"module:function"`, when not
/// empty and listed), then `[timeouts].<message_type>`, then
/// `[timeouts].default`. A deadline passed with the request itself, and a
/// job stage's `timeout`, come before all of these; applying them is the
/// caller's job. Thread-safe (reads only).
Timeout resolve_timeout(const TimeoutsConfig& timeouts, std::string_view message_type,
                        std::string_view target = {});

/// What `native_extensions` allows.
enum class NativePolicy { allow, deny, allowlist };

/// What `network` allows.
enum class NetworkPolicy { deny, loopback, allow };

/// `[capabilities]`: what Python code may do.
struct CapabilitiesConfig {
  /// True when the file has a `[capabilities]` section at all.
  bool configured = false;
  /// `"strict"` or empty.
  std::string profile;
  std::vector<std::string> allow_modules;
  std::vector<std::string> deny_modules;
  NativePolicy native_extensions = NativePolicy::allow;
  std::vector<std::string> allow_native;
  bool fork = false;        ///< `fork = "allow"` sets true; default "deny"
  bool subprocess = true;   ///< `subprocess = "allow" | "deny"`
  NetworkPolicy network = NetworkPolicy::allow;
  /// Directories where files may be opened for writing. Empty and
  /// `write_paths_set == false` means unrestricted.
  std::vector<std::string> write_paths;
  bool write_paths_set = false;
  /// Host functions (`Runtime::expose`) Python code may call, by name.
  /// `allow_host` empty: every one (unless denied); `"*"` in `deny_host`
  /// denies them all. A denied call raises gilkeeper.PermissionDenied.
  std::vector<std::string> allow_host;
  std::vector<std::string> deny_host;
};

/// Thresholds by request, most specific first (as timeouts are): the
/// `targets` entry for a `"module:function"`, then the message type's, then
/// `default`. `Timeout::none()` switches a threshold off.
struct Thresholds {
  Timeout default_threshold = Timeout::none();
  /// Keyed by message type: import, call, eval, exec, getattr, batch.
  std::map<std::string, Timeout> per_type;
  /// Keyed by `"module:function"`.
  std::map<std::string, Timeout> targets;
};

/// The threshold of one request (see Thresholds). Thread-safe (reads only).
Timeout resolve_threshold(const Thresholds& thresholds, std::string_view message_type,
                          std::string_view target = {});

/// `[monitoring]`: alerts that are on by default (docs/observability.md).
struct MonitoringConfig {
  /// `slow_call`: a request that runs longer is logged (event `slow_call`)
  /// with its Python stack, taken while it still runs, and counted per
  /// target. In the file a duration (the default for every request) or a
  /// table like `[timeouts]` (`default`, per type, `targets`).
  Thresholds slow_call{Timeout::after(std::chrono::seconds(10)), {}, {}};
  /// `memory_threshold`: RSS of an interpreter's process (the host in
  /// thread isolation, each worker in process isolation) above which an
  /// alert is logged (event `memory_threshold`), once per crossing. 0 = off.
  std::uint64_t memory_threshold = 0;
  /// `interval`: how often memory is sampled.
  std::chrono::nanoseconds interval = std::chrono::seconds(1);
};

/// `[debug.gil]`: the interpreter's lock, i.e. which request holds the
/// interpreter and for how long.
struct DebugGilConfig {
  /// `trace`: one event (`gil_trace`, level debug) per request as it takes
  /// and leaves the interpreter, with its queue and hold times.
  bool trace = false;
  /// `timeout`: a request holding the interpreter longer is logged (event
  /// `gil_timeout`, with its stack). nullopt = off.
  std::optional<std::chrono::nanoseconds> timeout;
  /// `detect_deadlock`: a blocking call from where it can never be served
  /// (the interpreter's own thread, a worker actor's handler, an actor on
  /// the runtime's own scheduler) fails at once with `deadlock` instead of
  /// hanging.
  bool detect_deadlock = true;
};

/// `[debug.memory]`: Python's allocations (tracemalloc).
struct DebugMemoryConfig {
  /// `track`: tracemalloc on (its cost: allocations get slower); alerts on
  /// memory then name the top allocation sites.
  bool track = false;
  /// `detect_leaks`: compare tracemalloc snapshots (and live Refs) every
  /// `check_interval`; growth in consecutive intervals is reported (event
  /// `leak_suspected`) with the sites that grew. Implies `track`.
  bool detect_leaks = false;
  std::chrono::nanoseconds check_interval = std::chrono::seconds(10);
  /// How many allocation sites a report names.
  int top = 10;
};

/// `[debug]`.
struct DebugConfig {
  DebugGilConfig gil;
  DebugMemoryConfig memory;
  /// `trace_calls`: one event (`call_trace`, level debug) per request when
  /// it ends: label, target, outcome, queue and run times.
  bool trace_calls = false;
};

/// Log levels, least severe first.
enum class LogLevel { trace, debug, info, warn, error, off };

/// How log events are written.
enum class LogFormat { text, json };

/// `[log]`: where this process's log events go (one logger per process:
/// the last runtime configured with `[log]` sets it).
struct LogConfig {
  /// True when the file has a `[log]` section.
  bool configured = false;
  LogLevel level = LogLevel::info;
  LogFormat format = LogFormat::text;
  /// Append to this file; empty = standard error.
  std::string file;
};

/// `[cluster]`: the remote runtimes a job's Python stages share their
/// records with (`gilkeeper run`; `--nodes` and the `--tls-*` options win).
/// See docs/distributed.md.
struct ClusterConfig {
  /// `"host:port"` of each `gilkeeper serve`.
  std::vector<std::string> nodes;
  /// Also run the stages on the local runtime (`--no-local` turns it off).
  bool local = true;
  /// Batches each node may hold at once.
  int credit = 4;
  /// Times a record lost with its node is sent again before it fails with
  /// `node_lost` (0: never).
  int node_retries = 3;
  /// How often each node is asked whether it is alive; it is lost after
  /// four unanswered.
  std::chrono::nanoseconds heartbeat = std::chrono::milliseconds(500);
  /// Mutual TLS: this client's certificate and key, and the nodes' CA.
  std::string tls_cert, tls_key, tls_ca;
};

/// One `[[stage]]` of a job.
struct StageConfig {
  std::string name;
  /// `"module:qualname"`.
  std::string call;
  /// The stage's timeout; nullopt = fall back to the runtime's rules.
  std::optional<Timeout> timeout;
  /// Records this stage works on at once; 0 (unset): automatic, one per
  /// worker process in process isolation, else 1.
  int parallelism = 0;
  int retries = 0;
  bool ordered = true;
  /// The most records sent together; 0 (unset): automatic.
  int batch_size = 0;
};

/// A complete configuration (a runtime config or a job file).
/// Thread-safe to read concurrently; a plain value.
struct Config {
  /// The file it came from ("" when built in code or parsed from a string
  /// without a name).
  std::string source;
  PythonConfig python;
  RuntimeConfig runtime;
  TimeoutsConfig timeouts;
  CapabilitiesConfig capabilities;
  MonitoringConfig monitoring;
  DebugConfig debug;
  LogConfig log;
  ClusterConfig cluster;
  std::vector<StageConfig> stages;
};

/// Applies the environment switches to `config` (docs/observability.md):
/// `GILKEEPER_TRACE` (a comma-separated list of `gil`, `calls`, `memory`),
/// `GILKEEPER_LOG_LEVEL` (`trace` ... `off`) and `GILKEEPER_GIL_TIMEOUT` (a
/// duration). Where both set something, the environment wins: it is how an
/// operator turns tracing on without editing a file. An unknown value is a
/// ConfigError naming the variable. `Runtime` and the CLI apply it.
void apply_environment(Config& config);

/// A configuration that could not be accepted. `what()` reads
/// `file:line:column: key: message` (e.g. `job.toml:4:11: timeouts.call:
/// expected a duration like "250ms", "5s", "2m" or "none", got "5 sec"`).
class ConfigError : public std::runtime_error {
public:
  ConfigError(std::string file, int line, int column, std::string key,
              std::string message);

  const std::string& file() const noexcept { return file_; }
  int line() const noexcept { return line_; }
  int column() const noexcept { return column_; }
  /// Dotted key path, e.g. `timeouts.targets."mod:fn"` or `stage[1].call`.
  const std::string& key() const noexcept { return key_; }
  /// The message without the position prefix.
  const std::string& message() const noexcept { return message_; }

private:
  std::string file_;
  int line_;
  int column_;
  std::string key_;
  std::string message_;
};

/// Parses TOML text. `source_name` is used in error messages and as the
/// base directory for relative `[python] path` entries (its directory).
/// Throws ConfigError. Thread-safe.
Config parse_config(const std::string& toml_text,
                    const std::string& source_name = "<string>");

/// Reads and parses a file. Throws ConfigError (also when it cannot be read).
/// Thread-safe.
Config load_config_file(const std::string& path);

} // namespace gk
