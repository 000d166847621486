// `gilkeeper run --metrics-file / --metrics-listen`: the runtime's metrics
// in a file rewritten on a cadence, and at GET /metrics (cpp-httplib).

#include "cli/metrics_export.hpp"

#include "cli/say.hpp"
#include "runtime/detail/metrics.hpp"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

namespace gk::cli {

namespace {

// Runs each connection on the listening thread itself: one thread in all,
// and a scrape at a time is all a metrics endpoint needs.
class InlineQueue final : public httplib::TaskQueue {
public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

// SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, which
// would let a second program bind a port already in use.
void reuse_address_only(socket_t sock) {
  int yes = 1;
  ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

// Why `host:port` cannot be bound, as the OS says it (cpp-httplib only says
// that it could not).
std::string why_not_bound(const ListenAddress& a) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(a.host.c_str(), std::to_string(a.port).c_str(), &hints, &found);
  if (rc != 0)
    return ::gai_strerror(rc);
  std::string why = "it cannot be bound";
  for (auto* ai = found; ai; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    reuse_address_only(fd);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 1) != 0)
      why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return why;
}

std::string describe(const ListenAddress& a) {
  bool v6 = a.host.find(':') != std::string::npos;
  return (v6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
}

} // namespace

std::optional<ListenAddress> parse_listen_address(const std::string& text) {
  ListenAddress a;
  std::string port = text;
  auto colon = text.rfind(':');
  if (colon != std::string::npos) {
    std::string host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    else if (host.find(':') != std::string::npos)
      return std::nullopt;  // an IPv6 address goes in brackets
    if (host.empty())
      return std::nullopt;
    a.host = host;
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  a.port = std::stoi(port);
  if (a.port > 65535)
    return std::nullopt;
  return a;
}

struct MetricsExport::Server {
  httplib::Server http;
  std::thread thread;
  std::atomic<bool> ended{false};  // listen_after_bind returned
};

MetricsExport::MetricsExport() = default;

MetricsExport::~MetricsExport() {
  finish(false);
}

bool MetricsExport::open(const MetricsExportOptions& options) {
  options_ = options;
  if (!options_.file.empty()) {
    // The temporary file the rewrites go through must be possible where
    // the file is (the rename needs the same file system).
    std::string probe = options_.file + "." + std::to_string(::getpid()) + ".tmp";
    int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
      say("cannot write the metrics file " + options_.file + " (--metrics-file): " + std::strerror(errno));
      return false;
    }
    ::close(fd);
    ::unlink(probe.c_str());
  }
  if (options_.listen) {
    auto server = std::make_unique<Server>();
    auto& http = server->http;
    http.new_task_queue = [] { return new InlineQueue; };
    http.set_socket_options(reuse_address_only);
    // One request per connection, and no client holds the thread long.
    http.set_keep_alive_max_count(1);
    http.set_keep_alive_timeout(1);
    http.set_read_timeout(1, 0);
    http.set_write_timeout(1, 0);
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> g(mutex_);
      if (!runtime_) {
        res.status = 503;
        res.set_content("the runtime is not running\n", "text/plain; charset=utf-8");
        return;
      }
      res.set_content(runtime_->metrics(), detail::kMetricsContentType);
    });
    auto& where = *options_.listen;
    bool bound = false;
    if (where.port == 0) {
      int port = http.bind_to_any_port(where.host);
      bound = port > 0;
      if (bound)
        where.port = port;
    } else {
      bound = http.bind_to_port(where.host, where.port);
    }
    if (!bound) {
      say("cannot listen on " + describe(where) + " (--metrics-listen): " + why_not_bound(where));
      return false;
    }
    server->thread = std::thread([s = server.get()] {
      pthread_setname_np(pthread_self(), "gk-metrics-http");
      // cpp-httplib sends without MSG_NOSIGNAL: a client gone in the middle
      // of a reply must not end the run with SIGPIPE. Blocked in this thread
      // (the only one that writes to its sockets), the signal stays pending
      // here and the send fails with EPIPE instead.
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
      s->http.listen_after_bind();
      s->ended = true;
    });
    server_ = std::move(server);
    say("metrics at http://" + describe(where) + "/metrics");
  }
  return true;
}

void MetricsExport::attach(Runtime& runtime) {
  std::lock_guard<std::mutex> g(mutex_);
  runtime_ = &runtime;
  if (!options_.file.empty() && !file_thread_.joinable() && !stopping_)
    file_thread_ = std::thread([this] { rewrite_every_interval(); });
}

void MetricsExport::finish(bool final_write) {
  std::call_once(finish_once_, [&] { end(final_write); });
}

void MetricsExport::end(bool final_write) {
  {
    std::lock_guard<std::mutex> g(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (file_thread_.joinable())
    file_thread_.join();
  std::string last;
  {
    std::lock_guard<std::mutex> g(mutex_);
    if (final_write && runtime_ && !options_.file.empty())
      last = runtime_->metrics();
    runtime_ = nullptr;
  }
  if (!last.empty())
    write_file(last);
  if (server_) {
    // stop() does nothing until the server has entered its accept loop:
    // wait for that (it only has to be scheduled), or for its end.
    while (!server_->ended && !server_->http.is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!server_->ended)
      server_->http.stop();
    server_->thread.join();
    server_.reset();
  }
}

void MetricsExport::rewrite_every_interval() {
  pthread_setname_np(pthread_self(), "gk-metrics");
  auto next = std::chrono::steady_clock::now();
  for (;;) {
    next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(options_.interval);
    std::string text;
    {
      std::unique_lock<std::mutex> lk(mutex_);
      if (cv_.wait_until(lk, next, [&] { return stopping_; }))
        return;
      if (!runtime_)
        continue;
      text = runtime_->metrics();
    }
    write_file(text);
    // A rewrite that took longer than the interval does not queue up more.
    next = std::max(next, std::chrono::steady_clock::now());
  }
}

bool MetricsExport::write_file(const std::string& text) {
  std::string temp = options_.file + "." + std::to_string(::getpid()) + ".tmp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  bool ok = fd >= 0;
  int error = errno;
  for (std::size_t done = 0; ok && done < text.size();) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ok = false;
      error = errno;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (fd >= 0 && ::close(fd) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (ok && std::rename(temp.c_str(), options_.file.c_str()) != 0) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    if (fd >= 0)
      ::unlink(temp.c_str());
    if (!file_failed_)
      say("writing the metrics file " + options_.file + " failed: " + std::strerror(error)
          + " (the run goes on; this is said once)");
    file_failed_ = true;
  }
  return ok;
}

} // namespace gk::cli
