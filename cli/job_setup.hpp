#pragma once

// Getting a job ready, for `run` and `check`: loading its file, starting its
// runtime, checking that each stage's callable resolves.

#include "gilkeeper/gilkeeper.hpp"

#include <cstdio>
#include <memory>
#include <string>

namespace gk::cli {

// Loads a job and checks what the config layer does not: that it has stages
// and uses only what `run` supports. Prints the problem and returns false.
bool load_job(const std::string& path, Config& job);

// `--log FILE` and `--log-format text|json` (either may be empty): they win
// over the config's [log].
void apply_log_options(Config& config, const std::string& file, const std::string& format);

// Starts a runtime for a job; prints why it could not.
std::unique_ptr<Runtime> start_runtime(const Config& job);

// Checks every stage; prints one line per stage (only the failures unless
// `print_ok`) on `out`. True when all resolve.
bool check_stages(Runtime& rt, const Config& job, std::FILE* out, bool print_ok);

} // namespace gk::cli
