#pragma once

// The remote runtimes of `gilkeeper run --nodes` and `gilkeeper check
// --nodes`: which ones (the option or the job's [cluster]), connecting to
// each, and checking a job's stages there.

#include "gilkeeper/gilkeeper.hpp"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace gk::cli {

struct NodeOptions {
  /// `--nodes h1:p1,h2:p2` (wins over `[cluster] nodes`).
  std::string nodes;
  bool no_local = false;
  std::string tls_cert, tls_key, tls_ca;
};

/// The job's [cluster] with the command line's options applied. False (and
/// says why) for a malformed --nodes.
bool apply_node_options(const NodeOptions& options, ClusterConfig& cluster);

/// Connects to every node of `cluster`; says why for each that cannot be
/// reached or runs another version. False when any failed.
bool connect_nodes(const ClusterConfig& cluster, std::vector<std::shared_ptr<RemoteRuntime>>& out);

/// Checks that every stage's callable resolves on `node` (without calling
/// it); one line per stage on `out` (only failures unless `print_ok`).
bool check_stages_on(RemoteRuntime& node, const Config& job, std::FILE* out, bool print_ok);

} // namespace gk::cli
