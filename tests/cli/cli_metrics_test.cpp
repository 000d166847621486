// `gilkeeper run --metrics-file / --metrics-listen`: the file is written at
// the end of a run (and during it, on its interval) and parses, counting one
// request per record; GET /metrics answers during a run; an address that
// cannot be bound, or a bad flag, is a usage error before anything runs.
#include "cli_child.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <regex>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>

using namespace std::chrono_literals;
using namespace gk::test::cli;
using gk::test::metric_sum;
using gk::test::MetricSample;

namespace {

const std::string kStage = "gk_cli_stages:gated_sleep";

std::vector<MetricSample> parsed(const std::string& text) {
  std::vector<MetricSample> samples;
  std::string error;
  bool ok = gk::test::parse_metrics(text, samples, error);
  INFO(text);
  INFO(error);
  REQUIRE(ok);
  return samples;
}

// `n` records for the nap job, each sleeping `sleep` s; record `late` (when
// > 0) sleeps past the stage's 300 ms timeout.
std::string records(int n, const std::string& sleep, int late = 0) {
  std::string text;
  for (int i = 1; i <= n; ++i)
    text += "{\"id\": " + std::to_string(i) + ", \"sleep\": " + (i == late ? std::string("5") : sleep) + "}\n";
  return text;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = d ? readdir(d) : nullptr)
    if (e->d_name[0] != '.')
      names.push_back(e->d_name);
  if (d)
    closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// True while the child runs; `status` gets its wait status once it ended.
bool still_running(pid_t pid, int& status) {
  return waitpid(pid, &status, WNOHANG) == 0;
}

} // namespace

TEST_CASE("run --metrics-file holds the run's metrics at its end, counting one request per record", "[cli][metrics]") {
  auto dir = gk::test::temp_dir();
  auto job = write_nap_job(dir, "", "timeout = \"300ms\"\n");
  write_file(dir + "/in.jsonl", records(40, "0", 7));
  int status = run_cli({"run", job, "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl", "--metrics-file",
                        dir + "/run.prom"},
                       dir + "/stderr.txt");
  auto err = gk::test::read_file(dir + "/stderr.txt");
  INFO(err);
  CHECK(status == 3);  // record 7 missed its deadline

  auto lines = lines_of(gk::test::read_file(dir + "/out.jsonl")).size()
               + lines_of(gk::test::read_file(dir + "/out.jsonl.errors.jsonl")).size();
  CHECK(lines == 40);
  auto text = gk::test::read_file(dir + "/run.prom");
  REQUIRE_FALSE(text.empty());
  auto m = parsed(text);
  // The stage's calls; the run's check of the stage is a getattr of the same target.
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"type", "batch"}, {"target", kStage}})
        == static_cast<double>(lines));
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"type", "getattr"}, {"target", kStage}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"type", "batch"}, {"target", kStage}, {"outcome", "ok"}}) == 39);
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"type", "batch"}, {"target", kStage}, {"outcome", "deadline_exceeded"}})
        == 1);
  CHECK(metric_sum(m, "gilkeeper_deadline_misses_total", {{"type", "batch"}, {"phase", "soft"}}) == 1);
  CHECK(metric_sum(m, "gilkeeper_info", {{"isolation", "thread"}}) == 1);
  // Written through a file beside it, renamed: nothing else is left.
  CHECK(files_in(dir) == std::vector<std::string>{"in.jsonl", "job.toml", "out.jsonl", "out.jsonl.errors.jsonl",
                                                  "run.prom", "stderr.txt"});
}

