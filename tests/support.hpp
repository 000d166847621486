#pragma once

// Shared helpers for the tests.

#include "gilkeeper/gilkeeper.hpp"

#include <chrono>
#include <string>

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

} // namespace gk::test
