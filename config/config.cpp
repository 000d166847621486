#include "gilkeeper/config/config.hpp"

#include "config/detail/toml_reader.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <system_error>

namespace gk {
namespace {

using detail::in_quotes;
using detail::TomlReader;

std::string format_what(const std::string& file, int line, int column, const std::string& key,
                        const std::string& message) {
  std::string out = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

/// The directory that relative paths in `source_name` are resolved against:
/// the file's own directory, made absolute (the working directory when the
/// name has no directory part).
std::filesystem::path base_directory(const std::string& source_name) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(source_name).parent_path();
  std::filesystem::path base =
      parent.empty() ? std::filesystem::current_path(ec) : std::filesystem::absolute(parent, ec);
  if (ec) base = parent;
  return base.lexically_normal();
}

/// The string form of a size: `<number><unit>` with unit B, KB, MB, GB
/// (powers of 1000) or KiB, MiB, GiB (powers of 1024). Fractions of a byte are
/// dropped; nullopt for anything else or past 2^63-1 bytes.
std::optional<std::uint64_t> parse_size(std::string_view text) {
  static constexpr std::pair<std::string_view, std::uint64_t> units[] = {
      {"B", 1},
      {"KB", 1000ull},
      {"MB", 1000ull * 1000},
      {"GB", 1000ull * 1000 * 1000},
      {"KiB", 1ull << 10},
      {"MiB", 1ull << 20},
      {"GiB", 1ull << 30},
  };
  std::size_t pos = 0;
  std::uint64_t whole = 0;
  constexpr std::uint64_t max = std::numeric_limits<std::int64_t>::max();
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    const std::uint64_t digit = static_cast<std::uint64_t>(text[pos++] - '0');
    if (whole > (max - digit) / 10) return std::nullopt;
    whole = whole * 10 + digit;
  }
  if (pos == 0) return std::nullopt;
  long double fraction = 0;
  if (pos < text.size() && text[pos] == '.') {
    long double place = 1;
    const std::size_t fraction_begin = ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      place /= 10;
      fraction += (text[pos++] - '0') * place;
    }
    if (pos == fraction_begin) return std::nullopt;
  }
  const std::string_view suffix = text.substr(pos);
  for (const auto& [name, multiplier] : units) {
    if (name != suffix) continue;
    if (whole > max / multiplier) return std::nullopt;
    const auto extra = static_cast<std::uint64_t>(fraction * static_cast<long double>(multiplier));
    if (whole * multiplier > max - extra) return std::nullopt;
    return whole * multiplier + extra;
  }
  return std::nullopt;
}

/// Turns one parsed TOML document into a Config.
class ConfigBuilder {
public:
  ConfigBuilder(std::string file, std::filesystem::path base_dir)
      : in_(std::move(file), std::move(base_dir)) {}

  Config build(const toml::table& root) {
    in_.for_each_entry(
        root, "", {"python", "runtime", "timeouts", "capabilities", "monitoring", "debug", "log", "cluster", "stage"},
        [&](std::string_view name, const toml::node& value, const std::string& path) {
          if (name == "python")
            read_python(in_.table(value, path), path);
          else if (name == "runtime")
            read_runtime(in_.table(value, path), path);
          else if (name == "timeouts")
            read_timeouts(in_.table(value, path), path);
          else if (name == "capabilities")
            read_capabilities(in_.table(value, path), path);
          else if (name == "monitoring")
            read_monitoring(in_.table(value, path), path);
          else if (name == "debug")
            read_debug(in_.table(value, path), path);
          else if (name == "log")
            read_log(in_.table(value, path), path);
          else if (name == "cluster")
            read_cluster(in_.table(value, path), path);
          else
            read_stages(value, path);
        });
    check_workers();
    return std::move(config_);
  }

private:
  void read_python(const toml::table& table, const std::string& path) {
    PythonConfig& python = config_.python;
    in_.for_each_entry(table, path, {"path", "executable"},
                       [&](std::string_view name, const toml::node& value, const std::string& key) {
                         if (name == "path")
                           python.path = in_.paths(value, key);
                         else
                           python.executable = in_.non_empty_string(value, key);
                       });
  }

