// SIGINT / SIGTERM in the middle of a CLI run: exit 130, the summary is
// written, every line read is in the output or the errors exactly once, and
// no worker process is left behind.
#include "../support.hpp"

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

namespace {

const std::string kData = std::string(GK_TEST_DATA_DIR) + "/cli/";

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

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
