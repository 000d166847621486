// The observability switches in the config and the environment, and the
// logger's formats and file (docs/observability.md).
#include "../support.hpp"
#include "../support_log.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>

using namespace gk;

namespace {

struct EnvVar {
  std::string name;
  EnvVar(std::string n, const std::string& value) : name(std::move(n)) { ::setenv(name.c_str(), value.c_str(), 1); }
  ~EnvVar() { ::unsetenv(name.c_str()); }
};

} // namespace

TEST_CASE("[monitoring], [debug] and [log] parse, and bad values name their key", "[config][observability]") {
  auto c = parse_config("[monitoring]\nslow_call = \"250ms\"\nmemory_threshold = \"1GiB\"\ninterval = \"2s\"\n"
                        "[debug]\ntrace_calls = true\n[debug.gil]\ntrace = true\ntimeout = \"1s\"\n"
                        "detect_deadlock = false\n[debug.memory]\ntrack = true\ndetect_leaks = true\n"
                        "check_interval = \"5s\"\ntop = 3\n[log]\nlevel = \"debug\"\nformat = \"json\"\n"
                        "file = \"gk.log\"\n",
                        "/etc/jobs/job.toml");
  CHECK(resolve_threshold(c.monitoring.slow_call, "call").value == std::chrono::milliseconds(250));
  CHECK(c.monitoring.memory_threshold == (1ull << 30));
  CHECK(c.monitoring.interval == std::chrono::seconds(2));
  CHECK(c.debug.trace_calls);
  CHECK(c.debug.gil.trace);
  CHECK(c.debug.gil.timeout == std::chrono::nanoseconds(std::chrono::seconds(1)));
  CHECK_FALSE(c.debug.gil.detect_deadlock);
  CHECK(c.debug.memory.track);
  CHECK(c.debug.memory.detect_leaks);
  CHECK(c.debug.memory.top == 3);
  CHECK(c.log.configured);
  CHECK(c.log.level == LogLevel::debug);
  CHECK(c.log.format == LogFormat::json);
  CHECK(c.log.file == "/etc/jobs/gk.log");

  auto t = parse_config("[monitoring.slow_call]\ndefault = \"5s\"\neval = \"none\"\n"
                        "[monitoring.slow_call.targets]\n\"m:f\" = \"100ms\"\n");
  CHECK(resolve_threshold(t.monitoring.slow_call, "call").value == std::chrono::seconds(5));
  CHECK(resolve_threshold(t.monitoring.slow_call, "eval").infinite);
  CHECK(resolve_threshold(t.monitoring.slow_call, "call", "m:f").value == std::chrono::milliseconds(100));

  auto bad = [](const std::string& toml) {
    try {
      parse_config(toml, "job.toml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(bad("[monitoring]\nslow_call = \"fast\"\n").find("monitoring.slow_call") != std::string::npos);
  CHECK(bad("[debug.gil]\ntimeout = 5\n").find("debug.gil.timeout") != std::string::npos);
  CHECK(bad("[log]\nlevel = \"loud\"\n").find("log.level") != std::string::npos);
  CHECK(bad("[debug.memory]\ncheck_interval = \"0s\"\n").find("debug.memory.check_interval") != std::string::npos);
  CHECK(bad("[monitoring]\nslow_cal = \"1s\"\n").find("slow_call") != std::string::npos);  // the suggestion
}

TEST_CASE("the environment switches turn traces on and win over the config", "[config][observability]") {
  auto c = parse_config("[debug.gil]\ntimeout = \"5s\"\n[log]\nlevel = \"warn\"\n");
  {
    EnvVar trace("GILKEEPER_TRACE", "gil, calls,memory");
    EnvVar timeout("GILKEEPER_GIL_TIMEOUT", "250ms");
    apply_environment(c);
  }
  CHECK(c.debug.gil.trace);
  CHECK(c.debug.trace_calls);
  CHECK(c.debug.memory.track);
  CHECK(c.debug.memory.detect_leaks);
  CHECK(c.debug.gil.timeout == std::chrono::nanoseconds(std::chrono::milliseconds(250)));
  CHECK(c.log.level == LogLevel::debug);  // the traces are debug events
  {
    EnvVar level("GILKEEPER_LOG_LEVEL", "error");
    apply_environment(c);
  }
  CHECK(c.log.level == LogLevel::error);
  {
    EnvVar trace("GILKEEPER_TRACE", "gil,everything");
    CHECK_THROWS_WITH(apply_environment(c), Catch::Contains("GILKEEPER_TRACE") && Catch::Contains("everything"));
  }
  {
    EnvVar timeout("GILKEEPER_GIL_TIMEOUT", "soon");
    CHECK_THROWS_WITH(apply_environment(c), Catch::Contains("GILKEEPER_GIL_TIMEOUT"));
  }
}

TEST_CASE("log events as text and JSON lines, to a file, with stable field names", "[config][observability][log]") {
  LogEvent e;
  e.level = LogLevel::warn;
  e.name = "slow_call";
  e.message = "call m:f has run 1.2s";
  e.with("label", "call m:f").with("elapsed_ms", std::int64_t{1200}).with("in_native", true)
      .with("stack", "Stack (most recent call first):\n  File \"m.py\", line 3 in f\n");
  auto text = log::to_text(e);
  CHECK(text.find(" WARN slow_call: call m:f has run 1.2s label=\"call m:f\" elapsed_ms=1200 in_native=true")
        != std::string::npos);
  CHECK(text.find("\n  stack:\n    Stack (most recent call first):\n      File \"m.py\", line 3 in f") != std::string::npos);
  auto j = nlohmann::json::parse(log::to_json(e));
  CHECK(j["event"] == "slow_call");
  CHECK(j["level"] == "warn");
  CHECK(j["elapsed_ms"] == 1200);
  CHECK(j["in_native"] == true);
  CHECK(j["label"] == "call m:f");

  auto file = test::temp_dir() + "/gk.log";
  LogConfig config;
  config.configured = true;
  config.format = LogFormat::json;
  config.file = file;
  log::configure(config);
  log::emit(e);
  LogEvent quiet = e;
  quiet.level = LogLevel::debug;  // below the level: not written
  log::emit(quiet);
  log::flush();
  log::configure(LogConfig{});
  auto lines = test::read_file(file);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.find('\n') == lines.size() - 1);  // one line
  CHECK(nlohmann::json::parse(lines)["event"] == "slow_call");

  LogConfig unwritable;
  unwritable.file = "/proc/gk-no-such-file/gk.log";  // /proc takes no new files
  CHECK_THROWS_WITH(log::configure(unwritable), Catch::Contains("/proc/gk-no-such-file/gk.log"));
}
