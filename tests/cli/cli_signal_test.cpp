// SIGINT / SIGTERM during a CLI run, from its first instruction on: exit
// 130, the summary is written, every line read is in the output or the
// errors exactly once, no worker process is left behind, and the workers do
// not inherit the CLI's blocked signals.
#include "cli_child.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <dirent.h>
#include <fstream>
#include <set>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>

extern char** environ;

using Json = nlohmann::json;
using namespace std::chrono_literals;
using namespace gk::test::cli;

namespace {

// Processes started as workers of `parent` that still exist.
int workers_of(int parent) {
  int n = 0;
  std::string needle = std::string("--parent") + '\0' + std::to_string(parent) + '\0';
  DIR* d = opendir("/proc");
  while (dirent* e = d ? readdir(d) : nullptr) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0)
      continue;
    std::string cmdline = gk::test::read_file("/proc/" + std::to_string(pid) + "/cmdline");
    if (cmdline.find(needle) != std::string::npos)
      n++;
  }
  if (d)
    closedir(d);
  return n;
}

void interrupt_run(const std::string& isolation, int signo) {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/job.toml", "[python]\npath = [\"" + kData + "\"]\n[runtime]\nisolation = \"" + isolation +
                                    "\"\n[[stage]]\nname = \"nap\"\ncall = \"gk_cli_stages:maybe_sleep\"\n"
                                    "parallelism = 2\n");
  std::string input;
  // More records than a run keeps in flight (reading stops at that bound).
  for (int i = 1; i <= 4000; ++i)
    input += "{\"id\": " + std::to_string(i) + ", \"sleep\": 0.01}\n";
  write_file(dir + "/in.jsonl", input);
  std::string out = dir + "/out.jsonl", summary = dir + "/s.json";
  std::vector<std::string> args = {GK_CLI_PATH, "run", dir + "/job.toml", "--input", dir + "/in.jsonl",
                                   "--output", out, "--summary-json", summary, "--progress", "never"};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, GK_CLI_PATH, nullptr, nullptr, argv.data(), environ) == 0);
  std::this_thread::sleep_for(1000ms);
  ::kill(pid, signo);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);

  Json s = Json::parse(gk::test::read_file(summary));
  CHECK(s["interrupted"] == true);
  int records = s["records"];
  CHECK(records > 0);
  CHECK(records < 4000);  // it really stopped early
  // Every line read is in the output or the errors, exactly once.
  std::set<int> seen;
  int lines = 0;
  for (const std::string& file : {out, out + ".errors.jsonl"}) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      auto j = Json::parse(line);
      int n = j["line"];
      CHECK(seen.insert(n).second);
      lines++;
    }
  }
  CHECK(lines == records);
  CHECK(static_cast<int>(s["ok"]) + static_cast<int>(s["failed"]) == records);
  // The lines read are the first ones, with no gap.
  for (int i = 1; i <= records; ++i)
    CHECK(seen.count(i) == 1);
  CHECK(workers_of(pid) == 0);
}

} // namespace

TEST_CASE("SIGINT in the middle of a run exits 130 with every line read accounted for", "[cli][signal]") {
  interrupt_run("thread", SIGINT);
}

TEST_CASE("SIGTERM in the middle of a process-isolation run exits 130 and leaves no worker behind",
          "[cli][signal][process]") {
  interrupt_run("process", SIGTERM);
}

TEST_CASE("SIGINT at moments from 0 to 300 ms after start exits 130 with the output, errors and summary written "
          "and every record accounted for",
          "[cli][signal]") {
  auto dir = gk::test::temp_dir();
  std::string job = write_nap_job(dir);
  write_file(dir + "/in.jsonl", mixed_input(2000, "0.001"));
  // 0 to 10 ms: mostly before or while the runtime starts; 50 and 300 ms:
  // mostly while the records run.
  for (int delay_ms : {0, 1, 2, 5, 10, 50, 300}) {
    DYNAMIC_SECTION("SIGINT " << delay_ms << " ms after start") {
      std::string out = dir + "/out" + std::to_string(delay_ms) + ".jsonl", summary = out + ".summary.json";
      pid_t pid = spawn_cli({"run", job, "--input", dir + "/in.jsonl", "--output", out, "--summary-json", summary,
                             "--progress", "never"},
                            out + ".stderr");
      // "Start" is the moment main has blocked the stop signals: before it
      // the program is still being loaded, and a signal then kills any
      // program (no code of its own runs yet).
      REQUIRE(wait_until_stop_signals_blocked(pid));
      if (delay_ms > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      ::kill(pid, SIGINT);
      int status = wait_child(pid);
      INFO(gk::test::read_file(out + ".stderr"));
      REQUIRE(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 130);
      REQUIRE(file_size(summary) > 0);
      Json s = Json::parse(gk::test::read_file(summary));
      CHECK(s["interrupted"] == true);
      CHECK(s["not_written"] == 0);
      int records = s["records"], ok = s["ok"], failed = s["failed"];
      CHECK(ok + failed == records);
      // Every record read is in one file, once; the others never started.
      auto ok_lines = lines_of(gk::test::read_file(out));
      auto error_lines = lines_of(gk::test::read_file(out + ".errors.jsonl"));
      CHECK(static_cast<int>(ok_lines.size()) == ok);
      CHECK(static_cast<int>(error_lines.size()) == failed);
      std::set<int> seen;
      for (auto* lines : {&ok_lines, &error_lines})
        for (auto& l : *lines)
          CHECK(seen.insert(Json::parse(l)["line"].get<int>()).second);
      // The records read are the first ones of the input.
      auto input = lines_of(gk::test::read_file(dir + "/in.jsonl"));
      int first_records = 0;
      for (int line = 1; first_records < records && line <= static_cast<int>(input.size()); ++line) {
        if (input[static_cast<std::size_t>(line - 1)].empty())
          continue;
        CHECK(seen.count(line) == 1);
        ++first_records;
      }
    }
  }
}

TEST_CASE("worker processes run with SIGINT and SIGTERM unblocked while the CLI blocks them",
          "[cli][signal][process]") {
  auto dir = gk::test::temp_dir();
  std::string job = write_nap_job(dir, "isolation = \"process\"\nworkers = 2\n");
  write_file(dir + "/in.jsonl", mixed_input(400, "0.01"));
  std::string out = dir + "/out.jsonl";
  pid_t pid = spawn_cli({"run", job, "--input", dir + "/in.jsonl", "--output", out, "--progress", "never"},
                        dir + "/stderr.txt");
  // Once results come, the workers run.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (file_size(out) == 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto cli_mask = blocked_signals(pid);
  std::vector<unsigned long long> worker_masks;
  std::string needle = std::string("--parent") + '\0' + std::to_string(pid) + '\0';
  DIR* d = opendir("/proc");
  while (dirent* e = d ? readdir(d) : nullptr) {
    int child = std::atoi(e->d_name);
    if (child > 0 && gk::test::read_file("/proc/" + std::to_string(child) + "/cmdline").find(needle)
                         != std::string::npos)
      worker_masks.push_back(blocked_signals(child));
  }
  if (d)
    closedir(d);
  ::kill(pid, SIGTERM);
  int status = wait_child(pid);
  INFO(gk::test::read_file(dir + "/stderr.txt"));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(blocks(cli_mask, SIGINT));
  CHECK(blocks(cli_mask, SIGTERM));
  REQUIRE(!worker_masks.empty());
  for (auto mask : worker_masks) {
    CHECK_FALSE(blocks(mask, SIGINT));
    CHECK_FALSE(blocks(mask, SIGTERM));
  }
}
