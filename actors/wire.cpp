#include "actors/wire.hpp"
#include "gilkeeper/actors/messages.hpp"

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <utility>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace gk {

// Config parts a worker needs (in namespace gk for ADL).

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LimitsConfig& x) {
  // CAF 0.17 has no std::optional: -1 stands for "unset".
  auto out = [](const std::optional<std::uint64_t>& o) { return o ? static_cast<std::int64_t>(*o) : -1; };
  auto in = [](std::int64_t v) { return v < 0 ? std::optional<std::uint64_t>() : std::optional<std::uint64_t>(v); };
  std::int64_t as = out(x.address_space), cpu = out(x.cpu_seconds), files = out(x.open_files),
               procs = out(x.processes);
  return f(caf::meta::type_name("LimitsConfig"), as, cpu, files, procs, x.core_dumps,
           caf::meta::load_callback([&]() -> caf::error {
             x.address_space = in(as);
             x.cpu_seconds = in(cpu);
             x.open_files = in(files);
             x.processes = in(procs);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, CapabilitiesConfig& x) {
  auto native = static_cast<std::uint8_t>(x.native_extensions);
  auto network = static_cast<std::uint8_t>(x.network);
  return f(caf::meta::type_name("CapabilitiesConfig"), x.configured, x.profile, x.allow_modules, x.deny_modules,
           native, x.allow_native, x.fork, x.subprocess, network, x.write_paths, x.write_paths_set,
           x.allow_host, x.deny_host,
           caf::meta::load_callback([&]() -> caf::error {
             x.native_extensions = static_cast<NativePolicy>(native);
             x.network = static_cast<NetworkPolicy>(network);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Timeout& x) {
  std::int64_t ns = x.value.count();
  return f(caf::meta::type_name("Timeout"), x.infinite, ns, caf::meta::load_callback([&]() -> caf::error {
             x.value = std::chrono::nanoseconds(ns);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Thresholds& x) {
  return f(caf::meta::type_name("Thresholds"), x.default_threshold, x.per_type, x.targets);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, MonitoringConfig& x) {
  std::int64_t interval = x.interval.count();
  return f(caf::meta::type_name("MonitoringConfig"), x.slow_call, x.memory_threshold, interval,
           caf::meta::load_callback([&]() -> caf::error {
             x.interval = std::chrono::nanoseconds(interval);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, DebugConfig& x) {
  std::int64_t gil_timeout = x.gil.timeout ? x.gil.timeout->count() : -1;
  std::int64_t check = x.memory.check_interval.count();
  std::int32_t top = x.memory.top;
  return f(caf::meta::type_name("DebugConfig"), x.gil.trace, gil_timeout, x.gil.detect_deadlock, x.memory.track,
           x.memory.detect_leaks, check, top, x.trace_calls, caf::meta::load_callback([&]() -> caf::error {
             x.gil.timeout = gil_timeout < 0 ? std::nullopt
                                             : std::optional<std::chrono::nanoseconds>(std::chrono::nanoseconds(gil_timeout));
             x.memory.check_interval = std::chrono::nanoseconds(check);
             x.memory.top = top;
             return caf::none;
           }));
}

// A log event: its time as nanoseconds since the epoch, each field as its
// key, a kind byte and the value in that kind.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LogEvent& x) {
  std::int64_t time = std::chrono::duration_cast<std::chrono::nanoseconds>(x.time.time_since_epoch()).count();
  auto level = static_cast<std::uint8_t>(x.level);
  std::vector<std::string> keys, strings;
  // The kinds as a string, not a vector of bytes: CAF's deserializer sizes a
  // byte vector by the count it reads before it checks that many bytes are
  // left (a corrupt count allocated 4 GiB; found by the wire fuzzer); a
  // string is checked first.
  std::string kinds;
  std::vector<std::int64_t> ints;
  std::vector<double> doubles;
  for (auto& field : x.fields) {
    keys.push_back(field.key);
    kinds.push_back(static_cast<char>(field.value.index()));
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>)
            strings.push_back(v);
          else if constexpr (std::is_same_v<T, std::int64_t>)
            ints.push_back(v);
          else if constexpr (std::is_same_v<T, double>)
            doubles.push_back(v);
          else
            ints.push_back(v ? 1 : 0);
        },
        field.value);
  }
  return f(caf::meta::type_name("LogEvent"), time, level, x.name, x.message, keys, kinds, strings, ints, doubles,
           caf::meta::load_callback([&]() -> caf::error {
             if (level > static_cast<std::uint8_t>(LogLevel::off) || kinds.size() != keys.size())
               return caf::make_error(caf::sec::invalid_argument);
             x.time = std::chrono::system_clock::time_point(
                 std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(time)));
             x.level = static_cast<LogLevel>(level);
             x.fields.clear();
             std::size_t si = 0, ii = 0, di = 0;
             for (std::size_t i = 0; i < keys.size(); ++i) {
               LogField field{keys[i], std::string()};
               switch (static_cast<unsigned char>(kinds[i])) {
                 case 0:
                   if (si >= strings.size())
                     return caf::make_error(caf::sec::invalid_argument);
                   field.value = strings[si++];
                   break;
                 case 1:
                 case 3:  // a bool travels as an int
                   if (ii >= ints.size())
                     return caf::make_error(caf::sec::invalid_argument);
                   if (kinds[i] == 1)
                     field.value = ints[ii++];
                   else
                     field.value = ints[ii++] != 0;
                   break;
                 case 2:
                   if (di >= doubles.size())
                     return caf::make_error(caf::sec::invalid_argument);
                   field.value = doubles[di++];
                   break;
                 default:
                   return caf::make_error(caf::sec::invalid_argument);
               }
               x.fields.push_back(std::move(field));
             }
             return caf::none;
           }));
}

namespace wire {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, WorkerSetup& x) {
  return f(caf::meta::type_name("WorkerSetup"), x.python_path, x.executable, x.interrupt_signal, x.epoch,
           x.grace_ns, x.shutdown_grace_ns, x.limits, x.capabilities, x.preload, x.monitoring, x.debug,
           x.log_level);
}

WorkerSetup make_setup(const Config& config, std::uint64_t epoch) {
  WorkerSetup s;
  s.python_path = config.python.path;
  s.executable = config.python.executable;
  s.interrupt_signal = config.runtime.interrupt_signal ? *config.runtime.interrupt_signal : -1;
  s.epoch = epoch;
  s.grace_ns = config.timeouts.grace.count();
  s.shutdown_grace_ns = config.runtime.shutdown_grace.count();
  s.limits = config.runtime.limits;
  s.capabilities = config.capabilities;
  s.monitoring = config.monitoring;
  s.debug = config.debug;
  s.log_level = static_cast<std::uint8_t>(config.log.level);
  return s;
}

Config config_from_setup(const WorkerSetup& s) {
  Config c;
  c.python.path = s.python_path;
  c.python.executable = s.executable;
  if (s.interrupt_signal < 0)
    c.runtime.interrupt_signal.reset();
  else
    c.runtime.interrupt_signal = s.interrupt_signal;
  // The host kills a worker `grace` after the deadline of the request it
  // sent; a call inside a batch has a deadline of its own that only the
  // worker knows, and the worker ends itself (exit_when_stuck) 100 ms after
  // the host would have killed it for that call, so the host's kill comes
  // first whenever the host knows the deadline.
  c.timeouts.grace = std::chrono::nanoseconds(s.grace_ns) + std::chrono::milliseconds(100);
  c.runtime.shutdown_grace = std::chrono::nanoseconds(s.shutdown_grace_ns);
  c.runtime.limits = s.limits;
  c.capabilities = s.capabilities;
  c.monitoring = s.monitoring;
  c.debug = s.debug;
  c.log.level = static_cast<LogLevel>(std::min<std::uint8_t>(s.log_level, static_cast<std::uint8_t>(LogLevel::off)));
  return c;
}

namespace {

// Serializes a frame body behind a 4-byte length placeholder.
template <class... Ts>
std::vector<char> frame(FrameKind kind, Ts&... xs) {
  std::vector<char> buf(4, 0);
  caf::binary_serializer sink(nullptr, buf);
  auto k = static_cast<std::uint8_t>(kind);
  if (auto err = sink(k, xs...))
    throw std::logic_error("wire: cannot serialize a frame");
  auto n = static_cast<std::uint32_t>(buf.size() - 4);
  for (int i = 0; i < 4; ++i)
    buf[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return buf;
}

Error protocol_error(const std::string& what) {
  return Error(ErrorCode::bad_request, "wire: " + what);
}

template <class Variant, std::size_t I = 0>
caf::error load_alternative(caf::binary_deserializer& src, std::uint8_t index, Variant& out) {
  if constexpr (I < std::variant_size_v<Variant>) {
    if (index == I) {
      std::variant_alternative_t<I, Variant> x;
      auto err = src(x);
      out = std::move(x);
      return err;
    }
    return load_alternative<Variant, I + 1>(src, index, out);
  } else {
    return caf::make_error(caf::sec::invalid_argument);
  }
}

template <class Variant, class... Extra>
std::vector<char> frame_variant(FrameKind kind, std::uint64_t id, const Variant& v, Extra... extra) {
  auto index = static_cast<std::uint8_t>(v.index());
  return std::visit(
      [&](const auto& alt) {
        auto copy = alt;  // inspect takes non-const references
        return frame(kind, id, extra..., index, copy);
      },
      v);
}

} // namespace

std::vector<char> encode_hello(const WorkerSetup& setup) {
  auto copy = setup;
  return frame(FrameKind::hello, copy);
}

std::vector<char> encode_ready(const Error& error, std::int32_t pid) {
  auto copy = error;
  return frame(FrameKind::ready, copy, pid);
}

std::vector<char> encode_request(std::uint64_t id, const AnyRequest& request) {
  return frame_variant(FrameKind::request, id, request);
}

std::vector<char> encode_nested_request(std::uint64_t id, const AnyRequest& request) {
  return frame_variant(FrameKind::nested_request, id, request);
}

std::vector<char> encode_reply(std::uint64_t id, const AnyReply& reply, std::uint64_t denials) {
  return frame_variant(FrameKind::reply, id, reply, denials);
}

std::vector<char> encode_goodbye() {
  return frame(FrameKind::goodbye);
}

std::vector<char> encode_stuck(std::uint64_t id) {
  return frame(FrameKind::stuck, id);
}

std::vector<char> encode_event(const LogEvent& event) {
  auto copy = event;
  return frame(FrameKind::event, copy);
}

std::vector<char> encode_host_call(std::uint64_t id, const std::string& name, const List& args, Deadline deadline) {
  auto n = name;
  auto a = args;
  return frame(FrameKind::host_call, id, n, a, deadline);
}

std::vector<char> encode_host_reply(std::uint64_t id, const Expected<Value>& result) {
  return frame_variant(FrameKind::host_reply, id, AnyReply(result));
}

std::vector<char> encode_host_cancel(std::uint64_t id) {
  return frame(FrameKind::host_cancel, id);
}

Expected<Frame> decode(const char* data, std::size_t size) {
  caf::binary_deserializer src(nullptr, data, size);
  Frame out;
  std::uint8_t kind = 0;
  if (src(kind))
    return protocol_error("empty frame");
  out.kind = static_cast<FrameKind>(kind);
  caf::error err;
  switch (out.kind) {
    case FrameKind::hello: {
      WorkerSetup s;
      err = src(s);
      out.setup = std::move(s);
      break;
    }
    case FrameKind::ready:
      err = src(out.error, out.pid);
      break;
    case FrameKind::request:
    case FrameKind::nested_request: {
      std::uint8_t index = 0;
      err = src(out.id, index);
      AnyRequest r;
      if (!err)
        err = load_alternative(src, index, r);
      out.request = std::move(r);
      break;
    }
    case FrameKind::host_call:
      err = src(out.id, out.name, out.args, out.deadline);
      break;
    case FrameKind::host_reply: {
      std::uint8_t index = 0;
      err = src(out.id, index);
      AnyReply r;
      if (!err)
        err = load_alternative(src, index, r);
      if (!err) {
        auto* v = std::get_if<Expected<Value>>(&r);
        if (!v)
          return protocol_error("a host reply must be one value");
        out.result = std::move(*v);
      }
      break;
    }
    case FrameKind::host_cancel:
      err = src(out.id);
      break;
    case FrameKind::reply: {
      std::uint8_t index = 0;
      err = src(out.id, out.denials, index);
      AnyReply r;
      if (!err)
        err = load_alternative(src, index, r);
      out.reply = std::move(r);
      break;
    }
    case FrameKind::goodbye:
      break;
    case FrameKind::stuck:
      err = src(out.id);
      break;
    case FrameKind::event: {
      LogEvent e;
      err = src(e);
      out.event = std::move(e);
      break;
    }
    default:
      return protocol_error("unknown frame kind " + std::to_string(kind));
  }
  if (err)
    return protocol_error("malformed frame of kind " + std::to_string(kind));
  if (src.remaining() != 0)
    return protocol_error("trailing bytes in frame of kind " + std::to_string(kind));
  return out;
}

ssize_t send_with_fds(int fd, const char* data, std::size_t size, const std::vector<int>& fds, int flags) {
  iovec iov{const_cast<char*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
  return ::sendmsg(fd, &msg, flags);
}

namespace {

// Reads into `data` (at most `size`), appending descriptors that came with
// the bytes to `fds` (closing them when it is null). As read(2).
ssize_t receive(int fd, char* data, std::size_t size, std::deque<int>* fds) {
  iovec iov{data, size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFrameFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0 && errno == ENOTSOCK)
    return ::read(fd, data, size);  // a pipe carries no descriptors
  if (n < 0)
    return n;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
      continue;
    std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      if (fds)
        fds->push_back(received);
      else
        ::close(received);
    }
  }
  return n;
}

bool read_exact(int fd, char* data, std::size_t size, std::deque<int>* fds) {
  while (size > 0) {
    ssize_t n = receive(fd, data, size, fds);
    if (n == 0)
      return false;
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

} // namespace

bool write_all(int fd, const char* data, std::size_t size, const std::vector<int>& fds) {
  bool attach = !fds.empty();
  while (size > 0) {
    // MSG_NOSIGNAL: a dead peer is an error here, never a SIGPIPE.
    ssize_t n = attach ? send_with_fds(fd, data, size, fds, MSG_NOSIGNAL) : ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, -1) < 0 && errno != EINTR)
          return false;
        continue;
      }
      return false;
    }
    attach = false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

std::optional<std::vector<char>> read_frame(int fd, std::deque<int>* fds) {
  unsigned char len[4];
  if (!read_exact(fd, reinterpret_cast<char*>(len), 4, fds))
    return std::nullopt;
  std::uint32_t n = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<std::uint32_t>(len[3]) << 24);
  if (n > kMaxFrame)
    return std::nullopt;
  std::vector<char> body(n);
  if (!read_exact(fd, body.data(), n, fds))
    return std::nullopt;
  return body;
}

bool FrameReader::fill(int fd) {
  constexpr std::size_t kRead = 1 << 16;
  // Keep what next() has not returned yet at the front, with room behind it.
  if (start_ == end_) {
    start_ = end_ = 0;
  } else if (start_ > 0 && capacity_ - end_ < kRead) {
    std::memmove(data_.get(), data_.get() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  for (;;) {
    if (capacity_ - end_ < kRead) {
      std::size_t grown = std::max(capacity_ * 2, end_ + kRead);
      std::unique_ptr<char[]> bigger(new char[grown]);
      if (end_ > start_)
        std::memcpy(bigger.get(), data_.get() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
      data_ = std::move(bigger);
      capacity_ = grown;
    }
    std::size_t room = capacity_ - end_;
    ssize_t n = receive(fd, data_.get() + end_, room, &fds_);
    if (n > 0) {
      end_ += static_cast<std::size_t>(n);
      if (static_cast<std::size_t>(n) < room)
        return true;
      continue;
    }
    if (n == 0)
      return false;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

FrameReader::~FrameReader() {
  for (int fd : fds_)
    ::close(fd);
}

FrameReader::FrameReader(FrameReader&& other) noexcept
  : fds_(std::move(other.fds_)), data_(std::move(other.data_)), capacity_(std::exchange(other.capacity_, 0)),
    start_(std::exchange(other.start_, 0)), end_(std::exchange(other.end_, 0)),
    corrupt_(std::exchange(other.corrupt_, false)) {
  other.fds_.clear();
}

FrameReader& FrameReader::operator=(FrameReader&& other) noexcept {
  if (this != &other) {
    for (int fd : fds_)
      ::close(fd);
    fds_ = std::move(other.fds_);
    other.fds_.clear();
    data_ = std::move(other.data_);
    capacity_ = std::exchange(other.capacity_, 0);
    start_ = std::exchange(other.start_, 0);
    end_ = std::exchange(other.end_, 0);
    corrupt_ = std::exchange(other.corrupt_, false);
  }
  return *this;
}

FdsOut::~FdsOut() {
  for (int fd : fds_)
    ::close(fd);
}

std::int32_t FdsOut::put(const Buffer& b) {
  if (b.size() < kSharedMemoryThreshold || fds_.size() >= kMaxFrameFds)
    return -1;
  int fd = b.state()->memfd >= 0 ? ::fcntl(b.state()->memfd, F_DUPFD_CLOEXEC, 0) : detail::memfd_copy(b.data(), b.size());
  if (fd < 0)
    return -1;  // no shared memory: the bytes go inline
  fds_.push_back(fd);
  return static_cast<std::int32_t>(fds_.size() - 1);
}

Buffer FdsIn::take(std::int32_t index, std::size_t size, bool readonly) {
  if (index != taken_ || fifo_.empty())
    return Buffer();
  ++taken_;
  int fd = fifo_.front();
  fifo_.pop_front();
  return detail::map_memfd(fd, size, readonly);
}

std::optional<std::string_view> FrameReader::next() {
  std::size_t avail = end_ - start_;
  if (avail < 4)
    return std::nullopt;
  auto* p = reinterpret_cast<const unsigned char*>(data_.get() + start_);
  std::uint32_t n = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
  if (n > kMaxFrame) {
    corrupt_ = true;
    return std::nullopt;
  }
  if (avail < 4 + static_cast<std::size_t>(n))
    return std::nullopt;
  std::string_view body(data_.get() + start_ + 4, n);
  start_ += 4 + n;
  return body;
}

} // namespace wire
} // namespace gk
