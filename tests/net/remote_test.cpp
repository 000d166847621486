// Remote runtimes in one process: a Server publishing a runtime, clients
// connected with gk::connect (plain TCP and mutual TLS), and pipelines that
// share their records with them.
#include "../support.hpp"

#include "gilkeeper/net/remote.hpp"
#include "gilkeeper/runtime/pipeline.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <catch2/catch.hpp>

#include <unistd.h>

using namespace gk;
using namespace std::chrono_literals;
using gk::test::ms_since;
using gk::test::within;

namespace {

std::unique_ptr<Server> serve(Runtime& rt, ServeOptions options = {}) {
  auto server = Server::start(rt, options);
  INFO((server ? std::string() : server.error().to_string()));
  REQUIRE(server);
  return std::move(*server);
}

std::unique_ptr<RemoteRuntime> connect_to(const Server& server, ConnectOptions options = {}) {
  auto node = connect(server.endpoint(), options);
  INFO((node ? std::string() : node.error().to_string()));
  REQUIRE(node);
  return std::move(*node);
}

// A CA, a node certificate and a client certificate in a fresh directory
// (the documented script).
std::string make_certs() {
  auto dir = gk::test::temp_dir();
  std::string out;
  REQUIRE(gk::test::run_command(std::string(GK_SOURCE_DIR) + "/examples/distributed/make_certs.sh " + dir, &out)
          == 0);
  return dir;
}

} // namespace

TEST_CASE("a remote runtime answers calls, batches, evals and node_info like a local one", "[net]") {
  Runtime rt(test::test_config());
  auto server = serve(rt);
  CHECK(server->port() != 0);
  auto node = connect_to(*server);
  CHECK(node->up());
  CHECK(node->name() == server->endpoint());

  auto sum = node->call("gk_testmod:add", {2, 3});
  REQUIRE(sum);
  CHECK(sum->as_int() == 5);
  auto text = node->call("json:dumps", {Value::list({1, "a"})});
  REQUIRE(text);
  CHECK(text->as_string() == "[1, \"a\"]");
  auto evaluated = node->eval("6 * 7");
  REQUIRE(evaluated);
  CHECK(evaluated->as_int() == 42);
  REQUIRE(node->exec("import gk_testmod\ngk_testmod.REMOTE = 'set remotely'"));
  CHECK(node->getattr("gk_testmod:REMOTE")->as_string() == "set remotely");
  // The node's own runtime: the same interpreter.
  CHECK(rt.getattr("gk_testmod:REMOTE")->as_string() == "set remotely");

  std::vector<CallRequest> calls;
  for (int i = 0; i < 5; ++i)
    calls.push_back(CallRequest{"gk_testmod:add", {i, 10}});
  calls.push_back(CallRequest{"gk_testmod:raise_value_error", {"bad record"}});
  auto results = node->batch(std::move(calls));
  REQUIRE(results);
  REQUIRE(results->size() == 6);
  for (int i = 0; i < 5; ++i)
    CHECK((*results)[static_cast<std::size_t>(i)]->as_int() == i + 10);
  REQUIRE_FALSE((*results)[5]);
  CHECK((*results)[5].error().code == ErrorCode::python_exception);
  CHECK((*results)[5].error().type == "ValueError");

  auto info = node->info();
  CHECK_FALSE(info.version.empty());
  CHECK(info.isolation == "thread");
  CHECK(info.python_version.rfind("3.", 0) == 0);
  CHECK(info.pid == ::getpid());
  auto stats = node->stats();
  REQUIRE(stats);
  REQUIRE(stats->type("call"));
  CHECK(stats->type("call")->calls >= 2);
}

TEST_CASE("a remote call's deadline travels as its budget and the node enforces it", "[net][deadline]") {
  Runtime rt(test::test_config());
  auto server = serve(rt);
  auto node = connect_to(*server);
  auto t0 = std::chrono::steady_clock::now();
  auto r = node->call("gk_testmod:sleep_for", {10.0}, {}, within(300ms));
  auto took = ms_since(t0);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::deadline_exceeded);
  CHECK(took >= 250);
  CHECK(took < 2000 * kTimeFactor);
  // The node interrupted the call: it serves the next one at once.
  CHECK(node->call("gk_testmod:add", {1, 1}, {}, within(2000ms))->as_int() == 2);
  CHECK(node->up());
}

