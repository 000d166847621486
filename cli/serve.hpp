#pragma once

// `gilkeeper serve`: a runtime published to remote clients.

#include <string>

namespace gk::cli {

struct ServeCliOptions {
  std::string config;
  /// `ADDR:PORT` (port 0: any free port, printed on stdout).
  std::string listen = "127.0.0.1:7100";
  std::string tls_cert, tls_key, tls_ca;
  bool insecure = false;
  std::string log_file, log_format;
};

/// Serves until SIGTERM or SIGINT; then lets calls in flight finish within
/// the runtime's shutdown grace and exits 0. Exit 2 for a bad config,
/// address or TLS files.
int serve(const ServeCliOptions& options);

} // namespace gk::cli
