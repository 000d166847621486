#pragma once

// The CLI as a child process, for the tests that signal it, kill it or limit
// it: starting `gilkeeper run`, waiting for it, and reading what it wrote.

#include "../support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <spawn.h>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace gk::test::cli {

inline const std::string kData = std::string(GK_TEST_DATA_DIR) + "/cli/";

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Starts `gilkeeper ARGS` with stdin from /dev/null and stderr to
// `stderr_path`; stdout too unless `stdout_path` is given.
inline pid_t spawn_cli(const std::vector<std::string>& args, const std::string& stderr_path,
                       const std::string& stdout_path = "") {
  std::vector<std::string> all = {GK_CLI_PATH};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (stdout_path.empty())
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
  else
    posix_spawn_file_actions_addopen(&fa, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, GK_CLI_PATH, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE(rc == 0);
  return pid;
}

// Waits for the child; its wait status.
inline int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Runs `gilkeeper ARGS` to its end; its exit status (128 + signal when
// killed).
inline int run_cli(const std::vector<std::string>& args, const std::string& stderr_path) {
  int status = wait_child(spawn_cli(args, stderr_path));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The signals a process blocks (its /proc status); 0 once it is gone.
inline unsigned long long blocked_signals(pid_t pid) {
  std::istringstream status(gk::test::read_file("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("SigBlk:", 0) == 0)
      return std::strtoull(line.c_str() + 7, nullptr, 16);
  return 0;
}

inline bool blocks(unsigned long long mask, int signo) { return (mask >> (signo - 1)) & 1; }

// Waits until the child blocks SIGINT and SIGTERM: from then on, they are
// the CLI's to handle (before, a signal kills the process as it would any
// program still being loaded). False when it never does (10 s).
inline bool wait_until_stop_signals_blocked(pid_t pid) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    auto mask = blocked_signals(pid);
    if (blocks(mask, SIGINT) && blocks(mask, SIGTERM))
      return true;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return false;
}

// Waits (up to 60 s) for `path` to exist.
inline bool wait_for_file(const std::string& path) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (::access(path.c_str(), F_OK) != 0) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

inline std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

// The lines of a text, each without its newline; a last line without one is
// left out when `whole_only`.
inline std::vector<std::string> lines_of(const std::string& text, bool whole_only = false) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) {
      if (!whole_only)
        lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// A job of one stage (gk_cli_stages:gated_sleep) in `dir`, with
// `runtime_extra` under [runtime] and `stage_extra` in the stage.
inline std::string write_nap_job(const std::string& dir, const std::string& runtime_extra = "",
                                 const std::string& stage_extra = "") {
  std::string path = dir + "/job.toml";
  write_file(path, "[python]\npath = [\"" + kData + "\"]\n[runtime]\n" + runtime_extra +
                       "\n[[stage]]\nname = \"nap\"\ncall = \"gk_cli_stages:gated_sleep\"\n" + stage_extra);
  return path;
}

// `lines` input lines for the nap job, each record sleeping `sleep` s:
// most succeed; every 13th has no id (KeyError), every 97th is not JSON,
// every 101st is blank. Line `gate_line` (when > 0) waits for the file
// `gate` (see gated_sleep).
inline std::string mixed_input(int lines, const std::string& sleep, int gate_line = 0,
                               const std::string& gate = "") {
  std::string text;
  for (int i = 1; i <= lines; ++i) {
    if (i == gate_line)
      text += "{\"id\": " + std::to_string(i) + ", \"gate\": \"" + gate + "\"}\n";
    else if (i % 97 == 0)
      text += "not json " + std::to_string(i) + "\n";
    else if (i % 101 == 0)
      text += "\n";
    else if (i % 13 == 0)
      text += "{\"sleep\": " + sleep + "}\n";
    else
      text += "{\"id\": " + std::to_string(i) + ", \"sleep\": " + sleep + "}\n";
  }
  return text;
}

} // namespace gk::test::cli
