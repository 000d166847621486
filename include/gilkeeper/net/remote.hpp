#pragma once

/// Remote runtimes: a runtime published to other machines over CAF's
/// network layer (`gk::Server`, what `gilkeeper serve` runs) and a client's
/// handle to one (`gk::connect`), with mutual TLS through CAF's OpenSSL
/// module.
///
/// ```
/// gk::TlsFiles tls{"client.pem", "client.key", "ca.pem"};
/// auto node = gk::connect("10.0.0.7:7100", {tls});
/// if (!node) { std::cerr << node.error().to_string() << "\n"; return 1; }
/// auto r = (*node)->call("json:dumps", {gk::Value::list({1, 2})},
///                        {}, gk::RequestOptions::with_deadline(gk::Deadline::after(2s)));
/// ```
///
/// A remote runtime is the node's PyRuntime actor itself, reached through
/// CAF's middleman: the same typed messages, and `actor()` is the same
/// typed interface as `gk::runtime_actor(rt)`. Deadlines travel as the
/// remaining budget (no clock is compared across machines) and the node
/// enforces them with its own interrupts and kills. Refs do not cross nodes
/// (a request that would make or carry one is refused with `bad_request`).
/// A node that disconnects or stops answering heartbeats fails what it held
/// with `node_lost`; its late replies are dropped. See docs/distributed.md.

#include "gilkeeper/actors/py_runtime.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/request.hpp"
#include "gilkeeper/interop/value.hpp"
#include "gilkeeper/runtime/pipeline.hpp"
#include "gilkeeper/runtime/runtime.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace gk {

/// PEM files for mutual TLS. Either all three are set (TLS on) or none
/// (plain TCP).
struct TlsFiles {
  std::string certificate;  ///< this side's certificate
  std::string key;          ///< its private key
  std::string ca;           ///< the CA that signed the other side's certificate
  bool enabled() const { return !certificate.empty() || !key.empty() || !ca.empty(); }
};

/// `"host:port"` (or `"[v6]:port"`) split; `bad_request` naming what is
/// wrong otherwise.
Expected<std::pair<std::string, std::uint16_t>> parse_endpoint(const std::string& endpoint);

/// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(const std::string& host);

/// How `Server::start` listens.
struct ServeOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0: any free port (see `Server::port`)
  TlsFiles tls;
  /// Allows a non-loopback address without TLS (anyone who reaches the
  /// port may run code).
  bool insecure = false;
};

/// A runtime published to remote clients. Requests from them take the
/// runtime's one front door like local ones; they cannot shut it down.
class Server {
public:
  /// Publishes `runtime` on `options.address:port`. Refuses (bad_request) a
  /// non-loopback address without TLS unless `insecure`, TLS files that are
  /// not all three given or cannot be read, and an address it cannot bind.
  static Expected<std::unique_ptr<Server>> start(Runtime& runtime, ServeOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// The port it listens on.
  std::uint16_t port() const noexcept;
  /// `"address:port"`.
  std::string endpoint() const;
  /// The node is stopping: new requests (and heartbeats) are answered
  /// `runtime_stopped`, so clients take it out of rotation and send their
  /// work elsewhere, while the calls it runs finish. `gilkeeper serve` does
  /// this on SIGTERM before shutting its runtime down. Idempotent.
  void drain();
  /// Stops listening and drops every connection; requests still pending
  /// are answered `runtime_stopped`. Shut the runtime down first to let
  /// calls in flight finish (`gilkeeper serve` does on SIGTERM).
  /// Idempotent; the destructor calls it.
  void close();

  struct Impl;

private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// How `connect` talks to a node.
struct ConnectOptions {
  TlsFiles tls;
  /// How long the first answer (version check) may take.
  std::chrono::milliseconds connect_timeout{5000};
  /// A heartbeat is sent this often; the node is lost when one is not
  /// answered within `heartbeat * heartbeat_misses`.
  std::chrono::milliseconds heartbeat{500};
  int heartbeat_misses = 4;
  /// Batches a pipeline may send it at once.
  int credit = 4;
  /// After losing the node: try again, first after `reconnect_min`,
  /// doubling up to `reconnect_max`, until it answers (and then it is back
  /// in rotation).
  bool reconnect = true;
  std::chrono::milliseconds reconnect_min{200};
  std::chrono::milliseconds reconnect_max{5000};
  /// A blocking call whose node neither answers nor is known lost is given
  /// up this long after its deadline (`node_lost`).
  std::chrono::milliseconds reply_slack{2000};
};

/// A client's handle to a remote runtime. Thread-safe.
class RemoteRuntime : public BatchTarget {
public:
  ~RemoteRuntime() override;
  RemoteRuntime(const RemoteRuntime&) = delete;
  RemoteRuntime& operator=(const RemoteRuntime&) = delete;

  /// The same calls as `Runtime`'s, run on the node. `want_ref` is refused
  /// by the node; `parent` caps the deadline (cancellation does not cross).
  Expected<Value> call(const std::string& target, List args = {}, Dict kwargs = {}, RequestOptions options = {});
  Expected<Value> eval(const std::string& expression, RequestOptions options = {});
  Expected<Value> exec(const std::string& code, RequestOptions options = {});
  Expected<Value> import_module(const std::string& module, RequestOptions options = {});
  Expected<Value> getattr(const std::string& target, RequestOptions options = {});
  Expected<std::vector<Expected<Value>>> batch(std::vector<CallRequest> calls, RequestOptions options = {});
  Expected<Stats> stats();

  /// What the node said about itself at its last heartbeat.
  NodeInfo info() const;
  /// Why it was lost last ("" when never).
  std::string last_loss() const;
  /// Times the connection was lost / made again.
  std::uint64_t losses() const;
  std::uint64_t reconnects() const;

  /// The node's typed handle (the same interface as `runtime_actor(rt)`),
  /// for actors of `system()`; empty while the node is lost.
  py_runtime_actor actor() const;
  /// The client's own actor system (with CAF's middleman).
  caf::actor_system& system();

  // BatchTarget
  std::string name() const override;
  bool up() const override;
  int credit() const override;
  void send(BatchRequest batch, std::function<void(Expected<BatchReply>&&)> done) override;

  struct Impl;

private:
  friend Expected<std::unique_ptr<RemoteRuntime>> connect(const std::string&, ConnectOptions);
  explicit RemoteRuntime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Connects to `"host:port"` and checks that the node runs this version of
/// gilkeeper. Errors: `node_lost` (cannot reach it, TLS refused, no
/// answer within `connect_timeout`), `bad_request` (bad endpoint,
/// incomplete TLS files, another version).
Expected<std::unique_ptr<RemoteRuntime>> connect(const std::string& endpoint, ConnectOptions options = {});

} // namespace gk
