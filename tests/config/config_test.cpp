#include "gilkeeper/config/config.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

using namespace std::chrono_literals;

namespace {

/// The `what()` of the ConfigError that parsing `text` as "job.toml" throws,
/// or "no error".
std::string error_of(const std::string& text) {
  try {
    gk::parse_config(text, "job.toml");
  } catch (const gk::ConfigError& error) {
    return error.what();
  }
  return "no error";
}

/// A fresh, empty directory under the system temp directory.
std::filesystem::path fresh_directory(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gk_config_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

} // namespace

TEST_CASE("an empty file gives the documented defaults", "[config]") {
  const gk::Config config = gk::parse_config("", "job.toml");
  CHECK(config.source == "job.toml");
  CHECK(config.python.path.empty());
  CHECK(config.python.executable == "/usr/bin/python3");
  CHECK(config.runtime.isolation == gk::Isolation::thread);
  CHECK(config.runtime.workers == 1);
  CHECK(config.runtime.scheduler_threads == 2);
  CHECK(config.runtime.interrupt_signal == 2);
  CHECK(config.runtime.spare);
  CHECK(config.runtime.max_calls == 0);
  CHECK(config.runtime.max_memory == 0);
  CHECK(config.runtime.shutdown_grace == 5s);
  CHECK(config.runtime.max_queued == 100000u);
  CHECK_FALSE(config.runtime.limits.address_space.has_value());
  CHECK_FALSE(config.runtime.limits.core_dumps);
  CHECK(config.timeouts.default_timeout == gk::Timeout::after(30s));
  CHECK(config.timeouts.per_type.empty());
  CHECK(config.timeouts.grace == 2s);
  CHECK(config.timeouts.targets.empty());
  CHECK_FALSE(config.capabilities.configured);
  CHECK(config.capabilities.network == gk::NetworkPolicy::allow);
  CHECK_FALSE(config.capabilities.write_paths_set);
  CHECK(config.stages.empty());
  CHECK(gk::parse_config("").source.empty());
}

TEST_CASE("a complete file sets every field", "[config]") {
  const gk::Config config = gk::parse_config(R"(
[python]
path = ["lib", "/opt/mods/", "../shared/./pkgs"]
executable = "/usr/local/bin/python3.11"

[runtime]
isolation = "process"
workers = 4
scheduler_threads = 8
interrupt_signal = 5
spare = false
max_calls = 1000
max_memory = "512MiB"
shutdown_grace = "1.5s"
max_queued = 5000

[runtime.limits]
address_space = "2GiB"
cpu_seconds = 60
open_files = 256
processes = 0
core_dumps = true

[timeouts]
default = "10s"
import = "1m"
call = "250ms"
eval = "none"
exec = "2s"
getattr = "100us"
batch = "1h"
grace = "500ms"

[timeouts.targets]
"pkg.mod:slow" = "2m"
"other:forever" = "none"

[capabilities]
allow_modules = ["json", "os.path"]
deny_modules = ["ctypes"]
native_extensions = "allowlist"
allow_native = ["_json", "numpy.core._multiarray_umath"]
fork = "allow"
subprocess = "deny"
network = "loopback"
write_paths = ["out", "/tmp/"]

[[stage]]
name = "parse"
call = "pkg.mod:parse"

[[stage]]
name = "score"
call = "pkg.models:Model.score"
timeout = "5s"
parallelism = 4
retries = 2
ordered = false
batch_size = 64
)",
                                             "/srv/jobs/job.toml");
  CHECK(config.source == "/srv/jobs/job.toml");

  CHECK(config.python.path ==
        std::vector<std::string>{"/srv/jobs/lib", "/opt/mods", "/srv/shared/pkgs"});
  CHECK(config.python.executable == "/usr/local/bin/python3.11");

