// The remote runtimes of `gilkeeper run --nodes` and `check --nodes`.

#include "cli/nodes.hpp"
#include "cli/say.hpp"

#include <algorithm>
#include <sstream>

namespace gk::cli {

bool apply_node_options(const NodeOptions& options, ClusterConfig& cluster) {
  if (!options.nodes.empty()) {
    cluster.nodes.clear();
    std::stringstream list(options.nodes);
    std::string one;
    while (std::getline(list, one, ',')) {
      if (one.empty())
        continue;
      if (auto parsed = parse_endpoint(one); !parsed) {
        say("--nodes: " + parsed.error().message);
        return false;
      }
      cluster.nodes.push_back(one);
    }
    if (cluster.nodes.empty()) {
      say("--nodes: expected host:port[,host:port...], got \"" + options.nodes + "\"");
      return false;
    }
  }
  if (options.no_local)
    cluster.local = false;
  if (!options.tls_cert.empty() || !options.tls_key.empty() || !options.tls_ca.empty()) {
    cluster.tls_cert = options.tls_cert;
    cluster.tls_key = options.tls_key;
    cluster.tls_ca = options.tls_ca;
  }
  if (!cluster.local && cluster.nodes.empty()) {
    say("--no-local needs nodes to run on (--nodes or [cluster] nodes)");
    return false;
  }
  return true;
}

bool connect_nodes(const ClusterConfig& cluster, std::vector<std::shared_ptr<RemoteRuntime>>& out) {
  ConnectOptions options;
  options.tls = TlsFiles{cluster.tls_cert, cluster.tls_key, cluster.tls_ca};
  options.credit = cluster.credit;
  options.heartbeat = std::max(std::chrono::milliseconds(20),
                               std::chrono::duration_cast<std::chrono::milliseconds>(cluster.heartbeat));
  bool all = true;
  for (auto& endpoint : cluster.nodes) {
    auto node = connect(endpoint, options);
    if (!node) {
      say(node.error().to_string());
      all = false;
      continue;
    }
    out.push_back(std::shared_ptr<RemoteRuntime>(std::move(*node)));
  }
  return all;
}

namespace {

bool is_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
  });
}

// Imports the stage's module there and asks whether its attribute is
// callable, without calling it (Refs do not cross nodes: an expression).
Error resolve_remote(RemoteRuntime& node, const StageConfig& stage) {
  auto colon = stage.call.find(':');
  std::string module = stage.call.substr(0, colon);
  std::string path = colon == std::string::npos ? "" : stage.call.substr(colon + 1);
  if (!is_name(module) || !is_name(path))
    return Error(ErrorCode::bad_request, "\"" + stage.call + "\" is not module:function");
  if (auto imported = node.import_module(module); !imported)
    return imported.error();
  auto callable = node.eval("callable(__import__('importlib').import_module('" + module + "')." + path + ")");
  if (!callable)
    return callable.error();
  if (!callable->is_bool() || !callable->as_bool()) {
    Error e(ErrorCode::bad_request, stage.call + " is not callable");
    e.where = stage.call;
    return e;
  }
  return {};
}

} // namespace

bool check_stages_on(RemoteRuntime& node, const Config& job, std::FILE* out, bool print_ok) {
  bool all_ok = true;
  for (auto& stage : job.stages) {
    Error e = resolve_remote(node, stage);
    std::string head = "node " + node.name() + ": stage \"" + stage.name + "\" (" + stage.call + "): ";
    if (e || print_ok)
      std::fprintf(out, "%s%s\n", head.c_str(),
                   e ? (e.code == ErrorCode::python_exception && !e.type.empty() ? e.type + ": " + e.message
                                                                                 : e.to_string())
                           .c_str()
                     : "ok");
    all_ok = all_ok && !e;
  }
  return all_ok;
}

} // namespace gk::cli
