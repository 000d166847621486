// observability: the alerts a runtime raises, as they print, and a dump.
//
// A slow call is logged with its Python stack while it still runs; a
// function that keeps 1 MiB per call is reported as a leak with the line
// that allocates; Runtime::dump() shows what the interpreter is doing.
// Events go to a sink of the host's own here; without one they are text
// lines (or JSON lines with [log] format = "json") on standard error.
#include <gilkeeper/gilkeeper.hpp>

#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

int main() {
  std::mutex m;
  std::set<std::string> seen;
  gk::log::set_sink([&](const gk::LogEvent& e) {
    std::lock_guard<std::mutex> g(m);
    std::cout << gk::log::to_text(e) << "\n";
    if (seen.insert(e.name).second && e.name == "slow_call")
      std::cout << "(the same event as a JSON line)\n" << gk::log::to_json(e) << "\n";
    seen.insert(e.name);
  });

  gk::Runtime rt(gk::parse_config(std::string("[python]\npath = [\"") + GK_EXAMPLES_DIR + R"(/python"]
[monitoring]
slow_call = "200ms"
[debug.memory]
detect_leaks = true
check_interval = "300ms"
)"));

  // A slow call: the alert comes at 200 ms, while the call still sleeps.
  auto slow = rt.call_async("watched:slow_lookup", {0.6});
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  // What the interpreter is doing right now.
  std::cout << "--- Runtime::dump() ---\n" << rt.dump() << "---\n";
  if (!slow.get())
    return 1;

  // A leak: the report names the line that allocates.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < until) {
    rt.call("watched:remember", {gk::Value()});
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    std::lock_guard<std::mutex> g(m);
    if (seen.count("leak_suspected"))
      break;
  }
  rt.shutdown();
  gk::log::set_sink(nullptr);
  bool ok = seen.count("slow_call") && seen.count("leak_suspected");
  std::cout << (ok ? "both alerts seen\n" : "an alert is missing\n");
  return ok ? 0 : 1;
}
