#pragma once

/// The wire codec between a host and its worker processes.
///
/// A frame is a 4-byte little-endian length followed by that many bytes,
/// written by CAF's binary serializer: a kind byte, then the body. Bodies
/// are the same request and reply types the actors use (see the `inspect`
/// overloads in actors/messages.hpp). A Deadline travels as its remaining
/// budget and becomes a local deadline when decoded.

#include "actors/executor.hpp"
#include "gilkeeper/actors/messages.hpp"
#include "gilkeeper/config/config.hpp"
#include "gilkeeper/config/log.hpp"

#include <cstdint>
#include <sys/types.h>
#include <deque>
#include <optional>
#include <string>
#include <memory>
#include <string_view>
#include <vector>

namespace gk::wire {

/// Largest frame accepted (a bigger length is a protocol error).
inline constexpr std::uint32_t kMaxFrame = 1u << 30;
/// Most shared-memory descriptors one frame carries (more Buffers go inline).
inline constexpr std::size_t kMaxFrameFds = 32;

enum class FrameKind : std::uint8_t {
  hello = 1,    ///< host -> worker: WorkerSetup
  ready = 2,    ///< worker -> host: Error (code none when ready), pid
  request = 3,  ///< host -> worker: id, AnyRequest
  reply = 4,    ///< worker -> host: id, AnyReply
  goodbye = 5,  ///< host -> worker: finish and exit
  stuck = 6,    ///< worker -> host: id; the request runs native code past its deadline
  event = 7,    ///< worker -> host: a LogEvent (an alert or a trace), for the host's log
  host_call = 8,    ///< worker -> host: id, name, List args, Deadline: run a host function
  host_reply = 9,   ///< host -> worker: id, Expected<Value>: the host function's result
  host_cancel = 10, ///< worker -> host: id; the worker stopped waiting for that host call
  nested_request = 11,  ///< host -> worker: id, AnyRequest, nested in the host call the worker waits in
};

/// What a worker needs to start its interpreter.
struct WorkerSetup {
  std::vector<std::string> python_path;
  std::string executable;
  std::int32_t interrupt_signal = 2;  ///< -1 for none
  std::uint64_t epoch = 0;            ///< stamped on the worker's Refs
  std::int64_t grace_ns = 0;
  std::int64_t shutdown_grace_ns = 0;
  LimitsConfig limits;
  CapabilitiesConfig capabilities;
  /// Modules to import before answering ready (a warm spare is warm with
  /// the modules the workload has used so far). Import errors are ignored.
  std::vector<std::string> preload;
  /// The alerts and traces a worker runs itself (it sends their events).
  MonitoringConfig monitoring;
  DebugConfig debug;
  std::uint8_t log_level = static_cast<std::uint8_t>(LogLevel::info);
};

WorkerSetup make_setup(const Config& config, std::uint64_t epoch);
/// The Config a worker runs its executor with.
Config config_from_setup(const WorkerSetup& setup);

/// A decoded frame; which members are set depends on `kind`.
struct Frame {
  FrameKind kind{};
  std::uint64_t id = 0;
  std::optional<WorkerSetup> setup;
  std::optional<AnyRequest> request;
  std::optional<AnyReply> reply;
  Error error;          ///< ready
  std::uint64_t denials = 0;  ///< reply: the worker's capability denials so far
  std::int32_t pid = 0; ///< ready
  std::optional<LogEvent> event;  ///< event
  std::string name;               ///< host_call
  List args;                      ///< host_call
  Deadline deadline;              ///< host_call
  std::optional<Expected<Value>> result;  ///< host_reply
};

/// Encoders: the whole frame including its length prefix.
std::vector<char> encode_hello(const WorkerSetup& setup);
std::vector<char> encode_ready(const Error& error, std::int32_t pid);
std::vector<char> encode_request(std::uint64_t id, const AnyRequest& request);
/// A request a host function made on behalf of the host call the worker
/// waits in: served only by that wait (a worker that is no longer waiting,
/// its call abandoned, drops it; the host answered it already).
std::vector<char> encode_nested_request(std::uint64_t id, const AnyRequest& request);
/// `denials`: the worker's capability denials so far (for the host's stats).
std::vector<char> encode_reply(std::uint64_t id, const AnyReply& reply, std::uint64_t denials = 0);
std::vector<char> encode_goodbye();
/// Request `id` was interrupted at its deadline and keeps running native
/// code that does not check for signals (it will not reply in time).
std::vector<char> encode_stuck(std::uint64_t id);
/// A log event of the worker's, for the host's log.
std::vector<char> encode_event(const LogEvent& event);

/// A host call of Python code in the worker (`gilkeeper.host.NAME`).
std::vector<char> encode_host_call(std::uint64_t id, const std::string& name, const List& args, Deadline deadline);
std::vector<char> encode_host_reply(std::uint64_t id, const Expected<Value>& result);
std::vector<char> encode_host_cancel(std::uint64_t id);

/// Decodes a frame body (without the length prefix). Errors: bad_request
/// naming what could not be read.
Expected<Frame> decode(const char* data, std::size_t size);

/// Writes a whole buffer to a blocking fd (retries on EINTR and short
/// writes). False on error (errno set). `fds` (the frame's shared memory,
/// FdsOut) go with its first byte.
bool write_all(int fd, const char* data, std::size_t size, const std::vector<int>& fds = {});

/// Sends `data` (at least its first byte) with `fds` attached; returns the
/// bytes sent, or -1 (errno set), as send(2).
ssize_t send_with_fds(int fd, const char* data, std::size_t size, const std::vector<int>& fds, int flags);

/// Reads one whole frame body from a blocking fd. nullopt on EOF or error.
/// Descriptors that arrive with it are appended to `fds` (closed when null).
std::optional<std::vector<char>> read_frame(int fd, std::deque<int>* fds = nullptr);

/// The shared memory of the Buffers of one frame being encoded (at least
/// kSharedMemoryThreshold bytes): a memfd each, sent beside the frame. Use:
///   FdsOut out;
///   { detail::BufferChannelScope s(&out); frame = encode_reply(...); }
///   write_all(fd, frame.data(), frame.size(), out.fds());
/// A Buffer already in shared memory (Buffer::allocate) is not copied.
class FdsOut final : public detail::BufferChannel {
public:
  FdsOut() = default;
  ~FdsOut() override;
  FdsOut(const FdsOut&) = delete;
  FdsOut& operator=(const FdsOut&) = delete;
  std::int32_t put(const Buffer& b) override;
  Buffer take(std::int32_t, std::size_t, bool) override { return Buffer(); }
  const std::vector<int>& fds() const noexcept { return fds_; }
  /// Hands the descriptors over (the caller closes them once sent).
  std::vector<int> release() { return std::move(fds_); }

private:
  std::vector<int> fds_;
};

/// The descriptors received beside frames, in order: decoding a frame with
/// this as its channel maps the frame's ones.
class FdsIn final : public detail::BufferChannel {
public:
  explicit FdsIn(std::deque<int>& fifo) : fifo_(fifo) {}
  std::int32_t put(const Buffer&) override { return -1; }
  Buffer take(std::int32_t index, std::size_t size, bool readonly) override;

private:
  std::deque<int>& fifo_;
  std::int32_t taken_ = 0;
};

/// Accumulates bytes from a non-blocking fd and yields whole frame bodies.
class FrameReader {
public:
  /// Reads what is available, straight into the buffer frames are decoded
  /// from. Returns false on EOF or a hard error (then the peer is gone),
  /// true otherwise.
  bool fill(int fd);
  /// The next complete frame body, if any: a view into the buffer, valid
  /// until the next fill() (no copy of the frame).
  std::optional<std::string_view> next();
  /// True when the stream announced a frame larger than kMaxFrame.
  bool corrupt() const noexcept { return corrupt_; }
  /// Descriptors received beside the frames read so far (see FdsIn).
  std::deque<int>& fds() noexcept { return fds_; }
  FrameReader() = default;
  ~FrameReader();
  FrameReader(FrameReader&& other) noexcept;
  FrameReader& operator=(FrameReader&& other) noexcept;

private:
  std::deque<int> fds_;
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t start_ = 0;  // first byte not yet returned by next()
  std::size_t end_ = 0;    // one past the last byte read
  bool corrupt_ = false;
};

} // namespace gk::wire
