// futures: one thread keeps 1,000 Python calls in flight, cancels a slow one, and asks a worker whose Python call stops with the asker.
#include <gilkeeper/gilkeeper.hpp>
#include <gilkeeper/runtime/workers.hpp>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

int main() {
  gk::Config config = gk::parse_config(std::string("[python]\npath = [\"") + GK_EXAMPLES_DIR + "/python\"]\n");
  gk::Runtime rt(config);

  // 1. Many requests from one thread: each call_async returns a future at
  //    once; each future gets exactly one reply.
  std::vector<gk::Future<gk::Value>> inflight;
  for (int i = 0; i < 1000; ++i)
    inflight.push_back(rt.call_async("textstats:score", {"sentence number " + std::to_string(i)}));
  int ok = 0;
  for (auto& f : inflight)
    ok += f.get().has_value();
  std::cout << ok << " of 1000 calls answered\n";

  // 2. Cancel a running call: Python gets gilkeeper.Cancelled where it is,
  //    and the reply says so with the traceback.
  auto slow = rt.call_async("slow:nap", {10.0});
  std::this_thread::sleep_for(50ms);
  auto t0 = std::chrono::steady_clock::now();
  slow.cancel();
  auto r = slow.get();
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "cancelled after " << ms << " ms: " << (r ? "a value?" : r.error().to_string()) << "\n";

  // 3. A worker whose handler calls Python: the asker's deadline reaches the
  //    Python call, so when the asker gives up at 100 ms the interpreter is
  //    free again at once.
  auto worker = gk::spawn_worker(rt, [](const gk::Value& seconds, const gk::RequestContext& context) {
    std::cout << "the worker has " << std::chrono::duration_cast<std::chrono::milliseconds>(context.remaining()).count()
              << " ms\n";
    return gk::WorkerReply::python(gk::CallRequest{"slow:nap", {seconds}});
  });
  auto asked = gk::ask(rt, worker, 10.0, gk::Deadline::after(100ms));
  std::cout << "ask: " << (asked ? "a value?" : asked.error().to_string()) << "\n";
  t0 = std::chrono::steady_clock::now();
  auto next = rt.call("slow:nap", {0.0});
  ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "the next call was served in " << ms << " ms\n";

  bool good = ok == 1000 && !r && r.error().code == gk::ErrorCode::cancelled && !asked
              && asked.error().code == gk::ErrorCode::deadline_exceeded && next.has_value();
  return good ? 0 : 1;
}
