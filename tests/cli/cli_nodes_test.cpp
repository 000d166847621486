// `gilkeeper serve` processes and `gilkeeper run --nodes` across them:
// every record exactly once and in order, also when a node is killed
// mid-run; a client's node lost and found again.
#include "cli_child.hpp"

#include "gilkeeper/net/remote.hpp"

#include <nlohmann/json.hpp>

#include <future>
#include <regex>
#include <set>

using namespace gk;
using namespace gk::test::cli;
using namespace std::chrono_literals;
using Json = nlohmann::json;

namespace {

// A `gilkeeper serve` child on a free loopback port.
struct Node {
  pid_t pid = -1;
  std::uint16_t port = 0;
  std::string err, out;
  bool reaped = false;

  Node(const std::string& dir, const std::string& name, const std::string& listen = "127.0.0.1:0") {
    std::string config = dir + "/" + name + ".toml";
    write_file(config, "[python]\npath = [\"" + kData + "\"]\n");
    err = dir + "/" + name + ".err";
    out = dir + "/" + name + ".out";
    pid = spawn_cli({"serve", config, "--listen", listen}, err, out);
    std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
    auto until = std::chrono::steady_clock::now() + 30s;
    std::smatch m;
    std::string said;
    while (std::chrono::steady_clock::now() < until) {
      said = gk::test::read_file(out);
      if (std::regex_search(said, m, listening))
        break;
      std::this_thread::sleep_for(5ms);
    }
    INFO("serve said: " << said << gk::test::read_file(err));
    REQUIRE(std::regex_search(said, m, listening));
    port = static_cast<std::uint16_t>(std::stoi(m[1]));
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port); }
  // The exit status as run_cli gives it.
  int stop(int signo = SIGTERM) {
    if (reaped)
      return -1;
    ::kill(pid, signo);
    int status = wait_child(pid);
    reaped = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  ~Node() { stop(SIGKILL); }
};

std::string job(const std::string& dir, const std::string& cluster = "") {
  std::string path = dir + "/job.toml";
  write_file(path, "[python]\npath = [\"" + kData + "\"]\n[cluster]\nheartbeat = \"200ms\"\n" + cluster
                       + "\n[[stage]]\nname = \"nap\"\ncall = \"gk_cli_stages:maybe_sleep\"\n");
  return path;
}

std::string records(int n, const std::string& sleep) {
  std::string text;
  for (int i = 1; i <= n; ++i)
    text += "{\"id\": " + std::to_string(i) + ", \"sleep\": " + sleep + "}\n";
  return text;
}

std::vector<Json> json_lines(const std::string& path) {
  std::vector<Json> out;
  for (auto& line : lines_of(gk::test::read_file(path), true))
    out.push_back(Json::parse(line));
  return out;
}

// Every input line is in exactly one of the two files, the output in order.
void check_each_once(const std::vector<Json>& ok, const std::vector<Json>& failed, int n) {
  std::set<int> seen;
  int last = 0;
  for (auto& j : ok) {
    int line = j["line"].get<int>();
    REQUIRE(line > last);  // in input order
    last = line;
    REQUIRE(j["value"].get<int>() == line);
    REQUIRE(seen.insert(line).second);
  }
  for (auto& j : failed)
    REQUIRE(seen.insert(j["line"].get<int>()).second);
  CHECK(seen.size() == static_cast<std::size_t>(n));
}

} // namespace

