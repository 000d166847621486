// `gilkeeper serve CONFIG.toml --listen ADDR:PORT`: a runtime published to
// remote clients (`gilkeeper run --nodes`, `gk::connect`) until SIGTERM or
// SIGINT.

#include "cli/serve.hpp"
#include "cli/job_runner.hpp"
#include "cli/job_setup.hpp"
#include "cli/say.hpp"
#include "cli/stop_signals.hpp"

#include "gilkeeper/net/remote.hpp"

#include <condition_variable>
#include <cstdio>
#include <mutex>

namespace gk::cli {

int serve(const ServeCliOptions& options) {
  StopWatcher stops;
  if (!stops.ok())
    return exit_internal;
  Config config;
  try {
    config = load_config_file(options.config);
    apply_environment(config);
  } catch (const ConfigError& e) {
    say(e.what());
    return exit_usage;
  }
  apply_log_options(config, options.log_file, options.log_format);
  auto endpoint = parse_endpoint(options.listen);
  if (!endpoint) {
    say("--listen: " + endpoint.error().message);
    return exit_usage;
  }
  ServeOptions so;
  so.address = endpoint->first;
  so.port = endpoint->second;
  so.tls = TlsFiles{options.tls_cert, options.tls_key, options.tls_ca};
  so.insecure = options.insecure;
  // Refused before a runtime starts: the address, the TLS files.
  if (!so.tls.enabled() && !so.insecure && !is_loopback(so.address)) {
    say("refusing to listen on " + so.address
        + " without TLS: anyone who reaches the port could run code; give --tls-cert, --tls-key and --tls-ca, "
          "or --insecure");
    return exit_usage;
  }
  if (stops.stopped())
    return exit_interrupted;
  auto rt = start_runtime(config);
  if (!rt)
    return exit_internal;
  auto server = Server::start(*rt, so);
  if (!server) {
    say(server.error().to_string());
    rt->shutdown();
    return server.error().code == ErrorCode::bad_request ? exit_usage : exit_internal;
  }
  auto stats = rt->stats();
  // One line on stdout, for scripts (the port when --listen asked for 0).
  std::printf("gilkeeper serve: listening on %s (%s), %s isolation, %llu worker(s), gilkeeper %s\n",
              (*server)->endpoint().c_str(), so.tls.enabled() ? "mutual TLS" : "plain TCP", stats.isolation.c_str(),
              static_cast<unsigned long long>(stats.workers), GK_VERSION);
  std::fflush(stdout);

  std::mutex m;
  std::condition_variable cv;
  bool stop = false;
  stops.attach([&] {
    std::lock_guard<std::mutex> g(m);
    stop = true;
    cv.notify_all();
  });
  Runtime* dumped = rt.get();
  stops.attach_dump([dumped] {
    std::string text = "gilkeeper serve: dump (SIGQUIT); serving goes on\n" + dumped->dump();
    std::fputs(text.c_str(), stderr);
    std::fflush(stderr);
  });
  {
    std::unique_lock<std::mutex> lk(m);
    cv.wait(lk, [&] { return stop; });
  }
  stops.finish();
  // Calls in flight get the shutdown grace; queued ones are answered
  // runtime_stopped, and those replies reach the clients before the
  // connections close.
  (*server)->drain();
  auto report = rt->shutdown();
  (*server)->close();
  say("stopped (signal " + std::to_string(stops.signal()) + ")"
      + (report.message.empty() ? std::string() : ": " + report.message));
  return exit_ok;
}

} // namespace gk::cli
