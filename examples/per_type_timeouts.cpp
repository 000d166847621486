// per_type_timeouts: timeouts configured per message type in TOML, each shown firing.
#include <gilkeeper/gilkeeper.hpp>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

namespace {

using clock_type = std::chrono::steady_clock;

// The innermost "File ..., line N, in f" of a traceback, and its source line.
std::string innermost_frame(const std::string& traceback) {
  auto at = traceback.rfind("  File ");
  if (at == std::string::npos)
    return "";
  std::string frame = traceback.substr(at + 2);
  // Up to the exception's own line (the last one).
  auto last = frame.rfind('\n', frame.size() - 2);
  return last == std::string::npos ? frame : frame.substr(0, last + 1);
}

// Prints what happened, how long the caller waited and, for an interrupted
// call, where its Python code was.
bool show(const char* what, clock_type::time_point t0, const gk::Expected<gk::Value>& r,
          gk::DeadlinePhase expected_phase) {
  auto ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
  std::cout.width(44);
  std::cout << std::left << what << " -> after " << static_cast<int>(ms) << " ms: ";
  if (r) {
    std::cout << "ok " << r->repr() << "\n";
    return expected_phase == gk::DeadlinePhase::none;
  }
  std::cout << r.error().to_string() << "\n";
  bool ok = r.error().code == gk::ErrorCode::deadline_exceeded && r.error().phase == expected_phase;
  if (expected_phase == gk::DeadlinePhase::soft) {
    // An interrupted call says where its code was: the Python type and traceback.
    std::string frame = innermost_frame(r.error().traceback);
    std::cout << "    interrupted at " << (frame.empty() ? "(no traceback)\n" : frame);
    ok = ok && r.error().type == "gilkeeper.DeadlineExceeded" && !frame.empty();
  }
  return ok;
}

} // namespace

int main() {
  auto rt = gk::Runtime::from_file(GK_EXAMPLES_DIR "/per_type_timeouts.toml");
  bool ok = true;
  using gk::DeadlinePhase;

  auto t0 = clock_type::now();
  ok &= show("eval: a busy loop ([timeouts] eval = 100ms)", t0, rt->eval("[0 for _ in iter(int, 1)]"),
             DeadlinePhase::soft);

  t0 = clock_type::now();
  ok &= show("exec: time.sleep(5) (exec = 150ms)", t0, rt->exec("import time\ntime.sleep(5)"),
             DeadlinePhase::soft);

  t0 = clock_type::now();
  ok &= show("call slow:nap(5) (call = 250ms)", t0, rt->call("slow:nap", {5}), DeadlinePhase::soft);

  t0 = clock_type::now();
  ok &= show("call slow:quick_check(1) (target = 50ms)", t0, rt->call("slow:quick_check", {1}),
             DeadlinePhase::soft);

  t0 = clock_type::now();
  ok &= show("call slow:nap(0.05) (fits in 250ms)", t0, rt->call("slow:nap", {0.05}), DeadlinePhase::none);

  // A per-call deadline beats every configured one.
  t0 = clock_type::now();
  ok &= show("call slow:nap(1), per-call deadline 20ms", t0,
             rt->call("slow:nap", {1}, {}, gk::RequestOptions::with_deadline(gk::Deadline::after(std::chrono::milliseconds(20)))),
             DeadlinePhase::soft);

  // A call stuck behind a slow one expires in the queue and never runs.
  std::thread slow([&] { rt->call("slow:nap", {0.2}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  t0 = clock_type::now();
  ok &= show("call queued behind a slow call (30ms)", t0,
             rt->call("slow:nap", {0}, {}, gk::RequestOptions::with_deadline(gk::Deadline::after(std::chrono::milliseconds(30)))),
             DeadlinePhase::queued);
  slow.join();

  auto s = rt->stats();
  for (auto& t : s.types)
    std::cout << t.type << ": " << t.calls << " requests, " << t.missed_queued << " missed in queue, "
              << t.missed_soft << " interrupted\n";
  return ok ? 0 : 1;
}
