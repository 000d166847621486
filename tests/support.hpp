#pragma once

// Shared helpers for the tests.

#include "gilkeeper/gilkeeper.hpp"

#include <chrono>
#include <string>

namespace gk::test {

/// A config whose python path holds tests/python and the test extension.
Config test_config(const std::string& extra_toml = "");

/// Milliseconds since `t0`.
double ms_since(std::chrono::steady_clock::time_point t0);

/// Runs a shell command; returns its exit status and fills stdout.
int run_command(const std::string& cmd, std::string* out = nullptr);

/// Reads a whole file ("" when missing).
std::string read_file(const std::string& path);

/// A fresh temporary directory (removed by the OS's tmp cleanup).
std::string temp_dir();

} // namespace gk::test
