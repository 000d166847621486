// remote_runtime: publish a runtime to other machines and use it from a
// client, then share a pipeline's records between the local runtime and the
// remote one. Here both ends live in this process on loopback; across
// machines the server side is `gilkeeper serve CONFIG --listen ADDR:PORT
// --tls-cert ... --tls-key ... --tls-ca ...` (docs/distributed.md).
#include <gilkeeper/gilkeeper.hpp>

#include <chrono>
#include <iostream>

using namespace std::chrono_literals;

int main() {
  // The node: a runtime in process isolation (two workers), published on a
  // free loopback port. Loopback needs no TLS; any other address does
  // (ServeOptions::tls), unless `insecure` is set.
  gk::Runtime node(gk::parse_config(R"(
[runtime]
isolation = "process"
workers = 2
)"));
  auto server = gk::Server::start(node, gk::ServeOptions{});
  if (!server) {
    std::cerr << "serve: " << server.error().to_string() << "\n";
    return 1;
  }
  std::cout << "serving on " << (*server)->endpoint() << "\n";

  // The client: the same calls as a local Runtime. The deadline travels as
  // the remaining budget; the node enforces it.
  auto remote = gk::connect((*server)->endpoint());
  if (!remote) {
    std::cerr << "connect: " << remote.error().to_string() << "\n";
    return 1;
  }
  auto& client = **remote;
  auto info = client.info();
  std::cout << "node runs gilkeeper " << info.version << ", Python " << info.python_version << ", "
            << info.isolation << " isolation, " << info.workers << " worker(s)\n";
  auto r = client.call("math:hypot", {3.0, 4.0}, {}, gk::RequestOptions::with_deadline(gk::Deadline::after(2s)));
  std::cout << "remote math.hypot(3, 4) = " << r->as_double() << "\n";
  auto late = client.call("time:sleep", {5.0}, {}, gk::RequestOptions::with_deadline(gk::Deadline::after(200ms)));
  std::cout << "remote time.sleep(5) within 200 ms -> " << late.error().to_string() << "\n";

  // A pipeline whose Python stage runs here and on the node, each taking
  // batches as it has room (the node holds at most `credit` batches).
  gk::Runtime local(gk::Config{});
  gk::PipelineOptions options;
  options.remotes = {std::shared_ptr<gk::RemoteRuntime>(std::move(*remote))};
  gk::Pipeline p(local, {gk::Stage::python("root", "math:sqrt")}, options);
  double sum = 0;
  p.on_output([&](gk::Output&& o) { sum += o.value.as_double(); });
  p.on_failure([](gk::Failure&& f) { std::cerr << "record " << f.id << ": " << f.error.to_string() << "\n"; });
  for (std::int64_t i = 1; i <= 2000; ++i)
    p.push(static_cast<std::uint64_t>(i), gk::Value(i * i));
  p.close();
  auto report = p.wait();
  std::cout << "pipeline: " << report.ok << " ok, " << report.failed << " failed, sum " << sum << "; the node took "
            << report.nodes[0].records << " records in " << report.nodes[0].batches << " batches\n";
  bool ok = late.error().code == gk::ErrorCode::deadline_exceeded && report.ok == 2000 && sum == 2001000.0;
  return ok ? 0 : 1;
}
