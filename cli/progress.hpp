#pragma once

// Live progress of a run on stderr (see Progress).

#include "cli/job_runner.hpp"

#include "gilkeeper/gilkeeper.hpp"
#include "gilkeeper/runtime/pipeline.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace gk::cli {

// Live progress on stderr: a bar on a terminal, plain lines with
// `--progress always`, nothing with `never` (or `auto` off a terminal).
class Progress {
public:
  Progress(const ProgressOptions& o, Pipeline& p, Runtime& rt, std::int64_t total);
  ~Progress() { finish(); }
  void finish();

private:
  using steady = std::chrono::steady_clock;

  void run();
  void draw(steady::time_point t0, bool last);

  Pipeline& pipeline_;
  Runtime& rt_;
  std::int64_t total_;
  int mode_ = 0;  // 0 none, 1 lines, 2 bar
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

} // namespace gk::cli