  void read_runtime(const toml::table& table, const std::string& path) {
    RuntimeConfig& runtime = config_.runtime;
    in_.for_each_entry(
        table, path,
        {"isolation", "workers", "scheduler_threads", "interrupt_signal", "spare", "max_calls",
         "max_memory", "shutdown_grace", "max_queued", "quarantine_after", "quarantine_for", "quarantine_size",
         "degraded_after", "crash_window", "degraded_for", "limits"},
        [&](std::string_view name, const toml::node& value, const std::string& key) {
          if (name == "isolation") {
            runtime.isolation = in_.choice<Isolation>(
                value, key, {{"thread", Isolation::thread}, {"process", Isolation::process}});
          } else if (name == "workers") {
            runtime.workers =
                static_cast<int>(in_.integer(value, key, 1, std::numeric_limits<int>::max()));
            workers_node_ = &value;
          } else if (name == "scheduler_threads") {
            runtime.scheduler_threads = static_cast<int>(in_.integer(value, key, 1, 64));
          } else if (name == "interrupt_signal") {
            runtime.interrupt_signal = read_interrupt_signal(value, key);
          } else if (name == "spare") {
            runtime.spare = in_.boolean(value, key);
          } else if (name == "max_calls") {
            runtime.max_calls = static_cast<std::uint64_t>(in_.integer(value, key, 0));
          } else if (name == "max_memory") {
            runtime.max_memory = read_size(value, key, 0);
          } else if (name == "shutdown_grace") {
            runtime.shutdown_grace = in_.duration(value, key);
          } else if (name == "max_queued") {
            runtime.max_queued = static_cast<std::uint64_t>(in_.integer(value, key, 1, 100000000));
          } else if (name == "quarantine_after") {
            runtime.quarantine_after = static_cast<int>(in_.integer(value, key, 0, 1000));
          } else if (name == "quarantine_for") {
            runtime.quarantine_for = read_positive_duration(value, key);
          } else if (name == "quarantine_size") {
            runtime.quarantine_size =
                static_cast<std::uint64_t>(in_.integer(value, key, 1, 1000000));
          } else if (name == "degraded_after") {
            runtime.degraded_after = static_cast<int>(in_.integer(value, key, 1, 1000));
          } else if (name == "crash_window") {
            runtime.crash_window = read_positive_duration(value, key);
          } else if (name == "degraded_for") {
            runtime.degraded_for = read_positive_duration(value, key);
          } else {
            read_limits(in_.table(value, key), key);
          }
        });
  }

  void read_limits(const toml::table& table, const std::string& path) {
    LimitsConfig& limits = config_.runtime.limits;
    in_.for_each_entry(
        table, path, {"address_space", "cpu_seconds", "open_files", "processes", "core_dumps"},
        [&](std::string_view name, const toml::node& value, const std::string& key) {
          if (name == "address_space")
            limits.address_space = read_size(value, key, 1);
          else if (name == "cpu_seconds")
            limits.cpu_seconds = static_cast<std::uint64_t>(in_.integer(value, key, 1));
          else if (name == "open_files")
            limits.open_files = static_cast<std::uint64_t>(in_.integer(value, key, 1));
          else if (name == "processes")
            limits.processes = static_cast<std::uint64_t>(in_.integer(value, key, 0));
          else
            limits.core_dumps = in_.boolean(value, key);
        });
  }

  std::optional<int> read_interrupt_signal(const toml::node& value, const std::string& key) const {
    const std::int64_t max = SIGRTMAX - SIGRTMIN;
    const std::string expected =
        "expected an integer from 0 to " + std::to_string(max) + " or \"none\", got ";
    if (const auto* s = value.as_string()) {
      if (s->get() == "none") return std::nullopt;
      in_.fail(value.source(), key, expected + in_quotes(s->get()));
    }
    const auto* i = value.as_integer();
    if (!i) in_.fail(value.source(), key, expected + detail::type_phrase(value.type()));
    if (i->get() < 0 || i->get() > max)
      in_.fail(value.source(), key, expected + std::to_string(i->get()));
    return static_cast<int>(i->get());
  }

  /// A duration above zero (a window or a period of zero would switch its
  /// rule off unannounced).
  std::chrono::nanoseconds read_positive_duration(const toml::node& value,
                                                  const std::string& key) const {
    const std::chrono::nanoseconds d = in_.duration(value, key);
    if (d.count() <= 0)
      in_.fail(value.source(), key,
               "expected a duration above zero like \"10s\", got " +
                   in_quotes(value.as_string()->get()));
    return d;
  }