TEST_CASE("Refs and shutdown do not cross nodes; the node keeps serving", "[net]") {
  Runtime rt(test::test_config());
  auto server = serve(rt);
  auto node = connect_to(*server);
  RequestOptions ref;
  ref.want_ref = true;
  auto r = node->call("gk_testmod:make_box", {1}, {}, ref);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::bad_request);
  CHECK(r.error().message.find("Ref cannot travel to another node") != std::string::npos);
  CHECK(rt.stats().live_refs == 0);

  // The typed handle: the same interface as runtime_actor(rt); a remote
  // shutdown is refused.
  caf::scoped_actor self{node->system()};
  auto handle = node->actor();
  REQUIRE(handle);
  std::optional<Error> refused;
  self->request(handle, std::chrono::seconds(10), ShutdownRequest{})
      .receive([&](ShutdownReport&) {}, [&](caf::error& e) { refused = from_caf_error(e); });
  REQUIRE(refused);
  CHECK(refused->code == ErrorCode::bad_request);
  CHECK(refused->message.find("cannot shut a node down") != std::string::npos);
  std::optional<Value> value;
  self->request(handle, std::chrono::seconds(10), CallRequest{"gk_testmod:add", {20, 22}})
      .receive([&](Value& v) { value = v; }, [&](caf::error&) {});
  REQUIRE(value);
  CHECK(value->as_int() == 42);
  CHECK_FALSE(rt.stopped());
}

TEST_CASE("serve refuses a non-loopback address without TLS, incomplete TLS files and a taken port", "[net]") {
  Runtime rt(test::test_config());
  ServeOptions open;
  open.address = "0.0.0.0";
  auto refused = Server::start(rt, open);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ErrorCode::bad_request);
  CHECK(refused.error().message.find("without TLS") != std::string::npos);
  open.insecure = true;
  CHECK(Server::start(rt, open));

  ServeOptions half;
  half.tls.certificate = "/nonexistent/node.pem";
  auto incomplete = Server::start(rt, half);
  REQUIRE_FALSE(incomplete);
  CHECK(incomplete.error().message.find("--tls-key is missing") != std::string::npos);
  half.tls.key = "/nonexistent/node.key";
  half.tls.ca = "/nonexistent/ca.pem";
  auto unreadable = Server::start(rt, half);
  REQUIRE_FALSE(unreadable);
  CHECK(unreadable.error().message.find("cannot read --tls-cert /nonexistent/node.pem") != std::string::npos);

  auto first = serve(rt);
  ServeOptions same;
  same.port = first->port();
  auto taken = Server::start(rt, same);
  // (CAF publishes with SO_REUSEADDR; a second listener on a port in use
  // is still refused by the kernel.)
  REQUIRE_FALSE(taken);
  CHECK(taken.error().message.find("cannot listen on 127.0.0.1:" + std::to_string(first->port()))
        != std::string::npos);

  auto bad = connect("127.0.0.1");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::bad_request);
  CHECK(bad.error().message.find("no port") != std::string::npos);
}

TEST_CASE("mutual TLS: the CA's client is served; another CA's, a plain one and one without a certificate are refused",
          "[net][tls]") {
  auto certs = make_certs();
  auto other = make_certs();
  Runtime rt(test::test_config());
  ServeOptions options;
  options.tls = TlsFiles{certs + "/node.pem", certs + "/node.key", certs + "/ca.pem"};
  auto server = serve(rt, options);

  ConnectOptions good;
  good.tls = TlsFiles{certs + "/client.pem", certs + "/client.key", certs + "/ca.pem"};
  auto node = connect_to(*server, good);
  CHECK(node->call("gk_testmod:add", {40, 2})->as_int() == 42);

  ConnectOptions foreign;
  foreign.tls = TlsFiles{other + "/client.pem", other + "/client.key", certs + "/ca.pem"};
  auto refused = connect(server->endpoint(), foreign);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ErrorCode::node_lost);
  CHECK(refused.error().message.find("cannot connect") != std::string::npos);

  auto plain = connect(server->endpoint());
  REQUIRE_FALSE(plain);
  CHECK(plain.error().code == ErrorCode::node_lost);

  // A TLS client that trusts the CA but presents no certificate (neither
  // the library nor CAF makes one: openssl's own client): the node ends the
  // handshake with TLS 1.3's "certificate required" alert.
  std::string said;
  gk::test::run_command("(sleep 1; printf hello 2>/dev/null) | timeout 20 openssl s_client -connect 127.0.0.1:"
                            + std::to_string(server->port()) + " -CAfile " + certs + "/ca.pem 2>&1",
                        &said);
  CAPTURE(said);
  CHECK(said.find("Verify return code: 0 (ok)") != std::string::npos);  // it was the node it talked to
  CHECK(said.find("alert certificate required") != std::string::npos);
  // The node served its own client throughout.
  CHECK(node->call("gk_testmod:add", {1, 2})->as_int() == 3);
}

