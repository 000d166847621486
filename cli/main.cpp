// gilkeeper: the command line. `gilkeeper run JOB.toml` runs a pipeline of
// Python callables over JSONL records; `gilkeeper check JOB.toml` validates a
// job. See docs/cli.md.
#include "job_runner.hpp"
#include "metrics_export.hpp"
#include "serve.hpp"
#include "stop_signals.hpp"
#include "sync_policy.hpp"

#include "actors/worker.hpp"

#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  using namespace gk::cli;
  // First, before anything can start a thread: SIGINT and SIGTERM wait for
  // `run`'s watcher (every thread inherits the mask). Other commands get
  // the mask they started with back.
  sigset_t mask_at_start = block_stop_signals();
  auto restore_mask = [&] { pthread_sigmask(SIG_SETMASK, &mask_at_start, nullptr); };

  // A worker process of a runtime with process isolation (internal).
  if (argc >= 2 && std::string(argv[1]) == "worker") {
    restore_mask();
    int fd = -1, parent = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
      std::string flag = argv[i];
      if (flag == "--fd")
        fd = std::atoi(argv[i + 1]);
      else if (flag == "--parent")
        parent = std::atoi(argv[i + 1]);
    }
    if (fd < 0) {
      std::fprintf(stderr, "gilkeeper worker: --fd is required (this mode is started by a runtime)\n");
      return 2;
    }
    return gk::run_worker(fd, parent);
  }

  CLI::App app{"gilkeeper: run a pipeline of Python callables over JSONL records, with deadlines",
               "gilkeeper"};
  app.set_version_flag("--version", std::string("gilkeeper ") + GK_VERSION);
  app.require_subcommand(1);

  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Run a job over JSONL records");
  run_cmd->add_option("job", run.job, "The job file (TOML)")->required();
  run_cmd->add_option("--input", run.input, "JSONL records to read; - is stdin")->capture_default_str();
  run_cmd->add_option("--output", run.output, "Where results go, one JSON line each; - is stdout")
      ->capture_default_str();
  run_cmd->add_option("--errors", run.errors,
                      "Where failed records go (default: <output>.errors.jsonl, or "
                      "./errors.jsonl when the output is stdout)");
  run_cmd->add_option("--summary-json", run.summary_json, "Also write the run's summary as JSON here");
  run_cmd->add_option("--progress", run.progress, "Progress on stderr: auto (a bar on a terminal), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  run_cmd->add_option("--workers", run.workers, "Interpreters to run (overrides [runtime] workers)")
      ->check(CLI::Range(1, 1024));
  run_cmd->add_flag("--resume", run.resume,
                    "Go on from the output and errors files of an interrupted run (same job, input and files)");
  run_cmd->add_option("--log", run.log_file, "Append the run's log events (alerts, traces) to this file");
  run_cmd->add_option("--log-format", run.log_format, "Log events as text lines or JSON lines: text, json")
      ->check(CLI::IsMember({"text", "json"}));
  run_cmd->add_option("--sync", run.sync,
                      "When the output and errors are made durable (fdatasync): interval:DURATION, every:N "
                      "(records), off")
      ->check(CLI::Validator(
          [](std::string& text) {
            return parse_sync_policy(text) ? std::string()
                                           : "expected off, every:N (N >= 1) or interval:DURATION (like 500ms), "
                                             "got \"" + text + "\"";
          },
          "POLICY"))
      ->capture_default_str();

  run_cmd->add_option("--metrics-file", run.metrics_file,
                      "Rewrite this file with the runtime's metrics (Prometheus text format) every "
                      "--metrics-interval and at the end of the run");
  run_cmd->add_option("--metrics-interval", run.metrics_interval, "How often --metrics-file is rewritten")
      ->check(CLI::Validator(
          [](std::string& text) {
            auto d = gk::parse_duration(text);
            return d && d->count() > 0 ? std::string()
                                       : "expected a duration above zero (like 5s or 500ms), got \"" + text + "\"";
          },
          "DURATION"))
      ->capture_default_str();
  run_cmd->add_option("--metrics-listen", run.metrics_listen,
                      "Serve the runtime's metrics at GET /metrics on [ADDR:]PORT (ADDR defaults to 127.0.0.1; "
                      "port 0 picks a free one)")
      ->check(CLI::Validator(
          [](std::string& text) {
            return parse_listen_address(text) ? std::string()
                                              : "expected [ADDR:]PORT (9100, 127.0.0.1:9100, [::1]:9100), got \""
                                                    + text + "\"";
          },
          "[ADDR:]PORT"));

  auto node_flags = [](CLI::App* cmd, NodeOptions& nodes) {
    cmd->add_option("--nodes", nodes.nodes,
                    "Remote runtimes (gilkeeper serve) to share the Python stages' records with: "
                    "host:port[,host:port...] (wins over [cluster] nodes)");
    cmd->add_flag("--no-local", nodes.no_local, "Run the Python stages only on the nodes");
    cmd->add_option("--tls-cert", nodes.tls_cert, "This client's certificate (PEM), for nodes serving mutual TLS");
    cmd->add_option("--tls-key", nodes.tls_key, "Its private key (PEM)");
    cmd->add_option("--tls-ca", nodes.tls_ca, "The CA that signed the nodes' certificates (PEM)");
  };
  node_flags(run_cmd, run.nodes);

  std::string check_job_path;
  NodeOptions check_nodes;
  auto* check_cmd = app.add_subcommand("check", "Validate a job: its file and every stage's callable");
  check_cmd->add_option("job", check_job_path, "The job file (TOML)")->required();
  node_flags(check_cmd, check_nodes);

  ServeCliOptions serve_options;
  auto* serve_cmd = app.add_subcommand("serve", "Serve a runtime to remote clients (gilkeeper run --nodes)");
  serve_cmd->add_option("config", serve_options.config, "The runtime's config (TOML)")->required();
  serve_cmd->add_option("--listen", serve_options.listen,
                        "ADDR:PORT to listen on (port 0: any free port, printed on stdout)")
      ->capture_default_str();
  serve_cmd->add_option("--tls-cert", serve_options.tls_cert, "This node's certificate (PEM): turns mutual TLS on");
  serve_cmd->add_option("--tls-key", serve_options.tls_key, "Its private key (PEM)");
  serve_cmd->add_option("--tls-ca", serve_options.tls_ca,
                        "The CA (PEM) whose signature every client certificate must carry");
  serve_cmd->add_flag("--insecure", serve_options.insecure,
                      "Allow a non-loopback address without TLS (anyone who reaches the port may run code)");
  serve_cmd->add_option("--log", serve_options.log_file, "Append log events to this file");
  serve_cmd->add_option("--log-format", serve_options.log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    restore_mask();
    // --help and --version exit 0; every other parse problem is a usage error.
    int status = app.exit(e);
    return status == 0 ? exit_ok : exit_usage;
  }

  if (!*run_cmd && !*serve_cmd)
    restore_mask();
  try {
    if (*run_cmd)
      return run_job(run);
    if (*check_cmd)
      return check_job(check_job_path, check_nodes);
    if (*serve_cmd)
      return serve(serve_options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gilkeeper: internal error: %s\n", e.what());
    return exit_internal;
  }
  return exit_usage;
}