  std::uint64_t read_size(const toml::node& value, const std::string& key,
                          std::uint64_t min) const {
    const std::string at_least = "expected a size of at least " + std::to_string(min) +
                                 (min == 1 ? " byte" : " bytes") + ", got ";
    if (const auto* i = value.as_integer()) {
      if (i->get() < 0 || static_cast<std::uint64_t>(i->get()) < min)
        in_.fail(value.source(), key, at_least + std::to_string(i->get()));
      return static_cast<std::uint64_t>(i->get());
    }
    const auto* s = value.as_string();
    if (!s) in_.fail_type(value, key, "a size like 536870912 or \"512MiB\"");
    const auto size = parse_size(s->get());
    if (!size)
      in_.fail(value.source(), key,
               "expected a size like 536870912, \"512MiB\" or \"2GB\", got " + in_quotes(s->get()));
    if (*size < min) in_.fail(value.source(), key, at_least + in_quotes(s->get()));
    return *size;
  }

  void read_timeouts(const toml::table& table, const std::string& path) {
    TimeoutsConfig& timeouts = config_.timeouts;
    in_.for_each_entry(
        table, path,
        {"default", "import", "call", "eval", "exec", "getattr", "batch", "grace", "interrupted_reply_wait",
         "targets"},
        [&](std::string_view name, const toml::node& value, const std::string& key) {
          if (name == "default")
            timeouts.default_timeout = in_.timeout(value, key);
          else if (name == "grace")
            timeouts.grace = in_.duration(value, key);
          else if (name == "interrupted_reply_wait")
            timeouts.interrupted_reply_wait = in_.duration(value, key);
          else if (name == "targets")
            read_targets(in_.table(value, key), key);
          else
            timeouts.per_type[std::string(name)] = in_.timeout(value, key);
        });
  }

  void read_monitoring(const toml::table& table, const std::string& path) {
    MonitoringConfig& monitoring = config_.monitoring;
    in_.for_each_entry(table, path, {"slow_call", "memory_threshold", "interval"},
                       [&](std::string_view name, const toml::node& value, const std::string& key) {
                         if (name == "slow_call") {
                           if (value.is_table())
                             read_thresholds(*value.as_table(), key, monitoring.slow_call);
                           else
                             monitoring.slow_call.default_threshold = in_.timeout(value, key);
                         } else if (name == "memory_threshold") {
                           monitoring.memory_threshold = read_size(value, key, 0);
                         } else {
                           monitoring.interval = read_positive_duration(value, key);
                         }
                       });
  }

  // A table of thresholds shaped like [timeouts]: default, per type, targets.
  void read_thresholds(const toml::table& table, const std::string& path, Thresholds& out) {
    in_.for_each_entry(table, path, {"default", "import", "call", "eval", "exec", "getattr", "batch", "targets"},
                       [&](std::string_view name, const toml::node& value, const std::string& key) {
                         if (name == "default")
                           out.default_threshold = in_.timeout(value, key);
                         else if (name == "targets")
                           read_targets(in_.table(value, key), key, out.targets);
                         else
                           out.per_type[std::string(name)] = in_.timeout(value, key);
                       });
  }

  void read_debug(const toml::table& table, const std::string& path) {
    DebugConfig& debug = config_.debug;
    in_.for_each_entry(
        table, path, {"gil", "memory", "trace_calls"},
        [&](std::string_view name, const toml::node& value, const std::string& key) {
          if (name == "trace_calls") {
            debug.trace_calls = in_.boolean(value, key);
          } else if (name == "gil") {
            in_.for_each_entry(in_.table(value, key), key, {"trace", "timeout", "detect_deadlock"},
                               [&](std::string_view n, const toml::node& v, const std::string& k) {
                                 if (n == "trace") {
                                   debug.gil.trace = in_.boolean(v, k);
                                 } else if (n == "detect_deadlock") {
                                   debug.gil.detect_deadlock = in_.boolean(v, k);
                                 } else {
                                   Timeout t = in_.timeout(v, k);
                                   debug.gil.timeout = t.infinite ? std::nullopt
                                                                   : std::optional<std::chrono::nanoseconds>(t.value);
                                 }
                               });
          } else {
            in_.for_each_entry(in_.table(value, key), key, {"track", "detect_leaks", "check_interval", "top"},
                               [&](std::string_view n, const toml::node& v, const std::string& k) {
                                 if (n == "track")
                                   debug.memory.track = in_.boolean(v, k);
                                 else if (n == "detect_leaks")
                                   debug.memory.detect_leaks = in_.boolean(v, k);
                                 else if (n == "check_interval")
                                   debug.memory.check_interval = read_positive_duration(v, k);
                                 else
                                   debug.memory.top = static_cast<int>(in_.integer(v, k, 1, 100));
                               });
          }
        });
  }