TEST_CASE("a pipeline shares a stage's records with a remote runtime: each once, in order", "[net]") {
  Runtime node_rt(test::test_config());
  auto server = serve(node_rt);
  std::shared_ptr<RemoteRuntime> node = connect_to(*server);
  // One interpreter per process in thread isolation: the pipeline's own
  // runtime runs in a worker process.
  Runtime rt(test::process_config());
  for (bool local : {true, false}) {
    CAPTURE(local);
    PipelineOptions options;
    options.remotes = {node};
    options.local = local;
    Pipeline p(rt, {Stage::python("id", "gk_testmod:identity")}, options);
    // Records with strings and nested values: each arrives whole, not only
    // its scalars.
    auto record = [](int i) {
      return Value::dict({{"n", std::int64_t{i}}, {"text", "record " + std::to_string(i)},
                          {"tags", Value::list({"a", Value::dict({{"x", 1.5}})})}});
    };
    std::vector<Value> out;
    p.on_output([&](Output&& o) { out.push_back(std::move(o.value)); });
    p.on_failure([&](Failure&& f) { FAIL("record " << f.id << " failed: " << f.error.to_string()); });
    const int n = 5000;
    for (int i = 0; i < n; ++i)
      REQUIRE(p.push(static_cast<std::uint64_t>(i), record(i)));
    p.close();
    auto report = p.wait();
    REQUIRE(out.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
      REQUIRE(out[static_cast<std::size_t>(i)] == record(i));
    REQUIRE(report.nodes.size() == 1);
    CHECK(report.nodes[0].name == server->endpoint());
    CHECK(report.nodes[0].records > 0);
    CHECK(report.nodes[0].lost == 0);
    if (!local)
      CHECK(report.nodes[0].records == static_cast<std::uint64_t>(n));
  }
  // A stage's Python errors come back from the node with their type,
  // message and traceback.
  PipelineOptions only_node;
  only_node.remotes = {node};
  only_node.local = false;
  Pipeline p(rt, {Stage::python("fail", "gk_testmod:raise_value_error")}, only_node);
  std::vector<Failure> failed;
  p.on_failure([&](Failure&& f) { failed.push_back(std::move(f)); });
  for (int i = 0; i < 20; ++i)
    REQUIRE(p.push(static_cast<std::uint64_t>(i), Value("bad record " + std::to_string(i))));
  p.close();
  p.wait();
  REQUIRE(failed.size() == 20);
  for (auto& f : failed) {
    CHECK(f.error.code == ErrorCode::python_exception);
    CHECK(f.error.type == "ValueError");
    CHECK(f.error.message == "bad record " + std::to_string(f.id));
    CHECK(f.error.traceback.find("raise_value_error") != std::string::npos);
  }
}

TEST_CASE("a node of another gilkeeper version is refused at connect, naming both versions", "[net]") {
  // A stand-in node: the typed interface, published, answering node_info
  // with another version (and nothing else).
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  configure_actor_system(cfg);
  caf::actor_system sys{cfg};
  auto refuse = [](auto&) -> caf::error { return caf::sec::unexpected_message; };
  auto other = sys.spawn([refuse]() -> py_runtime_actor::behavior_type {
    return {
        [refuse](ImportRequest& r) -> caf::result<Value> { return refuse(r); },
        [refuse](CallRequest& r) -> caf::result<Value> { return refuse(r); },
        [refuse](EvalRequest& r) -> caf::result<Value> { return refuse(r); },
        [refuse](ExecRequest& r) -> caf::result<Value> { return refuse(r); },
        [refuse](GetattrRequest& r) -> caf::result<Value> { return refuse(r); },
        [refuse](ReleaseRequest& r) -> caf::result<Value> { return refuse(r); },
        [refuse](BatchRequest& r) -> caf::result<BatchReply> { return refuse(r); },
        [refuse](StatsRequest& r) -> caf::result<Stats> { return refuse(r); },
        [refuse](ShutdownRequest& r) -> caf::result<ShutdownReport> { return refuse(r); },
        [](NodeInfoRequest&) -> caf::result<NodeInfo> {
          NodeInfo info;
          info.version = "0.0.0-other";
          return info;
        },
    };
  });
  auto port = sys.middleman().publish(other, 0, "127.0.0.1");
  REQUIRE(port);
  auto node = connect("127.0.0.1:" + std::to_string(*port));
  REQUIRE_FALSE(node);
  CHECK(node.error().code == ErrorCode::bad_request);
  CHECK(node.error().message.find("runs gilkeeper 0.0.0-other and this client gilkeeper ") != std::string::npos);
  CHECK(node.error().message.find("every node must run the same version") != std::string::npos);
  caf::anon_send_exit(other, caf::exit_reason::user_shutdown);
}
