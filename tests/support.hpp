#pragma once

// Shared helpers for the tests.

#include "gilkeeper/gilkeeper.hpp"

#include <chrono>
#include <map>
#include <string>
#include <vector>

// The tag of a test that sets an address-space limit (RLIMIT_AS): ASan and
// TSan reserve terabytes of shadow address space, so no limit a test can set
// lets the process start. Under a sanitizer build (GK_TEST_SANITIZER) the tag
// hides the test ("[." in Catch), so ctest does not list it; it can still be
// run by name.
#ifdef GK_TEST_SANITIZER
#define GK_TAG_RLIMIT_AS "[.rlimit-as-cannot-run-under-a-sanitizer]"
#else
#define GK_TAG_RLIMIT_AS "[rlimit-as]"
#endif

/// How much longer timed bounds may be in this build: several times under a
/// sanitizer (instrumented code, slower start of worker processes).
#ifdef GK_TEST_SANITIZER
inline constexpr int kTimeFactor = 4;
#else
inline constexpr int kTimeFactor = 1;
#endif

// The tag of a test that loads the machine for a minute and bounds the
// host's memory: it runs alone ([serial] tests are RUN_SERIAL in ctest), and
// not under a sanitizer (whose quarantine and shadow memory are the RSS it
// would measure).
#ifdef GK_TEST_SANITIZER
#define GK_TAG_SERIAL_LOAD "[.load-test-not-under-a-sanitizer]"
#else
#define GK_TAG_SERIAL_LOAD "[serial]"
#endif

namespace gk::test {

/// A config whose python path holds tests/python and the test extension.
Config test_config(const std::string& extra_toml = "");

/// test_config with process isolation (and `extra` under [runtime]).
Config process_config(const std::string& extra = "");

/// Options of a request whose deadline is `ms` from now.
RequestOptions within(std::chrono::milliseconds ms);

/// How many worker processes were replaced for `cause` so far.
std::uint64_t restarts(Runtime& rt, const std::string& cause);

/// Milliseconds since `t0`.
double ms_since(std::chrono::steady_clock::time_point t0);

/// Runs a shell command; returns its exit status and fills stdout.
int run_command(const std::string& cmd, std::string* out = nullptr);

/// Reads a whole file ("" when missing).
std::string read_file(const std::string& path);

/// A fresh temporary directory (removed by the OS's tmp cleanup).
std::string temp_dir();

/// One sample of a Prometheus text exposition, as prometheus_client's
/// parser reads it (a counter's family name loses its `_total`).
struct MetricSample {
  std::string family;
  std::string type;  ///< the family's: "counter", "gauge", "histogram"
  std::string name;  ///< the sample's: "gilkeeper_requests_total", "..._bucket"
  std::map<std::string, std::string> labels;
  double value = 0;
};

/// Parses an exposition with prometheus_client's text parser
/// (`text_string_to_metric_families`, run by /usr/bin/python3). False, with
/// the parser's complaint in `error`, when it does not parse.
bool parse_metrics(const std::string& text, std::vector<MetricSample>& samples, std::string& error);

/// The sum of the samples named `name` whose labels include all of `labels`.
double metric_sum(const std::vector<MetricSample>& samples, const std::string& name,
                  const std::map<std::string, std::string>& labels = {});

} // namespace gk::test