  void read_log(const toml::table& table, const std::string& path) {
    LogConfig& log = config_.log;
    log.configured = true;
    in_.for_each_entry(table, path, {"level", "format", "file"},
                       [&](std::string_view name, const toml::node& value, const std::string& key) {
                         if (name == "level")
                           log.level = in_.choice<LogLevel>(value, key,
                                                            {{"trace", LogLevel::trace},
                                                             {"debug", LogLevel::debug},
                                                             {"info", LogLevel::info},
                                                             {"warn", LogLevel::warn},
                                                             {"error", LogLevel::error},
                                                             {"off", LogLevel::off}});
                         else if (name == "format")
                           log.format = in_.choice<LogFormat>(value, key,
                                                              {{"text", LogFormat::text}, {"json", LogFormat::json}});
                         else
                           log.file = in_.path(value, key);
                       });
  }

  void read_cluster(const toml::table& table, const std::string& path) {
    ClusterConfig& c = config_.cluster;
    in_.for_each_entry(table, path,
                       {"nodes", "local", "credit", "node_retries", "heartbeat", "tls_cert", "tls_key", "tls_ca"},
                       [&](std::string_view name, const toml::node& value, const std::string& key) {
                         if (name == "nodes") {
                           c.nodes = in_.strings(value, key);
                           for (std::size_t i = 0; i < c.nodes.size(); ++i) {
                             auto& n = c.nodes[i];
                             auto colon = n.rfind(':');
                             bool digits = colon != std::string::npos && colon > 0 && colon + 1 < n.size()
                                           && n.find_first_not_of("0123456789", colon + 1) == std::string::npos
                                           && n.size() - colon - 1 <= 5 && std::stoul(n.substr(colon + 1)) <= 65535;
                             if (!digits)
                               in_.fail((*value.as_array())[i].source(), key + "[" + std::to_string(i) + "]",
                                        "expected \"host:port\", got \"" + n + "\"");
                           }
                         } else if (name == "local") {
                           c.local = in_.boolean(value, key);
                         } else if (name == "credit") {
                           c.credit = static_cast<int>(in_.integer(value, key, 1, 1024));
                         } else if (name == "node_retries") {
                           c.node_retries = static_cast<int>(in_.integer(value, key, 0, 100));
                         } else if (name == "heartbeat") {
                           c.heartbeat = in_.duration(value, key);
                         } else if (name == "tls_cert") {
                           c.tls_cert = in_.path(value, key);
                         } else if (name == "tls_key") {
                           c.tls_key = in_.path(value, key);
                         } else {
                           c.tls_ca = in_.path(value, key);
                         }
                       });
  }

  void read_targets(const toml::table& table, const std::string& path) {
    read_targets(table, path, config_.timeouts.targets);
  }

