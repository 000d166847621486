#pragma once

// Internal to actors/: the process executor's class (start_process_executor);
// its members are defined in actors/process_executor.cpp and
// actors/detail/process_dispatch.cpp.

#include "actors/executor.hpp"
#include "actors/detail/crash_breaker.hpp"
#include "actors/detail/stats_collector.hpp"
#include "actors/detail/worker_child.hpp"
#include "actors/host_functions.hpp"

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace gk::detail {

class ProcessExecutor final : public Executor, public std::enable_shared_from_this<ProcessExecutor> {
public:
  ProcessExecutor(const Config& config, std::string worker, std::shared_ptr<HostFunctions> hosts);
  ~ProcessExecutor() override;

  Error start();
  void submit(Job job, SubmitKey) override { enqueue(std::move(job)); }
  bool submit_nested(Job& job, HostNest& nest, SubmitKey) override;
  void cancel(const std::shared_ptr<ReplySlot>& slot) override;
  Stats stats() const override;
  std::string dump(std::chrono::milliseconds wait) override;
  std::uint64_t capability_denials() const override { return denials_.load(); }
  ShutdownReport shutdown(std::chrono::nanoseconds grace) override;

  /// Live children's pids (for tests and diagnostics).
  std::vector<int> child_pids() const;

private:
  using clock = std::chrono::steady_clock;
  // Also the way of a Ref's release, from inside this executor.
  void enqueue(Job job);

  void wake();

  // -- the supervisor thread (process_executor.cpp) -----------------------

  void supervise(std::promise<Error> started);
  Error spawn_child();
  void publish_pids();
  void count_restart(const std::string& cause);
  void back_off();
  void failed_start(const std::string& what);
  void degrade(const std::string& what);
  void fail_job(Child& c, Error e);
  void child_died(Child& c);
  void hard_kill(Child& c);
  void stuck_in_native(Child& c, std::uint64_t id);
  std::string describe_grace() const;
  void replenish();
  void loop();
  void stop_all();

  // -- traffic with the children (process_dispatch.cpp) -----------------------

  void remember_module(const AnyRequest& r);
  void send_cancels();
  Child* child_for_epoch(std::uint64_t epoch);
  void dispatch();
  void adopt_refs(Value& v);
  void on_reply(Child& c, std::uint64_t id, AnyReply&& reply);
  // Host calls of a worker's Python code (docs/host-functions.md).
  void start_host_call(Child& c, wire::Frame& f);
  void relay_host_results();
  void send_nested();
  void end_host_calls(Child& c, const Error& e);
  bool service(Child& c);

  Config config_;
  std::string worker_;
  std::shared_ptr<HostFunctions> hosts_;
  std::size_t workers_;
  int wake_fd_ = -1;
  std::thread supervisor_;

  mutable std::mutex mutex_;
  std::deque<Job> queue_;
  // Cancelled requests to interrupt in their worker (see cancel()).
  std::vector<std::shared_ptr<ReplySlot>> cancels_;
  // Host calls whose host function returned (relayed to their worker), and
  // requests nested in a worker's host call (sent to that worker).
  std::vector<std::weak_ptr<HostNest>> host_done_;
  struct NestedJob {
    Job job;
    std::uint64_t epoch;
    std::uint64_t call_id;
  };
  std::vector<NestedJob> nested_in_;
  bool stopping_ = false;
  std::chrono::nanoseconds shutdown_grace_{0};
  clock::time_point degraded_until_{};
  std::string degraded_reason_;
  std::map<std::string, std::uint64_t> restarts_;
  std::vector<int> pids_;
  // A dump in progress (Runtime::dump): the supervisor writes its part and
  // asks each busy worker for its stack; the answers come as stack_dump
  // events (service()). Under mutex_.
  struct DumpAsk {
    bool host_done = false;
    std::string host;
    std::vector<int> asked;
    std::map<int, std::string> answers;
  };
  std::shared_ptr<DumpAsk> dump_ask_;
  std::condition_variable dump_cv_;
  void serve_dump();

  // Supervisor thread only.
  std::vector<Child> children_;
  std::uint64_t next_epoch_ = (std::uint64_t{1} << 32) + static_cast<std::uint64_t>(getpid()) * 100000;
  std::uint64_t next_request_id_ = 0;
  CrashBreaker breaker_{config_.runtime};
  // Quarantined calls held back from a batch sent under this request id.
  std::unordered_map<std::uint64_t, HeldBack> held_back_;
  int failed_starts_in_a_row_ = 0;
  clock::time_point next_spawn_{};
  std::string startup_error_;
  std::set<std::string> modules_seen_;

  std::atomic<std::uint64_t> live_refs_{0};
  std::atomic<std::uint64_t> denials_{0};
  std::atomic<bool> gil_enabled_in_a_worker_{false};  // summed over every child, dead ones too
  detail::StatsCollector stats_;
  std::once_flag shutdown_once_;
  ShutdownReport report_;
};

} // namespace gk::detail