  const gk::RuntimeConfig& runtime = config.runtime;
  CHECK(runtime.isolation == gk::Isolation::process);
  CHECK(runtime.workers == 4);
  CHECK(runtime.scheduler_threads == 8);
  CHECK(runtime.interrupt_signal == 5);
  CHECK_FALSE(runtime.spare);
  CHECK(runtime.max_calls == 1000);
  CHECK(runtime.max_memory == 512ull * 1024 * 1024);
  CHECK(runtime.shutdown_grace == 1500ms);
  CHECK(runtime.max_queued == 5000u);
  CHECK(runtime.limits.address_space == 2ull * 1024 * 1024 * 1024);
  CHECK(runtime.limits.cpu_seconds == 60u);
  CHECK(runtime.limits.open_files == 256u);
  CHECK(runtime.limits.processes == 0u);
  CHECK(runtime.limits.core_dumps);

  const gk::TimeoutsConfig& timeouts = config.timeouts;
  CHECK(timeouts.default_timeout == gk::Timeout::after(10s));
  CHECK(timeouts.per_type.size() == 6);
  CHECK(timeouts.per_type.at("import") == gk::Timeout::after(1min));
  CHECK(timeouts.per_type.at("call") == gk::Timeout::after(250ms));
  CHECK(timeouts.per_type.at("eval") == gk::Timeout::none());
  CHECK(timeouts.per_type.at("exec") == gk::Timeout::after(2s));
  CHECK(timeouts.per_type.at("getattr") == gk::Timeout::after(100us));
  CHECK(timeouts.per_type.at("batch") == gk::Timeout::after(1h));
  CHECK(timeouts.grace == 500ms);
  CHECK(timeouts.targets.size() == 2);
  CHECK(timeouts.targets.at("pkg.mod:slow") == gk::Timeout::after(2min));
  CHECK(timeouts.targets.at("other:forever") == gk::Timeout::none());

  const gk::CapabilitiesConfig& caps = config.capabilities;
  CHECK(caps.configured);
  CHECK(caps.profile.empty());
  CHECK(caps.allow_modules == std::vector<std::string>{"json", "os.path"});
  CHECK(caps.deny_modules == std::vector<std::string>{"ctypes"});
  CHECK(caps.native_extensions == gk::NativePolicy::allowlist);
  CHECK(caps.allow_native == std::vector<std::string>{"_json", "numpy.core._multiarray_umath"});
  CHECK(caps.fork);
  CHECK_FALSE(caps.subprocess);
  CHECK(caps.network == gk::NetworkPolicy::loopback);
  CHECK(caps.write_paths == std::vector<std::string>{"/srv/jobs/out", "/tmp"});
  CHECK(caps.write_paths_set);

  REQUIRE(config.stages.size() == 2);
  const gk::StageConfig& parse = config.stages[0];
  CHECK(parse.name == "parse");
  CHECK(parse.call == "pkg.mod:parse");
  CHECK_FALSE(parse.timeout.has_value());
  CHECK(parse.parallelism == 0);  // automatic
  CHECK(parse.retries == 0);
  CHECK(parse.ordered);
  CHECK(parse.batch_size == 0);  // automatic
  const gk::StageConfig& score = config.stages[1];
  CHECK(score.name == "score");
  CHECK(score.call == "pkg.models:Model.score");
  CHECK(score.timeout == gk::Timeout::after(5s));
  CHECK(score.parallelism == 4);
  CHECK(score.retries == 2);
  CHECK_FALSE(score.ordered);
  CHECK(score.batch_size == 64);
}