  void read_targets(const toml::table& table, const std::string& path, std::map<std::string, Timeout>& out) {
    in_.for_each_key(
        table, path, [&](const toml::key& target, const toml::node& value, const std::string& key) {
          const std::string_view text = target.str();
          const std::size_t colon = text.find(':');
          if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size() ||
              text.find(':', colon + 1) != std::string_view::npos)
            in_.fail(target.source(), key,
                     "expected a target like \"module:function\", got " + in_quotes(text));
          out[std::string(text)] = in_.timeout(value, key);
        });
  }

  void read_capabilities(const toml::table& table, const std::string& path) {
    CapabilitiesConfig& caps = config_.capabilities;
    caps.configured = true;
    // The profile sets defaults first, so that explicit keys override it
    // wherever they appear in the table.
    if (const toml::node* profile = table.get("profile")) {
      caps.profile = in_.choice<std::string>(*profile, detail::key_path(path, "profile"),
                                             {{"strict", "strict"}});
      caps.native_extensions = NativePolicy::deny;
      caps.fork = false;
      caps.subprocess = false;
      caps.network = NetworkPolicy::deny;
      caps.write_paths.clear();
      caps.write_paths_set = true;
    }
    const std::initializer_list<std::pair<std::string_view, bool>> allow_deny = {{"allow", true},
                                                                                 {"deny", false}};
    in_.for_each_entry(table, path,
                       {"profile", "allow_modules", "deny_modules", "native_extensions",
                        "allow_native", "fork", "subprocess", "network", "write_paths", "allow_host",
                        "deny_host"},
                       [&](std::string_view name, const toml::node& value, const std::string& key) {
                         if (name == "allow_modules") {
                           caps.allow_modules = in_.module_names(value, key);
                         } else if (name == "deny_modules") {
                           caps.deny_modules = in_.module_names(value, key);
                         } else if (name == "native_extensions") {
                           caps.native_extensions =
                               in_.choice<NativePolicy>(value, key,
                                                        {{"allow", NativePolicy::allow},
                                                         {"deny", NativePolicy::deny},
                                                         {"allowlist", NativePolicy::allowlist}});
                         } else if (name == "allow_native") {
                           caps.allow_native = in_.strings(value, key);
                         } else if (name == "fork") {
                           caps.fork = in_.choice<bool>(value, key, allow_deny);
                         } else if (name == "subprocess") {
                           caps.subprocess = in_.choice<bool>(value, key, allow_deny);
                         } else if (name == "network") {
                           caps.network = read_network(value, key);
                         } else if (name == "allow_host") {
                           caps.allow_host = in_.strings(value, key);
                         } else if (name == "deny_host") {
                           caps.deny_host = in_.strings(value, key);
                         } else if (name == "write_paths") {
                           caps.write_paths = in_.paths(value, key);
                           caps.write_paths_set = true;
                         }
                       });
  }

  NetworkPolicy read_network(const toml::node& value, const std::string& key) const {
    if (const auto* b = value.as_boolean())
      return b->get() ? NetworkPolicy::allow : NetworkPolicy::deny;
    const auto* s = value.as_string();
    if (s && s->get() == "loopback") return NetworkPolicy::loopback;
    in_.fail(value.source(), key,
             "expected true, false or \"loopback\", got " +
                 (s ? in_quotes(s->get()) : detail::type_phrase(value.type())));
  }

  void read_stages(const toml::node& node, const std::string& path) {
    const auto* array = node.as_array();
    if (!array) in_.fail_type(node, path, "an array of tables ([[stage]])");
    std::map<std::string, const toml::node*> names;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const std::string stage_path = detail::index_path(path, i);
      const toml::table& table = in_.table(*array->get(i), stage_path);
      StageConfig stage;
      const toml::node* name_node = nullptr;
      bool has_call = false;
      in_.for_each_entry(
          table, stage_path,
          {"name", "call", "timeout", "parallelism", "retries", "ordered", "batch_size"},
          [&](std::string_view name, const toml::node& value, const std::string& key) {
            if (name == "name") {
              stage.name = in_.non_empty_string(value, key);
              name_node = &value;
            } else if (name == "call") {
              stage.call = read_call(value, key);
              has_call = true;
            } else if (name == "timeout") {
              stage.timeout = in_.timeout(value, key);
            } else if (name == "parallelism") {
              stage.parallelism = static_cast<int>(in_.integer(value, key, 1, 1024));
            } else if (name == "retries") {
              stage.retries = static_cast<int>(in_.integer(value, key, 0, 100));
            } else if (name == "ordered") {
              stage.ordered = in_.boolean(value, key);
            } else {
              stage.batch_size = static_cast<int>(in_.integer(value, key, 1, 100000));
            }
          });
      if (!name_node) in_.fail(table.source(), stage_path, "missing required key \"name\"");
      if (!has_call) in_.fail(table.source(), stage_path, "missing required key \"call\"");
      const auto [first, inserted] = names.emplace(stage.name, name_node);
      if (!inserted)
        in_.fail(name_node->source(), detail::key_path(stage_path, "name"),
                 "duplicate stage name " + in_quotes(stage.name) + " (first defined at line " +
                     std::to_string(first->second->source().begin.line) + ")");
      config_.stages.push_back(std::move(stage));
    }
  }

  std::string read_call(const toml::node& value, const std::string& key) const {
    std::string call = in_.string(value, key);
    const std::size_t colon = call.find(':');
    if (colon == std::string::npos ||
        !detail::is_dotted_name(std::string_view(call).substr(0, colon)) ||
        !detail::is_dotted_name(std::string_view(call).substr(colon + 1)))
      in_.fail(value.source(), key,
               "expected \"module:qualname\" like \"pkg.mod:Class.method\", got " +
                   in_quotes(call));
    return call;
  }

  void check_workers() const {
    if (config_.runtime.isolation == Isolation::thread && config_.runtime.workers != 1)
      in_.fail(workers_node_->source(), "runtime.workers",
               "expected 1 when isolation is \"thread\", got " +
                   std::to_string(config_.runtime.workers) + " (set isolation = \"process\")");
  }

  TomlReader in_;
  Config config_;
  const toml::node* workers_node_ = nullptr;
};

} // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string key,
                         std::string message)
    : std::runtime_error(format_what(file, line, column, key, message)), file_(std::move(file)),
      line_(line), column_(column), key_(std::move(key)), message_(std::move(message)) {}

