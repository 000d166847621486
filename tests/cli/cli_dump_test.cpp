// kill -QUIT on a running `gilkeeper run`: it prints what the runtime is
// doing (the running record's Python stack, the queue, the workers) and
// the run goes on to the end with every record accounted for.
#include "cli_child.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>

extern char** environ;

using Json = nlohmann::json;
using namespace std::chrono_literals;
using namespace gk::test::cli;

namespace {

void dump_during_run(const std::string& isolation) {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/job.toml", "[python]\npath = [\"" + kData + "\"]\n[runtime]\nisolation = \"" + isolation
                                    + "\"\n[[stage]]\nname = \"nap\"\ncall = \"gk_cli_stages:maybe_sleep\"\n");
  std::string input;
  const int records = 40;
  for (int i = 1; i <= records; ++i)
    input += "{\"id\": " + std::to_string(i) + ", \"sleep\": 0.05}\n";
  write_file(dir + "/in.jsonl", input);
  std::string out = dir + "/out.jsonl", summary = dir + "/s.json", err = dir + "/stderr.txt";
  std::vector<std::string> args = {GK_CLI_PATH, "run",  dir + "/job.toml", "--input",    dir + "/in.jsonl",
                                   "--output",  out,    "--summary-json",  summary,      "--progress",
                                   "never"};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, GK_CLI_PATH, &actions, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  // The run takes about 2 s (40 records of 50 ms, one at a time).
  std::this_thread::sleep_for(800ms);
  ::kill(pid, SIGQUIT);
  int status = 0;
  waitpid(pid, &status, 0);
  std::string stderr_text = gk::test::read_file(err);
  CAPTURE(stderr_text);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(stderr_text.find("gilkeeper: dump (SIGQUIT); the run goes on") != std::string::npos);
  CHECK(stderr_text.find("running: call gk_cli_stages:maybe_sleep") != std::string::npos);
  CHECK(stderr_text.find("in maybe_sleep") != std::string::npos);
  if (isolation == "process")
    CHECK(stderr_text.find("supervisor (process isolation") != std::string::npos);
  // Every record accounted for: the run went on to the end.
  Json s = Json::parse(gk::test::read_file(summary));
  CHECK(s["records"] == records);
  CHECK(s["ok"] == records);
  CHECK(s["interrupted"] == false);
  CHECK(lines_of(gk::test::read_file(out)).size() == static_cast<std::size_t>(records));
}

} // namespace

TEST_CASE("SIGQUIT during a run prints the running record's stack and the run finishes", "[cli][dump]") {
  dump_during_run("thread");
}

TEST_CASE("SIGQUIT during a process-isolation run prints the workers and their stacks", "[cli][dump][process]") {
  dump_during_run("process");
}
