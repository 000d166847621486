#pragma once

// The signals that stop `gilkeeper run` (SIGINT, SIGTERM) and the one that
// dumps what it is doing (SIGQUIT): blocked from the first instruction of
// main, so that every thread inherits the mask, and taken by one watcher
// thread (StopWatcher).

#include <atomic>
#include <csignal>
#include <functional>
#include <mutex>
#include <pthread.h>
#include <thread>

namespace gk::cli {

/// SIGINT, SIGTERM and SIGQUIT.
sigset_t stop_signal_set();

/// Blocks the stop signals in the calling thread; returns the mask it had.
/// A stop signal that comes while they are blocked waits (pending) until a
/// StopWatcher takes it, or until the mask is restored.
/// PRECONDITION: called by main before any thread starts, so that every
/// thread started later (CAF's, the interpreter's, the executors') inherits
/// the mask. Worker processes do not: they are spawned with an empty mask.
sigset_t block_stop_signals();

/// Watches, on a thread of its own, for a stop signal (signalfd) and for a
/// stop asked from inside the run (a file that cannot be written). Says on
/// stderr when it takes a signal. Every member is thread-safe.
class StopWatcher {
public:
  /// Starts watching; a stop signal pending since block_stop_signals() is
  /// seen at once. The constructing thread is the one `attach` wakes.
  StopWatcher();
  ~StopWatcher() { finish(); }
  StopWatcher(const StopWatcher&) = delete;
  StopWatcher& operator=(const StopWatcher&) = delete;

  /// False when the watcher could not start (the reason was printed).
  bool ok() const noexcept { return thread_.joinable() || finished_; }

  /// `stop` is called (on the watcher's thread) when a stop comes, or at
  /// once when one came already; from then on a stop also wakes the
  /// constructing thread out of a blocking read (SIGUSR2, every 50 ms until
  /// finish()). `stop` must be idempotent and outlive finish().
  void attach(std::function<void()> stop);

  /// `dump` is called (on the watcher's thread) for each SIGQUIT: it prints
  /// what the run is doing and the run goes on. Without one, SIGQUIT is
  /// ignored. `dump` must outlive finish().
  void attach_dump(std::function<void()> dump);

  /// Stops the run as a signal would, without being one.
  void request_stop();

  /// True once a stop came (a signal or request_stop()).
  bool stopped() const noexcept { return stopped_; }
  /// The first stop signal taken; 0 when none came.
  int signal() const noexcept { return signal_; }

  /// Ends the watch. A signal that comes later stays blocked and changes
  /// nothing.
  void finish();

private:
  void watch();
  void stop_now();

  int signals_fd_ = -1;
  int request_fd_ = -1;
  int finished_fd_ = -1;
  pthread_t reader_;
  std::mutex m_;
  std::function<void()> stop_;
  std::function<void()> dump_;
  std::atomic<bool> wake_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<int> signal_{0};
  bool finished_ = false;
  std::thread thread_;
};

} // namespace gk::cli