Timeout resolve_timeout(const TimeoutsConfig& timeouts, std::string_view message_type,
                        std::string_view target) {
  if (!target.empty()) {
    const auto it = timeouts.targets.find(std::string(target));
    if (it != timeouts.targets.end()) return it->second;
  }
  const auto it = timeouts.per_type.find(std::string(message_type));
  return it != timeouts.per_type.end() ? it->second : timeouts.default_timeout;
}

Timeout resolve_threshold(const Thresholds& thresholds, std::string_view message_type, std::string_view target) {
  if (!target.empty() && !thresholds.targets.empty()) {
    const auto it = thresholds.targets.find(std::string(target));
    if (it != thresholds.targets.end()) return it->second;
  }
  if (!thresholds.per_type.empty()) {
    const auto it = thresholds.per_type.find(std::string(message_type));
    if (it != thresholds.per_type.end()) return it->second;
  }
  return thresholds.default_threshold;
}

void apply_environment(Config& config) {
  auto fail = [](const char* variable, const std::string& value, const std::string& expected) {
    throw ConfigError("environment", 0, 0, variable, "expected " + expected + ", got " + in_quotes(value));
  };
  if (const char* trace = std::getenv("GILKEEPER_TRACE"); trace && *trace) {
    std::string_view list(trace);
    while (!list.empty()) {
      auto comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (item == "gil")
        config.debug.gil.trace = true;
      else if (item == "calls")
        config.debug.trace_calls = true;
      else if (item == "memory")
        config.debug.memory.track = config.debug.memory.detect_leaks = true;
      else if (!item.empty())
        fail("GILKEEPER_TRACE", trace, "a comma-separated list of gil, calls, memory");
    }
    // Traces are debug events: they are seen without a second switch.
    if (config.log.level > LogLevel::debug && (config.debug.gil.trace || config.debug.trace_calls))
      config.log.level = LogLevel::debug;
  }
  if (const char* level = std::getenv("GILKEEPER_LOG_LEVEL"); level && *level) {
    static constexpr std::pair<std::string_view, LogLevel> levels[] = {
        {"trace", LogLevel::trace}, {"debug", LogLevel::debug}, {"info", LogLevel::info},
        {"warn", LogLevel::warn},   {"error", LogLevel::error}, {"off", LogLevel::off}};
    bool known = false;
    for (auto& [name, value] : levels)
      if (name == level) {
        config.log.level = value;
        known = true;
      }
    if (!known)
      fail("GILKEEPER_LOG_LEVEL", level, "one of trace, debug, info, warn, error, off");
  }
  if (const char* timeout = std::getenv("GILKEEPER_GIL_TIMEOUT"); timeout && *timeout) {
    auto t = parse_timeout(timeout);
    if (!t)
      fail("GILKEEPER_GIL_TIMEOUT", timeout, "a duration like \"250ms\", \"5s\" or \"none\"");
    config.debug.gil.timeout =
        t->infinite ? std::nullopt : std::optional<std::chrono::nanoseconds>(t->value);
  }
}

Config parse_config(const std::string& toml_text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(std::string_view(toml_text), std::string_view(source_name));
  } catch (const toml::parse_error& error) {
    const auto& where = error.source().begin;
    throw ConfigError(source_name, static_cast<int>(where.line), static_cast<int>(where.column), "",
                      std::string(error.description()));
  }
  ConfigBuilder builder(source_name, base_directory(source_name));
  Config config = builder.build(root);
  config.source = source_name == "<string>" ? std::string() : source_name;
  return config;
}

Config load_config_file(const std::string& path) {
  const auto cannot_read = [&path] {
    return ConfigError(path, 0, 0, "", std::string("cannot read file: ") + std::strerror(errno));
  };
  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  // stdio rather than iostreams: its failures leave the reason in errno.
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw cannot_read();
  std::string text;
  char buffer[65536];
  std::size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) text.append(buffer, got);
  if (std::ferror(file.get())) throw cannot_read();
  return parse_config(text, path);
}

} // namespace gk
