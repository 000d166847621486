// Faults cost only the records they hit: gilkeeper run over records of which
// some raise, sleep or spin past their deadline, hang in C, segfault, exit or
// hoard memory, while its workers are SIGKILLed from outside every 200 ms.
#include "cli_child.hpp"
#include "../support_proc.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <dirent.h>
#include <iostream>
#include <map>
#include <random>
#include <set>

using Json = nlohmann::json;
using namespace gk::test::cli;
using namespace std::chrono_literals;

namespace {

// Worker processes started for host `host` still alive (their command line
// names it), wherever they were reparented.
int workers_left(int host) {
  int n = 0;
  DIR* d = opendir("/proc");
  while (dirent* e = d ? readdir(d) : nullptr) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0)
      continue;
    auto cmd = gk::test::read_file("/proc/" + std::to_string(pid) + "/cmdline");
    for (auto& c : cmd)
      if (c == '\0')
        c = ' ';
    auto stat = gk::test::read_file("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    bool zombie = close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
    if (!zombie && cmd.find("worker --fd 3 --parent " + std::to_string(host) + " ") != std::string::npos)
      n++;
  }
  if (d)
    closedir(d);
  return n;
}

std::vector<Json> json_lines(const std::string& text) {
  std::vector<Json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    out.push_back(Json::parse(line));
  return out;
}

} // namespace

TEST_CASE("under a fault mix and outside SIGKILLs every 200 ms, every record comes out once and every good one "
          "succeeds",
          "[cli][process][faults]") {
  constexpr int records = 20000;
  const std::vector<std::string> kinds = {"raise", "sleep", "spin", "hang_c", "segfault", "exit", "hoard"};
  auto dir = gk::test::temp_dir();
  std::mt19937 rng(20261129);
  std::map<int, std::string> faults;
  {
    std::ofstream in(dir + "/in.jsonl");
    for (int id = 1; id <= records; ++id) {
      Json rec = {{"id", id}};
      if (rng() % 200 == 0) {
        faults[id] = kinds[rng() % kinds.size()];
        rec["fault"] = faults[id];
      }
      in << rec.dump() << "\n";
    }
  }
  write_file(dir + "/job.toml", "[python]\npath = [\"" + kData + "\", \"" + GK_TEST_EXT_DIR + "\"]\n"
                                "[runtime]\nisolation = \"process\"\nworkers = 2\nmax_memory = \"256MiB\"\n"
                                "[timeouts]\ncall = \"100ms\"\ngrace = \"100ms\"\n"
                                "[[stage]]\nname = \"faulty\"\ncall = \"gk_cli_faults:run\"\nretries = 2\n");
  auto t0 = std::chrono::steady_clock::now();
  pid_t cli = spawn_cli({"run", dir + "/job.toml", "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl",
                         "--errors", dir + "/errors.jsonl", "--summary-json", dir + "/summary.json", "--progress",
                         "never"},
                        dir + "/stderr.txt");
  std::atomic<bool> done{false};
  std::atomic<int> kills{0};
  std::thread killer([&] {
    std::mt19937 pick(7);
    while (!done.load()) {
      std::this_thread::sleep_for(200ms);
      std::vector<int> workers;
      for (auto& child : gk::test::children_of(cli))
        if (child.state != 'Z')
          workers.push_back(child.pid);
      if (workers.empty())
        continue;
      if (::kill(workers[pick() % workers.size()], SIGKILL) == 0)
        kills++;
    }
  });
  int status = wait_child(cli);
  done = true;
  killer.join();
  double seconds = gk::test::ms_since(t0) / 1000;
  auto err = gk::test::read_file(dir + "/stderr.txt");
  INFO(err.substr(0, 4000));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 3);  // the faults failed

  auto out = json_lines(gk::test::read_file(dir + "/out.jsonl"));
  auto errors = json_lines(gk::test::read_file(dir + "/errors.jsonl"));
  std::map<std::string, int> by_code;
  std::set<int> seen;
  int good_failed = 0, duplicates = 0;
  for (auto& rec : out) {
    int id = rec["value"]["id"].get<int>();
    duplicates += !seen.insert(id).second;
  }
  for (auto& e : errors) {
    int id = e["input"]["id"].get<int>();
    duplicates += !seen.insert(id).second;
    by_code[e["error"]["code"].get<std::string>()]++;
    if (!faults.count(id)) {
      good_failed++;
      UNSCOPED_INFO("good record " << id << " failed: " << e["error"].dump());
    }
  }
  std::ostringstream codes;
  for (auto& [code, n] : by_code)
    codes << code << " " << n << ", ";
  INFO(records << " records, " << faults.size() << " faults, " << kills.load() << " outside kills, " << seconds
               << " s; ok " << out.size() << ", failed " << errors.size() << " (" << codes.str() << ")");
  CHECK(duplicates == 0);
  CHECK(seen.size() == static_cast<std::size_t>(records));
  CHECK(out.size() + errors.size() == static_cast<std::size_t>(records));
  CHECK(good_failed == 0);
  CHECK(kills.load() > 0);
  // In order: the output's ids increase.
  bool ordered = true;
  for (std::size_t i = 1; i < out.size(); ++i)
    ordered = ordered && out[i - 1]["line"].get<int>() < out[i]["line"].get<int>();
  CHECK(ordered);
  CHECK(workers_left(cli) == 0);
  // For the record, printed by `ctest -V`.
  std::cout << "fault mix: " << records << " records, " << faults.size() << " faults, " << kills.load()
            << " outside kills, " << seconds << " s; ok " << out.size() << ", failed " << errors.size() << " ("
            << codes.str() << ")\n";
}