TEST_CASE("run --metrics-file rewrites the file during a run, every --metrics-interval", "[cli][metrics]") {
  auto dir = gk::test::temp_dir();
  // One record per request: the counts grow record by record.
  auto job = write_nap_job(dir, "", "timeout = \"2s\"\nbatch_size = 1\n");
  // About 2 s of work, one record at a time.
  write_file(dir + "/in.jsonl", records(20, "0.1"));
  auto metrics_file = dir + "/run.prom";
  pid_t pid = spawn_cli({"run", job, "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl", "--metrics-file",
                         metrics_file, "--metrics-interval", "100ms"},
                        dir + "/stderr.txt");
  int status = 0;
  std::string during;
  auto until = std::chrono::steady_clock::now() + 60s;
  bool running = true;
  // A rewrite that shows some records done, seen while the run goes on.
  while ((running = still_running(pid, status)) && std::chrono::steady_clock::now() < until) {
    auto text = gk::test::read_file(metrics_file);
    if (text.find("type=\"batch\",target=\"" + kStage + "\"") != std::string::npos) {
      during = text;
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  INFO(gk::test::read_file(dir + "/stderr.txt"));
  CHECK(running);
  if (running)
    status = wait_child(pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  REQUIRE_FALSE(during.empty());
  auto m = parsed(during);
  double seen = metric_sum(m, "gilkeeper_requests_total", {{"type", "batch"}, {"target", kStage}});
  CHECK(seen >= 1);
  CHECK(seen < 20);
  auto last = parsed(gk::test::read_file(metrics_file));
  CHECK(metric_sum(last, "gilkeeper_requests_total", {{"type", "batch"}, {"target", kStage}, {"outcome", "ok"}}) == 20);
}

TEST_CASE("run --metrics-listen serves GET /metrics during a run and stops with it", "[cli][metrics]") {
  auto dir = gk::test::temp_dir();
  // One record per request: the counts grow record by record.
  auto job = write_nap_job(dir, "", "timeout = \"2s\"\nbatch_size = 1\n");
  write_file(dir + "/in.jsonl", records(30, "0.1"));
  auto err_path = dir + "/stderr.txt";
  pid_t pid = spawn_cli({"run", job, "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl",
                         "--metrics-listen", "127.0.0.1:0"},
                        err_path);
  // The CLI says where it listens (port 0: a free one).
  std::smatch where;
  std::regex said("metrics at (http://127\\.0\\.0\\.1:[0-9]+/metrics)");
  std::string err;
  int status = 0;
  auto until = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < until) {
    err = gk::test::read_file(err_path);
    if (std::regex_search(err, where, said) || !still_running(pid, status))
      break;
    std::this_thread::sleep_for(2ms);
  }
  INFO(err);
  REQUIRE(where.size() == 2);
  std::string url = where[1];

  // Fetched with Python's urllib once some records are done.
  std::string body;
  std::string fetch = "/usr/bin/python3 -c \"import sys, urllib.request; r = urllib.request.urlopen(sys.argv[1], "
                      "timeout=10); print(r.headers['Content-Type']); sys.stdout.write(r.read().decode())\" "
                      + url;
  until = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < until) {
    REQUIRE(gk::test::run_command(fetch + " 2>&1", &body) == 0);
    if (body.find("type=\"batch\",target=\"" + kStage + "\"") != std::string::npos)
      break;
    std::this_thread::sleep_for(20ms);
  }
  auto newline = body.find('\n');
  REQUIRE(newline != std::string::npos);
  CHECK(body.substr(0, newline) == "text/plain; version=0.0.4; charset=utf-8");
  auto m = parsed(body.substr(newline + 1));
  CHECK(metric_sum(m, "gilkeeper_requests_total", {{"type", "batch"}, {"target", kStage}}) >= 1);
  CHECK(metric_sum(m, "gilkeeper_info", {{"isolation", "thread"}}) == 1);
  // Anything else is not found.
  std::string other = url.substr(0, url.size() - std::string("metrics").size()) + "other";
  std::string out;
  CHECK(gk::test::run_command("/usr/bin/python3 -c \"import sys, urllib.request, urllib.error\n"
                              "try:\n  urllib.request.urlopen(sys.argv[1], timeout=10)\n"
                              "except urllib.error.HTTPError as e:\n  print(e.code)\" "
                                  + other,
                              &out)
        == 0);
  CHECK(out == "404\n");

  // The run ends by itself: the server stops and is joined.
  CHECK(still_running(pid, status));
  status = wait_child(pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(gk::test::run_command(fetch + " > /dev/null 2>&1") != 0);
}

TEST_CASE("run --metrics-listen on an address that cannot be bound exits 2 before anything runs", "[cli][metrics]") {
  auto dir = gk::test::temp_dir();
  auto job = write_nap_job(dir);
  write_file(dir + "/in.jsonl", records(3, "0"));
  auto out = dir + "/out.jsonl";

  SECTION("an address this machine does not have") {
    int status = run_cli({"run", job, "--input", dir + "/in.jsonl", "--output", out, "--metrics-listen", "192.0.2.1:9"},
                         dir + "/stderr.txt");
    auto err = gk::test::read_file(dir + "/stderr.txt");
    INFO(err);
    CHECK(status == 2);
    CHECK(err.find("cannot listen on 192.0.2.1:9 (--metrics-listen)") != std::string::npos);
  }
  SECTION("a port another socket listens on") {
    int busy = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(busy >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(busy, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(busy, 1) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(busy, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    std::string port = std::to_string(ntohs(a.sin_port));
    int status = run_cli({"run", job, "--input", dir + "/in.jsonl", "--output", out, "--metrics-listen", port},
                         dir + "/stderr.txt");
    ::close(busy);
    auto err = gk::test::read_file(dir + "/stderr.txt");
    INFO(err);
    CHECK(status == 2);
    CHECK(err.find("cannot listen on 127.0.0.1:" + port) != std::string::npos);
    CHECK(err.find("Address already in use") != std::string::npos);
  }
  // Nothing ran: the output was never created.
  CHECK(::access(out.c_str(), F_OK) != 0);
}

TEST_CASE("a malformed --metrics-listen or --metrics-interval, or --metrics-file -, is a usage error",
          "[cli][metrics]") {
  auto dir = gk::test::temp_dir();
  auto job = write_nap_job(dir);
  write_file(dir + "/in.jsonl", records(1, "0"));
  for (std::vector<std::string> flags : {std::vector<std::string>{"--metrics-listen", "nope"},
                                         {"--metrics-listen", "127.0.0.1:70000"},
                                         {"--metrics-listen", "::1:9100"},
                                         {"--metrics-file", dir + "/m.prom", "--metrics-interval", "0s"},
                                         {"--metrics-file", dir + "/m.prom", "--metrics-interval", "soon"},
                                         {"--metrics-file", "-"},
                                         {"--metrics-file", dir + "/no/such/dir/m.prom"}}) {
    std::vector<std::string> args = {"run", job, "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl"};
    args.insert(args.end(), flags.begin(), flags.end());
    CAPTURE(flags);
    int status = run_cli(args, dir + "/stderr.txt");
    INFO(gk::test::read_file(dir + "/stderr.txt"));
    CHECK(status == 2);
  }
  CHECK(::access((dir + "/out.jsonl").c_str(), F_OK) != 0);
}