TEST_CASE("run --nodes over three serve processes: 20,000 records each once, in order, exit 0", "[cli][net]") {
  auto dir = gk::test::temp_dir();
  Node a(dir, "a"), b(dir, "b"), c(dir, "c");
  const int n = 20000;
  write_file(dir + "/in.jsonl", records(n, "0"));
  int code = run_cli({"run", job(dir), "--input", dir + "/in.jsonl", "--output", dir + "/out.jsonl",
                      "--summary-json", dir + "/summary.json", "--nodes",
                      a.endpoint() + "," + b.endpoint() + "," + c.endpoint(), "--no-local"},
                     dir + "/run.err");
  INFO(gk::test::read_file(dir + "/run.err"));
  CHECK(code == 0);
  auto ok = json_lines(dir + "/out.jsonl");
  CHECK(ok.size() == static_cast<std::size_t>(n));
  check_each_once(ok, json_lines(dir + "/out.jsonl.errors.jsonl"), n);
  auto summary = Json::parse(gk::test::read_file(dir + "/summary.json"));
  std::uint64_t total = 0;
  for (auto* node : {&a, &b, &c}) {
    auto& one = summary["nodes"][node->endpoint()];
    CHECK(one["records"].get<std::uint64_t>() > 0);  // credit spreads the work
    total += one["records"].get<std::uint64_t>();
  }
  CHECK(total == static_cast<std::uint64_t>(n));
  // `gilkeeper check --nodes` names each node's version and stages.
  std::string said;
  CHECK(gk::test::run_command(std::string(GK_CLI_PATH) + " check " + dir + "/job.toml --no-local --nodes "
                                  + a.endpoint() + "," + b.endpoint() + " 2>&1",
                              &said)
        == 0);
  CHECK(said.find("node " + a.endpoint() + ": gilkeeper ") != std::string::npos);
  CHECK(said.find("node " + b.endpoint() + ": stage \"nap\" (gk_cli_stages:maybe_sleep): ok") != std::string::npos);
  // SIGTERM: each node exits cleanly.
  CHECK(a.stop() == 0);
  CHECK(b.stop() == 0);
  CHECK(c.stop() == 0);
}

