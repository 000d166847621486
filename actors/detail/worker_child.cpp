// One worker child process of the process executor: the worker program, and
// starting (posix_spawn), awaiting, retiring and reaping a child.

#include "actors/detail/worker_child.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace gk {

std::string find_worker_executable() {
  if (const char* env = std::getenv("GILKEEPER_WORKER"); env && *env)
    return env;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&find_worker_executable), &info) == 0 || !info.dli_fname)
    return {};
  std::string lib = info.dli_fname;
  auto slash = lib.rfind('/');
  std::string dir = slash == std::string::npos ? "." : lib.substr(0, slash);
  for (auto candidate : {dir + "/gilkeeper", dir + "/../bin/gilkeeper"})
    if (access(candidate.c_str(), X_OK) == 0)
      return candidate;
  return {};
}

namespace detail {

namespace {

using clock = std::chrono::steady_clock;

// How long a retiring child may take to exit before it is killed.
constexpr auto kRetireGrace = std::chrono::seconds(2);

} // namespace

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return std::string("killed by signal ") + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  if (WIFEXITED(status))
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended (status " + std::to_string(status) + ")";
}

std::uint64_t rss_of(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

Error spawn_child_process(const std::string& worker, Child& c) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return Error(ErrorCode::internal, std::string("socketpair: ") + std::strerror(errno));
  int child_end = sv[1];
  if (child_end == 3) {  // dup2(3, 3) would keep CLOEXEC: move it first
    child_end = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child_end, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::string parent = std::to_string(getpid());
  std::vector<char*> argv = {const_cast<char*>(worker.c_str()), const_cast<char*>("worker"),
                             const_cast<char*>("--fd"), const_cast<char*>("3"),
                             const_cast<char*>("--parent"), parent.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, worker.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(child_end);
  if (rc != 0) {
    close(sv[0]);
    return Error(ErrorCode::internal, "cannot start the worker " + worker + ": " + std::strerror(rc));
  }
  c.pid = pid;
  c.fd = sv[0];
  return Error();
}

Error wait_ready(Child& c, bool* killed) {
  auto until = clock::now() + kStartTimeout;
  while (c.state == Child::State::starting) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now()).count();
    if (left <= 0)
      return Error(ErrorCode::internal, "the worker process did not start within 30s");
    pollfd p{c.fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno != EINTR)
      return Error(ErrorCode::internal, std::string("poll: ") + std::strerror(errno));
    if (n <= 0)
      continue;
    bool alive = c.reader.fill(c.fd);
    while (auto body = c.reader.next()) {
      auto f = wire::decode(body->data(), body->size());
      if (f && f->kind == wire::FrameKind::ready) {
        if (f->error)
          return f->error;
        c.state = Child::State::ready;
        return Error();
      }
    }
    if (!alive) {
      int status = 0;
      waitpid(c.pid, &status, 0);
      c.pid = -1;
      if (killed)
        *killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      return Error(ErrorCode::internal, "the worker process " + describe_status(status) + " while starting");
    }
  }
  return Error();
}

// Closes descriptors a gone child never received.
void drop_unsent(Child& c) {
  for (auto& [at, fds] : c.out_fds)
    for (int fd : fds)
      ::close(fd);
  c.out_fds.clear();
}

int reap(Child& c) {
  int status = 0;
  if (c.pid > 0) {
    // The whole process group, before reaping its leader (whose pid could
    // be reused once reaped). A child that closed its socket is already
    // exiting: the signal does not change its exit status.
    ::kill(-c.pid, SIGKILL);
    while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    c.pid = -1;
  }
  if (c.fd >= 0)
    close(c.fd);
  c.fd = -1;
  drop_unsent(c);
  return status;
}

bool send_frame(Child& c, std::vector<char> frame, std::vector<int> fds) {
  if (c.fd < 0) {
    for (int fd : fds)
      ::close(fd);
    return false;
  }
  std::size_t at = c.out.size();
  if (c.out.empty()) {
    c.out = std::move(frame);
    c.out_sent = 0;
  } else {
    c.out.insert(c.out.end(), frame.begin(), frame.end());
  }
  if (!fds.empty())
    c.out_fds.emplace_back(at, std::move(fds));
  return flush(c);
}

bool flush(Child& c) {
  while (c.out_sent < c.out.size()) {
    // Up to the next frame that carries descriptors; that frame's first
    // byte goes with them.
    std::size_t end = c.out.size();
    const std::vector<int>* fds = nullptr;
    if (!c.out_fds.empty()) {
      if (c.out_fds.front().first == c.out_sent)
        fds = &c.out_fds.front().second;
      else
        end = c.out_fds.front().first;
    }
    // MSG_NOSIGNAL: a dead child is an error here, never a SIGPIPE.
    ssize_t n = fds ? wire::send_with_fds(c.fd, c.out.data() + c.out_sent, end - c.out_sent, *fds,
                                          MSG_NOSIGNAL | MSG_DONTWAIT)
                    : ::send(c.fd, c.out.data() + c.out_sent, end - c.out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return true;
      return false;
    }
    if (fds) {
      for (int fd : *fds)
        ::close(fd);  // the child has its own copies now
      c.out_fds.pop_front();
    }
    c.out_sent += static_cast<std::size_t>(n);
  }
  c.out.clear();
  c.out_sent = 0;
  if (c.out.capacity() > (std::size_t{1} << 20))
    c.out.shrink_to_fit();  // a big request's buffer is not kept for small ones
  return true;
}

void retire(Child& c) {
  send_frame(c, wire::encode_goodbye());  // a child that is gone is reaped anyway
  c.state = Child::State::retiring;
  c.retire_by = clock::now() + kRetireGrace;
}

} // namespace detail

} // namespace gk
