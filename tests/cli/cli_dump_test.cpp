// kill -QUIT on a running `gilkeeper run`: it prints what the runtime is
// doing (the running record's Python stack, the queue, the workers) and
// the run goes on to the end with every record accounted for.
#include "cli_child.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <sys/wait.h>
#include <thread>

using Json = nlohmann::json;
using namespace std::chrono_literals;
using namespace gk::test::cli;

namespace {

void dump_during_run(const std::string& isolation) {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/job.toml", "[python]\npath = [\"" + kData + "\"]\n[runtime]\nisolation = \"" + isolation
                                    + "\"\n[[stage]]\nname = \"nap\"\ncall = \"gk_cli_stages:maybe_sleep\"\n");
  std::string input;
  // Records of 0.5 s: the dump lands in the middle of one, not between two.
  const int records = 6;
  for (int i = 1; i <= records; ++i)
    input += "{\"id\": " + std::to_string(i) + ", \"sleep\": 0.5}\n";
  write_file(dir + "/in.jsonl", input);
  std::string out = dir + "/out.jsonl", summary = dir + "/s.json", err = dir + "/stderr.txt";
  pid_t pid = spawn_cli({"run", dir + "/job.toml", "--input", dir + "/in.jsonl", "--output", out, "--summary-json",
                         summary, "--progress", "never"},
                        err);
  // The run takes about 3 s (one record at a time): 1.25 s is mid-record.
  std::this_thread::sleep_for(1250ms);
  ::kill(pid, SIGQUIT);
  int status = wait_child(pid);
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

TEST_CASE("a bad GILKEEPER_TRACE is a usage error naming the variable, and nothing runs", "[cli][observability]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/job.toml", "[python]\npath = [\"" + kData + "\"]\n[[stage]]\nname = \"nap\"\n"
                                    "call = \"gk_cli_stages:maybe_sleep\"\n");
  write_file(dir + "/in.jsonl", "{\"id\": 1}\n");
  ::setenv("GILKEEPER_TRACE", "gil,everything", 1);
  int status = run_cli({"run", dir + "/job.toml", "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl"},
                       dir + "/stderr.txt");
  ::unsetenv("GILKEEPER_TRACE");
  auto err = gk::test::read_file(dir + "/stderr.txt");
  CAPTURE(err);
  CHECK(status == 2);
  CHECK(err.find("GILKEEPER_TRACE") != std::string::npos);
  CHECK(err.find("everything") != std::string::npos);
  CHECK(gk::test::read_file(dir + "/out.jsonl").empty());
}