TEST_CASE("a node SIGKILLed mid-run: its records go to the others (exit 0), or fail node_lost with retries off "
          "(exit 3); one SIGTERMed: exit 0; none lost or twice",
          "[cli][net]") {
  const int n = 20000;
  for (auto [signo, retries] : {std::pair{SIGKILL, true}, std::pair{SIGKILL, false}, std::pair{SIGTERM, true}}) {
    CAPTURE(signo, retries);
    auto dir = gk::test::temp_dir();
    Node a(dir, "a"), b(dir, "b"), c(dir, "c");
    write_file(dir + "/in.jsonl", records(n, "0.0003"));
    pid_t run = spawn_cli({"run", job(dir, retries ? "" : "node_retries = 0"), "--input", dir + "/in.jsonl",
                           "--output", dir + "/out.jsonl", "--summary-json", dir + "/summary.json", "--nodes",
                           a.endpoint() + "," + b.endpoint() + "," + c.endpoint(), "--no-local"},
                          dir + "/run.err");
    // Mid-run: once a few thousand records are out.
    auto until = std::chrono::steady_clock::now() + 60s;
    while (file_size(dir + "/out.jsonl") < 60000 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(2ms);
    // SIGTERM: the node's calls in flight finish, its queue is answered
    // runtime_stopped (sent elsewhere), and it exits 0.
    CHECK(b.stop(signo) == (signo == SIGKILL ? 128 + SIGKILL : 0));
    int status = wait_child(run);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    INFO(gk::test::read_file(dir + "/run.err"));
    auto ok = json_lines(dir + "/out.jsonl");
    auto failed = json_lines(dir + "/out.jsonl.errors.jsonl");
    check_each_once(ok, failed, n);
    auto summary = Json::parse(gk::test::read_file(dir + "/summary.json"));
    if (signo == SIGKILL)
      CHECK(summary["nodes"][b.endpoint()]["lost"].get<std::uint64_t>() > 0);
    if (retries) {
      CHECK(code == 0);
      CHECK(failed.empty());
    } else {
      CHECK(code == 3);
      REQUIRE_FALSE(failed.empty());
      for (auto& f : failed)
        REQUIRE(f["error"]["code"] == "node_lost");
      CHECK(failed.size() == summary["nodes"][b.endpoint()]["lost"].get<std::size_t>());
    }
    CHECK(a.stop() == 0);
    CHECK(c.stop() == 0);
  }
}

TEST_CASE("a client's node: killed, its call fails node_lost; restarted on its port, it is back in rotation",
          "[cli][net]") {
  auto dir = gk::test::temp_dir();
  auto node = std::make_unique<Node>(dir, "a");
  auto endpoint = node->endpoint();
  ConnectOptions options;
  options.heartbeat = 100ms;
  options.reconnect_min = 50ms;
  options.reconnect_max = 200ms;
  auto remote = connect(endpoint, options);
  REQUIRE(remote);
  auto& client = **remote;
  auto pending = std::async(std::launch::async, [&] { return client.call("gk_cli_stages:maybe_sleep",
                                                                          {Value::dict({{"id", 1}, {"sleep", 30}})}); });
  std::this_thread::sleep_for(300ms);
  auto t0 = std::chrono::steady_clock::now();
  node->stop(SIGKILL);
  auto lost = pending.get();
  CHECK(gk::test::ms_since(t0) < 2000 * kTimeFactor);
  REQUIRE_FALSE(lost);
  CHECK(lost.error().code == ErrorCode::node_lost);
  CHECK(lost.error().message.find(endpoint) != std::string::npos);
  CHECK_FALSE(client.up());
  auto down = client.call("gk_cli_stages:identity", {Value::dict({{"x", 1}})});
  REQUIRE_FALSE(down);
  CHECK(down.error().code == ErrorCode::node_lost);

  node = std::make_unique<Node>(dir, "a2", endpoint);
  auto until = std::chrono::steady_clock::now() + 20s;
  while (!client.up() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  REQUIRE(client.up());
  CHECK(client.reconnects() == 1);
  auto back = client.call("gk_cli_stages:maybe_sleep", {Value::dict({{"id", 7}})});
  REQUIRE(back);
  CHECK(back->as_int() == 7);
  CHECK(client.info().pid == node->pid);
}

TEST_CASE("a node that stops answering (SIGSTOP) is lost after its heartbeats, then found again (SIGCONT)",
          "[cli][net]") {
  auto dir = gk::test::temp_dir();
  Node node(dir, "a");
  ConnectOptions options;
  options.heartbeat = 100ms;
  options.heartbeat_misses = 5;
  options.reconnect_min = 50ms;
  options.reconnect_max = 200ms;
  auto remote = connect(node.endpoint(), options);
  REQUIRE(remote);
  auto& client = **remote;
  // Its deadline (then the client's reply slack of 2 s) is further away
  // than the heartbeats' verdict; after SIGCONT the node interrupts it.
  auto pending = std::async(std::launch::async, [&] {
    return client.call("gk_cli_stages:maybe_sleep", {Value::dict({{"id", 1}, {"sleep", 30}})}, {},
                       gk::test::within(1500ms));
  });
  std::this_thread::sleep_for(200ms);
  ::kill(node.pid, SIGSTOP);
  auto t0 = std::chrono::steady_clock::now();
  auto lost = pending.get();
  auto took = gk::test::ms_since(t0);
  REQUIRE_FALSE(lost);
  CHECK(lost.error().code == ErrorCode::node_lost);
  CHECK(lost.error().message.find("heartbeat") != std::string::npos);
  CHECK(took < 3000 * kTimeFactor);
  ::kill(node.pid, SIGCONT);
  auto until = std::chrono::steady_clock::now() + 20s;
  while (!client.up() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  REQUIRE(client.up());
  auto back = client.call("gk_cli_stages:maybe_sleep", {Value::dict({{"id", 5}})});
  REQUIRE(back);
  CHECK(back->as_int() == 5);
}

TEST_CASE("serve refuses a non-loopback address without TLS (exit 2) and says how to listen there", "[cli][net]") {
  auto dir = gk::test::temp_dir();
  write_file(dir + "/rt.toml", "[python]\npath = [\"" + kData + "\"]\n");
  int code = run_cli({"serve", dir + "/rt.toml", "--listen", "0.0.0.0:0"}, dir + "/err");
  CHECK(code == 2);
  auto said = gk::test::read_file(dir + "/err");
  CHECK(said.find("refusing to listen on 0.0.0.0 without TLS") != std::string::npos);
  CHECK(said.find("--insecure") != std::string::npos);
  CHECK(run_cli({"serve", dir + "/rt.toml", "--listen", "localhost"}, dir + "/err2") == 2);
  CHECK(gk::test::read_file(dir + "/err2").find("not host:port") != std::string::npos);
}
