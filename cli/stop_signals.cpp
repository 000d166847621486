// Blocking the stop signals and the StopWatcher's thread.

#include "cli/stop_signals.hpp"
#include "cli/say.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace gk::cli {

sigset_t stop_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGQUIT);
  return set;
}

sigset_t block_stop_signals() {
  sigset_t stop = stop_signal_set(), before;
  pthread_sigmask(SIG_BLOCK, &stop, &before);
  return before;
}

StopWatcher::StopWatcher() : reader_(pthread_self()) {
  struct sigaction wake {};
  wake.sa_handler = [](int) {};  // only interrupts a blocking read (no SA_RESTART)
  sigemptyset(&wake.sa_mask);
  sigaction(SIGUSR2, &wake, nullptr);
  sigset_t stop = stop_signal_set();
  signals_fd_ = signalfd(-1, &stop, SFD_CLOEXEC);
  request_fd_ = eventfd(0, EFD_CLOEXEC);
  finished_fd_ = eventfd(0, EFD_CLOEXEC);
  if (signals_fd_ < 0 || request_fd_ < 0 || finished_fd_ < 0) {
    say(std::string("cannot watch for signals: ") + std::strerror(errno));
    return;
  }
  thread_ = std::thread([this] { watch(); });
}

void StopWatcher::attach(std::function<void()> stop) {
  bool already;
  {
    std::lock_guard<std::mutex> g(m_);
    stop_ = stop;
    already = stopped_;
  }
  wake_ = true;
  if (already)
    stop();
}

void StopWatcher::attach_dump(std::function<void()> dump) {
  std::lock_guard<std::mutex> g(m_);
  dump_ = std::move(dump);
}

void StopWatcher::request_stop() {
  std::uint64_t one = 1;
  if (request_fd_ >= 0)
    (void)!::write(request_fd_, &one, sizeof one);
}

void StopWatcher::finish() {
  {
    std::lock_guard<std::mutex> g(m_);
    if (finished_)
      return;
    finished_ = true;
  }
  if (thread_.joinable()) {
    std::uint64_t one = 1;
    (void)!::write(finished_fd_, &one, sizeof one);
    thread_.join();
  }
  for (int fd : {signals_fd_, request_fd_, finished_fd_})
    if (fd >= 0)
      ::close(fd);
  signals_fd_ = request_fd_ = finished_fd_ = -1;
}

void StopWatcher::stop_now() {
  std::function<void()> stop;
  {
    std::lock_guard<std::mutex> g(m_);
    stopped_ = true;
    stop = stop_;
  }
  if (stop)
    stop();
}

void StopWatcher::watch() {
  pthread_setname_np(pthread_self(), "gk-signals");
  pollfd fds[3] = {{signals_fd_, POLLIN, 0}, {request_fd_, POLLIN, 0}, {finished_fd_, POLLIN, 0}};
  bool stopping = false;
  for (;;) {
    // Once stopping, wake the reader out of a blocking read every 50 ms
    // until the run ends (a wake that lands just before the read starts is
    // not lost: the next one comes).
    int n = ::poll(fds, 3, stopping ? 50 : -1);
    if (n < 0 && errno != EINTR)
      return;
    if (n > 0) {
      if (fds[2].revents & POLLIN)
        return;
      bool stop = false;
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info{};
        bool got = ::read(signals_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info);
        if (got && info.ssi_signo == SIGQUIT) {
          // A dump: what the run is doing; the run goes on.
          std::function<void()> dump;
          {
            std::lock_guard<std::mutex> g(m_);
            dump = dump_;
          }
          if (dump)
            dump();
        } else if (got) {
          int none = 0;
          signal_.compare_exchange_strong(none, static_cast<int>(info.ssi_signo));
          const char* name = sigabbrev_np(static_cast<int>(info.ssi_signo));
          say(std::string("interrupted (SIG") + (name ? name : "?") + "): stopping the run");
          stop = true;
        }
      }
      if (fds[1].revents & POLLIN) {
        std::uint64_t count;
        (void)!::read(request_fd_, &count, sizeof count);
        stop = true;
      }
      if (stop && !stopping) {
        stopping = true;
        stop_now();
      }
    }
    if (stopping && wake_)
      pthread_kill(reader_, SIGUSR2);
  }
}

} // namespace gk::cli
