#pragma once

// Internal to actors/: one worker child process of the process executor: its
// state, and starting, awaiting, retiring and reaping it.

#include "actors/executor.hpp"
#include "actors/wire.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace gk::detail {

// How long a child may take to start its interpreter.
constexpr auto kStartTimeout = std::chrono::seconds(30);
// How many times the first worker is started when it is killed from outside
// (SIGKILL) while it starts.
constexpr int kFirstStartAttempts = 3;

struct Child {
  using clock = std::chrono::steady_clock;

  pid_t pid = -1;
  int fd = -1;
  std::uint64_t epoch = 0;
  // dying: SIGKILLed, waiting to be reaped (without blocking the loop).
  // stopped: SIGSTOPped, its call stuck in native code; killed at kill_at.
  enum class State { starting, ready, busy, retiring, stopped, dying } state = State::starting;
  wire::FrameReader reader;
  // Bytes to send that the socket did not take yet (the supervisor never
  // blocks on one child: the rest goes when poll says it may).
  std::vector<char> out;
  std::size_t out_sent = 0;
  // Shared-memory descriptors to send with the byte of `out` at each offset
  // (a frame's first byte), owned until sent.
  std::deque<std::pair<std::size_t, std::vector<int>>> out_fds;
  clock::time_point started;
  clock::time_point retire_by;
  clock::time_point kill_at;  // stopped
  std::uint64_t calls = 0;
  std::uint64_t denials = 0;  // capability denials it reported
  // The request it runs (busy only).
  std::optional<Job> job;
  std::uint64_t job_id = 0;
  clock::time_point sent;
  /// The job's deadline once sent (Job::run_deadline).
  Deadline deadline;
  /// Host calls its request made that have not been answered (by call id),
  /// and the requests those host calls nested, sent to it while its request
  /// waits (by request id).
  std::map<std::uint64_t, std::shared_ptr<HostNest>> host_calls;
  std::map<std::uint64_t, Job> nested;
};

/// Starts the program `worker` as a child (posix_spawn, in its own process
/// group, its end of a socketpair on fd 3); sets `c.pid` and `c.fd`.
Error spawn_child_process(const std::string& worker, Child& c);

/// Blocks until a fresh child says ready (used only at start-up). When the
/// child died instead, `*killed` (if given) says whether SIGKILL ended it:
/// killed from outside, not a failure of its own.
Error wait_ready(Child& c, bool* killed = nullptr);

/// Kills a child's process group and reaps it; returns its wait status.
int reap(Child& c);

/// Queues a frame for a child and sends what its socket takes now, without
/// blocking. False when the child is gone (its end is closed).
bool send_frame(Child& c, std::vector<char> frame, std::vector<int> fds = {});

/// Sends more of what is queued for a child, without blocking. False when
/// the child is gone.
bool flush(Child& c);

/// Asks a child to exit (between calls); it is killed if still alive after
/// a grace period.
void retire(Child& c);

/// "killed by signal 9 (SIGKILL)", "exited with status 1", ...
std::string describe_status(int status);

/// A process's resident memory, in bytes (0 when it cannot be read).
std::uint64_t rss_of(pid_t pid);

} // namespace gk::detail