TEST_CASE("sizes accept bytes and decimal or binary units", "[config]") {
  const auto max_memory = [](const std::string& value) {
    return gk::parse_config("[runtime]\nmax_memory = " + value + "\n", "job.toml")
        .runtime.max_memory;
  };
  CHECK(max_memory("1048576") == 1048576u);
  CHECK(max_memory("\"100B\"") == 100u);
  CHECK(max_memory("\"100KB\"") == 100'000u);
  CHECK(max_memory("\"100KiB\"") == 102'400u);
  CHECK(max_memory("\"3MB\"") == 3'000'000u);
  CHECK(max_memory("\"2GB\"") == 2'000'000'000u);
  CHECK(max_memory("\"1GiB\"") == 1'073'741'824u);
  CHECK(max_memory("\"1.5KiB\"") == 1536u);
  CHECK(max_memory("0") == 0u);
  CHECK(error_of("[runtime]\nmax_memory = \"5 megs\"\n") ==
        "job.toml:2:14: runtime.max_memory: expected a size like 536870912, \"512MiB\" or \"2GB\", "
        "got \"5 megs\"");
  CHECK(error_of("[runtime]\nmax_memory = -1\n") ==
        "job.toml:2:14: runtime.max_memory: expected a size of at least 0 bytes, got -1");
  CHECK(error_of("[runtime.limits]\naddress_space = \"0B\"\n") ==
        "job.toml:2:17: runtime.limits.address_space: expected a size of at least 1 byte, got "
        "\"0B\"");
}

TEST_CASE("relative python.path entries resolve against the file's directory", "[config]") {
  const gk::Config nested = gk::parse_config(
      "[python]\npath = [\"lib\", \"./a/../b/\", \"/abs/x/..\"]\n", "/srv/jobs/job.toml");
  CHECK(nested.python.path == std::vector<std::string>{"/srv/jobs/lib", "/srv/jobs/b", "/abs"});

  // A bare file name lives in the working directory.
  const gk::Config here = gk::parse_config("[python]\npath = [\"lib\"]\n", "job.toml");
  CHECK(here.python.path ==
        std::vector<std::string>{
            (std::filesystem::current_path() / "lib").lexically_normal().string()});

  const auto dir = fresh_directory("paths");
  const auto file = dir / "job.toml";
  std::ofstream(file)
      << "[python]\npath = [\"mods\"]\n[capabilities]\nwrite_paths = [\"../out\"]\n";
  const gk::Config loaded = gk::load_config_file(file.string());
  CHECK(loaded.source == file.string());
  CHECK(loaded.python.path == std::vector<std::string>{(dir / "mods").string()});
  CHECK(loaded.capabilities.write_paths ==
        std::vector<std::string>{(dir.parent_path() / "out").string()});
  std::filesystem::remove_all(dir);
}

TEST_CASE("the strict profile denies everything and listed keys override it in any order",
          "[config][capabilities]") {
  const gk::Config strict = gk::parse_config("[capabilities]\nprofile = \"strict\"\n", "job.toml");
  const gk::CapabilitiesConfig& caps = strict.capabilities;
  CHECK(caps.configured);
  CHECK(caps.profile == "strict");
  CHECK(caps.native_extensions == gk::NativePolicy::deny);
  CHECK_FALSE(caps.fork);
  CHECK_FALSE(caps.subprocess);
  CHECK(caps.network == gk::NetworkPolicy::deny);
  CHECK(caps.write_paths_set);
  CHECK(caps.write_paths.empty());

  // The override comes before the profile in the file and still wins.
  const gk::Config relaxed = gk::parse_config(R"(
[capabilities]
network = "loopback"
subprocess = "allow"
profile = "strict"
write_paths = ["/tmp/out"]
)",
                                              "job.toml");
  CHECK(relaxed.capabilities.network == gk::NetworkPolicy::loopback);
  CHECK(relaxed.capabilities.subprocess);
  CHECK(relaxed.capabilities.write_paths == std::vector<std::string>{"/tmp/out"});
  CHECK_FALSE(relaxed.capabilities.fork);
  CHECK(relaxed.capabilities.native_extensions == gk::NativePolicy::deny);

  CHECK(gk::parse_config("[capabilities]\n", "job.toml").capabilities.configured);
  CHECK(gk::parse_config("[capabilities]\nnetwork = false\n", "job.toml").capabilities.network ==
        gk::NetworkPolicy::deny);
  CHECK(gk::parse_config("[capabilities]\nnetwork = true\n", "job.toml").capabilities.network ==
        gk::NetworkPolicy::allow);
}

TEST_CASE("interrupt_signal takes an offset or \"none\"", "[config]") {
  CHECK(gk::parse_config("[runtime]\ninterrupt_signal = \"none\"\n", "job.toml")
            .runtime.interrupt_signal == std::nullopt);
  CHECK(
      gk::parse_config("[runtime]\ninterrupt_signal = 0\n", "job.toml").runtime.interrupt_signal ==
      0);
  const std::string max = std::to_string(SIGRTMAX - SIGRTMIN);
  CHECK(error_of("[runtime]\ninterrupt_signal = 99\n") ==
        "job.toml:2:20: runtime.interrupt_signal: expected an integer from 0 to " + max +
            " or \"none\", got 99");
  CHECK(error_of("[runtime]\ninterrupt_signal = \"off\"\n") ==
        "job.toml:2:20: runtime.interrupt_signal: expected an integer from 0 to " + max +
            " or \"none\", got \"off\"");
}

TEST_CASE("timeouts resolve from target to message type to default", "[config][timeouts]") {
  const gk::Config config = gk::parse_config(R"(
[timeouts]
default = "10s"
call = "1s"
[timeouts.targets]
"m:slow" = "none"
)",
                                             "job.toml");
  CHECK(gk::resolve_timeout(config.timeouts, "call", "m:slow") == gk::Timeout::none());
  CHECK(gk::resolve_timeout(config.timeouts, "call", "m:fast") == gk::Timeout::after(1s));
  CHECK(gk::resolve_timeout(config.timeouts, "call") == gk::Timeout::after(1s));
  CHECK(gk::resolve_timeout(config.timeouts, "eval") == gk::Timeout::after(10s));
  CHECK(gk::resolve_timeout(gk::TimeoutsConfig{}, "import") == gk::Timeout::after(30s));
}

TEST_CASE("an unknown top-level key names file, line, column and suggests the right key",
          "[config][errors]") {
  CHECK(error_of("[tmeouts]\ncall = \"5s\"\n") ==
        "job.toml:1:2: tmeouts: unknown key \"tmeouts\"; did you mean \"timeouts\"?");
  CHECK(error_of("\n\n[[stages]]\nname = \"a\"\n") ==
        "job.toml:3:3: stages: unknown key \"stages\"; did you mean \"stage\"?");
}

TEST_CASE("an unknown nested key is named by its dotted path", "[config][errors]") {
  CHECK(error_of("[runtime]\nisolation = \"process\"\nwrokers = 4\n") ==
        "job.toml:3:1: runtime.wrokers: unknown key \"wrokers\"; did you mean \"workers\"?");
  CHECK(error_of("[runtime.limits]\n  open_file = 3\n") ==
        "job.toml:2:3: runtime.limits.open_file: unknown key \"open_file\"; did you mean "
        "\"open_files\"?");
  CHECK(error_of("[[stage]]\nname = \"a\"\ncall = \"m:f\"\nxyz = 1\n") ==
        "job.toml:4:1: stage[0].xyz: unknown key \"xyz\"");
}

TEST_CASE("the first of several problems in a table is reported in file order",
          "[config][errors]") {
  CHECK(error_of("[runtime]\nzzz = 1\naaa = 2\n") ==
        "job.toml:2:1: runtime.zzz: unknown key \"zzz\"");
}

TEST_CASE("a value of the wrong type says what was expected and what it got", "[config][errors]") {
  CHECK(error_of("[runtime]\nworkers = \"4\"\n") ==
        "job.toml:2:11: runtime.workers: expected an integer, got a string");
  CHECK(error_of("[python]\nexecutable = 3\n") ==
        "job.toml:2:14: python.executable: expected a string, got an integer");
  CHECK(error_of("[runtime.limits]\nopen_files = 1.5\n") ==
        "job.toml:2:14: runtime.limits.open_files: expected an integer, got a float");
  CHECK(error_of("[python]\npath = [\"a\", 2]\n") ==
        "job.toml:2:14: python.path[1]: expected a string, got an integer");
  CHECK(error_of("runtime = 3\n") == "job.toml:1:11: runtime: expected a table, got an integer");
  CHECK(error_of("[stage]\nname = \"a\"\n") ==
        "job.toml:1:1: stage: expected an array of tables ([[stage]]), got a table");
  CHECK(error_of("[capabilities]\nnetwork = \"yes\"\n") ==
        "job.toml:2:11: capabilities.network: expected true, false or \"loopback\", got \"yes\"");
}

TEST_CASE("a bad duration quotes the value and the accepted forms", "[config][errors]") {
  CHECK(error_of("[timeouts]\ncall = \"5 sec\"\n") ==
        "job.toml:2:8: timeouts.call: expected a duration like \"250ms\", \"5s\", \"2m\" or "
        "\"none\", "
        "got \"5 sec\"");
  CHECK(error_of("[timeouts]\ngrace = \"none\"\n") ==
        "job.toml:2:9: timeouts.grace: expected a duration like \"250ms\", \"5s\", \"2m\", got "
        "\"none\"");
  CHECK(
      error_of("[timeouts]\ndefault = 5\n") ==
      "job.toml:2:11: timeouts.default: expected a duration string like \"250ms\", got an integer");
  CHECK(error_of("[runtime]\nshutdown_grace = 1.5\n") ==
        "job.toml:2:18: runtime.shutdown_grace: expected a duration string like \"250ms\", got a "
        "float");
  CHECK(error_of("[timeouts.targets]\n\"mod:fn\" = \"-1s\"\n") ==
        "job.toml:2:12: timeouts.targets.\"mod:fn\": expected a duration like \"250ms\", \"5s\", "
        "\"2m\" "
        "or \"none\", got \"-1s\"");
}

TEST_CASE("a bad enum value lists the accepted values", "[config][errors]") {
  CHECK(
      error_of("[runtime]\nisolation = \"threads\"\n") ==
      "job.toml:2:13: runtime.isolation: expected one of \"thread\", \"process\", got \"threads\"");
  CHECK(error_of("[capabilities]\nfork = false\n") ==
        "job.toml:2:8: capabilities.fork: expected one of \"allow\", \"deny\", got a boolean");
  CHECK(error_of("[capabilities]\nprofile = \"lax\"\n") ==
        "job.toml:2:11: capabilities.profile: expected one of \"strict\", got \"lax\"");
}

TEST_CASE("an integer out of range names the range", "[config][errors]") {
  CHECK(error_of("[runtime]\nscheduler_threads = 100\n") ==
        "job.toml:2:21: runtime.scheduler_threads: expected an integer from 1 to 64, got 100");
  CHECK(error_of("[runtime]\nisolation = \"process\"\nworkers = 0\n") ==
        "job.toml:3:11: runtime.workers: expected an integer from 1 to 2147483647, got 0");
  CHECK(error_of("[runtime]\nmax_calls = -1\n") ==
        "job.toml:2:13: runtime.max_calls: expected an integer >= 0, got -1");
  CHECK(error_of("[[stage]]\nname = \"a\"\ncall = \"m:f\"\nparallelism = 2000\n") ==
        "job.toml:4:15: stage[0].parallelism: expected an integer from 1 to 1024, got 2000");
}

TEST_CASE("more than one worker needs process isolation", "[config][errors]") {
  CHECK(error_of("[runtime]\nworkers = 4\n") ==
        "job.toml:2:11: runtime.workers: expected 1 when isolation is \"thread\", got 4 "
        "(set isolation = \"process\")");
  CHECK(error_of("[runtime]\nworkers = 4\nisolation = \"thread\"\n") ==
        "job.toml:2:11: runtime.workers: expected 1 when isolation is \"thread\", got 4 "
        "(set isolation = \"process\")");
  CHECK(gk::parse_config("[runtime]\nworkers = 4\nisolation = \"process\"\n", "job.toml")
            .runtime.workers == 4);
}

TEST_CASE("a stage without a name or call is named by its index", "[config][errors]") {
  CHECK(error_of("[[stage]]\nname = \"a\"\ncall = \"m:f\"\n\n[[stage]]\ncall = \"m:g\"\n") ==
        "job.toml:5:1: stage[1]: missing required key \"name\"");
  CHECK(error_of("[[stage]]\nname = \"a\"\n") ==
        "job.toml:1:1: stage[0]: missing required key \"call\"");
  CHECK(error_of("[[stage]]\nname = \"a\"\ncall = \"m:f\"\n[[stage]]\nname = \"b\"\ncall = "
                 "\"nocolon\"\n") == "job.toml:6:8: stage[1].call: expected \"module:qualname\" "
                                     "like \"pkg.mod:Class.method\", got "
                                     "\"nocolon\"");
}

TEST_CASE("a duplicate stage name points at the second one and the first", "[config][errors]") {
  CHECK(
      error_of(
          "[[stage]]\nname = \"a\"\ncall = \"m:f\"\n\n[[stage]]\nname = \"a\"\ncall = \"m:g\"\n") ==
      "job.toml:6:8: stage[1].name: duplicate stage name \"a\" (first defined at line 2)");
}

TEST_CASE("a timeout target must read module:function", "[config][errors]") {
  CHECK(error_of("[timeouts.targets]\n\"modfn\" = \"5s\"\n") ==
        "job.toml:2:1: timeouts.targets.modfn: expected a target like \"module:function\", got "
        "\"modfn\"");
  CHECK(error_of("[timeouts.targets]\n\"a:b:c\" = \"5s\"\n") ==
        "job.toml:2:1: timeouts.targets.\"a:b:c\": expected a target like \"module:function\", got "
        "\"a:b:c\"");
  CHECK(error_of("[timeouts.targets]\n\":f\" = \"5s\"\n") ==
        "job.toml:2:1: timeouts.targets.\":f\": expected a target like \"module:function\", got "
        "\":f\"");
  CHECK(error_of("[timeouts.targets]\n\"m:\" = \"5s\"\n") ==
        "job.toml:2:1: timeouts.targets.\"m:\": expected a target like \"module:function\", got "
        "\"m:\"");
}

TEST_CASE("a module list entry must be a dotted name", "[config][errors]") {
  CHECK(error_of("[capabilities]\ndeny_modules = [\"os\", \"os path\"]\n") ==
        "job.toml:2:23: capabilities.deny_modules[1]: expected a dotted module name like "
        "\"os.path\", "
        "got \"os path\"");
}

TEST_CASE("a TOML syntax error has the parser's position and an empty key", "[config][errors]") {
  const std::string what = error_of("[runtime]\nworkers = 1 2\n");
  CHECK(what ==
        "job.toml:2:13: Error while parsing key-value pair: expected a comment or whitespace, "
        "saw '2'");
  try {
    gk::parse_config("[runtime\n", "job.toml");
    FAIL("no error");
  } catch (const gk::ConfigError& error) {
    CHECK(error.file() == "job.toml");
    CHECK(error.line() == 1);
    CHECK(error.column() == 9);
    CHECK(error.key().empty());
    CHECK(std::string(error.what()) == "job.toml:1:9: " + error.message());
  }
}

TEST_CASE("a missing or unreadable file is an error at line 0", "[config][errors]") {
  try {
    gk::load_config_file("/nonexistent/gilkeeper/job.toml");
    FAIL("no error");
  } catch (const gk::ConfigError& error) {
    CHECK(std::string(error.what()) ==
          "/nonexistent/gilkeeper/job.toml:0:0: cannot read file: No such file or directory");
    CHECK(error.file() == "/nonexistent/gilkeeper/job.toml");
    CHECK(error.line() == 0);
    CHECK(error.column() == 0);
    CHECK(error.key().empty());
    CHECK(error.message() == "cannot read file: No such file or directory");
  }
  const auto dir = fresh_directory("unreadable");
  try {
    gk::load_config_file(dir.string());
    FAIL("no error");
  } catch (const gk::ConfigError& error) {
    CHECK(std::string(error.what()) == dir.string() + ":0:0: cannot read file: Is a directory");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("errors in a loaded file name that file", "[config][errors]") {
  const auto dir = fresh_directory("named");
  const auto file = dir / "bad.toml";
  std::ofstream(file) << "[runtime]\nspare = \"yes\"\n";
  try {
    gk::load_config_file(file.string());
    FAIL("no error");
  } catch (const gk::ConfigError& error) {
    CHECK(std::string(error.what()) ==
          file.string() + ":2:9: runtime.spare: expected a boolean, got a string");
    CHECK(error.key() == "runtime.spare");
    CHECK(error.message() == "expected a boolean, got a string");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("the crash breaker's thresholds have the documented defaults and can be set", "[config]") {
  const gk::RuntimeConfig defaults = gk::parse_config("", "job.toml").runtime;
  CHECK(defaults.quarantine_after == 2);
  CHECK(defaults.quarantine_for == 10min);
  CHECK(defaults.quarantine_size == 1024u);
  CHECK(defaults.degraded_after == 5);
  CHECK(defaults.crash_window == 10s);
  CHECK(defaults.degraded_for == 10s);

  const gk::RuntimeConfig set = gk::parse_config(R"([runtime]
isolation = "process"
quarantine_after = 0
quarantine_for = "1h"
quarantine_size = 64
degraded_after = 20
crash_window = "1m"
degraded_for = "2.5s"
)",
                                                 "job.toml")
                                    .runtime;
  CHECK(set.quarantine_after == 0);
  CHECK(set.quarantine_for == 1h);
  CHECK(set.quarantine_size == 64u);
  CHECK(set.degraded_after == 20);
  CHECK(set.crash_window == 1min);
  CHECK(set.degraded_for == 2500ms);
}

TEST_CASE("a bad crash breaker value names file, line, column, key and what was expected",
          "[config][errors]") {
  CHECK(error_of("[runtime]\nquarantine_after = -1\n") ==
        "job.toml:2:20: runtime.quarantine_after: expected an integer from 0 to 1000, got -1");
  CHECK(error_of("[runtime]\nquarantine_after = \"2\"\n") ==
        "job.toml:2:20: runtime.quarantine_after: expected an integer, got a string");
  CHECK(error_of("[runtime]\ndegraded_after = 0\n") ==
        "job.toml:2:18: runtime.degraded_after: expected an integer from 1 to 1000, got 0");
  CHECK(error_of("[runtime]\nquarantine_size = 0\n") ==
        "job.toml:2:19: runtime.quarantine_size: expected an integer from 1 to 1000000, got 0");
  CHECK(error_of("[runtime]\ncrash_window = \"0s\"\n") ==
        "job.toml:2:16: runtime.crash_window: expected a duration above zero like \"10s\", got "
        "\"0s\"");
  CHECK(error_of("[runtime]\ndegraded_for = \"10 s\"\n") ==
        "job.toml:2:16: runtime.degraded_for: expected a duration like \"250ms\", \"5s\", \"2m\", "
        "got \"10 s\"");
  CHECK(error_of("[runtime]\nquarantine_for = 600\n") ==
        "job.toml:2:18: runtime.quarantine_for: expected a duration string like \"250ms\", got an "
        "integer");
  CHECK(error_of("[runtime]\nquarantine_afer = 3\n") ==
        "job.toml:2:1: runtime.quarantine_afer: unknown key \"quarantine_afer\"; did you mean "
        "\"quarantine_after\"?");
}

TEST_CASE("the cluster section lists the nodes and how the driver uses them; a malformed node is named by position", "[config]") {
  const gk::Config empty = gk::parse_config("", "job.toml");
  CHECK(empty.cluster.nodes.empty());
  CHECK(empty.cluster.local);
  CHECK(empty.cluster.credit == 4);
  CHECK(empty.cluster.node_retries == 3);
  CHECK(empty.cluster.heartbeat == std::chrono::milliseconds(500));

  const gk::Config c = gk::parse_config(R"([cluster]
nodes = ["10.0.0.7:7100", "[::1]:7101"]
local = false
credit = 8
node_retries = 0
heartbeat = "250ms"
tls_cert = "/etc/gk/client.pem"
tls_key = "/etc/gk/client.key"
tls_ca = "/etc/gk/ca.pem"
)",
                                        "job.toml");
  CHECK(c.cluster.nodes == std::vector<std::string>{"10.0.0.7:7100", "[::1]:7101"});
  CHECK_FALSE(c.cluster.local);
  CHECK(c.cluster.credit == 8);
  CHECK(c.cluster.node_retries == 0);
  CHECK(c.cluster.heartbeat == std::chrono::milliseconds(250));
  CHECK(c.cluster.tls_ca == "/etc/gk/ca.pem");

  CHECK(error_of("[cluster]\nnodes = [\"a:1\", \"b\"]\n")
        == "job.toml:2:17: cluster.nodes[1]: expected \"host:port\", got \"b\"");
  CHECK(error_of("[cluster]\nnodes = [\"a:99999\"]\n")
        == "job.toml:2:10: cluster.nodes[0]: expected \"host:port\", got \"a:99999\"");
  CHECK(error_of("[cluster]\ncredit = 0\n").find("cluster.credit") != std::string::npos);
  CHECK(error_of("[cluster]\nnodez = []\n").find("cluster.nodez") != std::string::npos);
}
