// Live progress of a run on stderr: a thread that draws a bar (or prints a
// line) from the pipeline's counters until the run finishes.

#include "cli/progress.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace gk::cli {

namespace {

unsigned long long ull(std::uint64_t n) { return static_cast<unsigned long long>(n); }

} // namespace

Progress::Progress(const ProgressOptions& o, Pipeline& p, Runtime& rt, std::int64_t total)
  : pipeline_(p), rt_(rt), total_(total) {
  bool tty = ::isatty(2) != 0;
  mode_ = o.mode == "always" ? (tty ? 2 : 1) : o.mode == "never" ? 0 : (tty ? 2 : 0);
  if (mode_ != 0)
    thread_ = std::thread([this] { run(); });
}

void Progress::finish() {
  {
    std::lock_guard<std::mutex> g(m_);
    if (stop_)
      return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void Progress::run() {
  auto t0 = steady::now();
  std::unique_lock<std::mutex> lk(m_);
  for (;;) {
    bool stopping = cv_.wait_for(lk, mode_ == 2 ? std::chrono::milliseconds(200) : std::chrono::seconds(2),
                                 [&] { return stop_; });
    draw(t0, stopping);
    if (stopping)
      return;
  }
}

void Progress::draw(steady::time_point t0, bool last) {
  auto p = pipeline_.progress();
  auto done = p.ok + p.failed;
  double secs = std::chrono::duration<double>(steady::now() - t0).count();
  double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  auto restarts = rt_.stats().restarts;
  std::string text;
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
    if (mode_ == 2) {
      int filled = static_cast<int>(frac * 30);
      text += "[" + std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(30 - filled), '.') + "] ";
    }
    text += std::to_string(done) + "/" + std::to_string(total_);
    if (rate > 0 && done < static_cast<std::uint64_t>(total_))
      text += ", ETA " + std::to_string(static_cast<long>((static_cast<double>(total_) - static_cast<double>(done)) / rate)) + "s";
  } else {
    text += std::to_string(done) + " records";
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, ", %.0f/s, %llu failed, %llu restarts", rate, ull(p.failed), ull(restarts));
  text += buf;
  if (mode_ == 2)
    std::fprintf(stderr, "\r%s\033[K%s", text.c_str(), last ? "\n" : "");
  else
    std::fprintf(stderr, "gilkeeper: progress: %s\n", text.c_str());
  std::fflush(stderr);
}

} // namespace gk::cli
