#pragma once

/// CAF glue for the message vocabulary: atoms, the error category, the
/// conversion between `gk::Error` and `caf::error`, and `inspect` overloads
/// that make every request and reply serializable with CAF's binary
/// serializer (the wire codec between a host and its worker processes, and
/// CAF's network layer). Call `announce_message_types` on an actor system
/// config that may serialize them.

#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/request.hpp"

#include <caf/atom.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/none.hpp>
#include <caf/sec.hpp>

#include <cstring>
#include <memory>

namespace gk {

/// The category of gilkeeper errors inside `caf::error`.
inline constexpr caf::atom_value error_category = caf::atom("gilkeeper");

/// `gk::Error` -> `caf::error` (the Error travels in the context).
caf::error to_caf_error(Error e);

/// `caf::error` -> `gk::Error`. CAF's own errors map to the closest code:
/// `request_timeout` -> deadline_exceeded, `request_receiver_down` and
/// actor exits -> runtime_stopped, anything else -> internal.
Error from_caf_error(const caf::error& e);

/// Registers the error category renderer with an actor system config, so
/// that `to_string(caf::error)` prints gilkeeper errors readably.
void register_error_category(caf::actor_system_config& cfg);

/// Announces every request and reply type (and Value, Error) so that CAF
/// serializes them (unannounced types serialize to nothing).
void announce_message_types(caf::actor_system_config& cfg);

using reply_atom = caf::atom_constant<caf::atom("gkreply")>;

} // namespace gk


namespace gk {

// -- inspect: the serialized form of the vocabulary ---------------------------
//
// A Deadline travels as its remaining budget and becomes a local deadline on
// arrival. A Ref travels as (id, epoch, type name); the receiving side
// attaches its own release function (see ProcessExecutor).

/// Deepest nesting of lists and dicts that a Value is loaded with from bytes;
/// deeper is a load error, not a stack overflow. Well above kMaxDepth, so
/// that a value too deep to convert still arrives and fails its conversion
/// with an error naming where.
inline constexpr int kMaxLoadDepth = 10 * kMaxDepth;

namespace detail {
/// The nesting of the Value this thread is loading.
inline thread_local int value_load_depth = 0;
/// Counts one level of value_load_depth for its lifetime.
struct ValueLoadLevel {
  ValueLoadLevel() noexcept { ++value_load_depth; }
  ~ValueLoadLevel() { --value_load_depth; }
  ValueLoadLevel(const ValueLoadLevel&) = delete;
  ValueLoadLevel& operator=(const ValueLoadLevel&) = delete;
};

/// Where a Buffer's memory travels out of band: set on the thread that
/// encodes or decodes a worker process's frame, so that a large Buffer
/// goes as a shared-memory file descriptor beside the frame instead of
/// inside it (actors/shm.cpp). Null (the network, CAF messages): a Buffer
/// travels as its bytes.
class BufferChannel {
public:
  virtual ~BufferChannel() = default;
  /// Sending: an index for the Buffer's memory in the frame's descriptors,
  /// or -1 to send its bytes inline (too small).
  virtual std::int32_t put(const Buffer& b) = 0;
  /// Receiving: the Buffer whose memory is descriptor `index` of the frame,
  /// with this layout; an empty Buffer when there is no such descriptor or
  /// it is not as large as the layout says.
  virtual Buffer take(std::int32_t index, std::size_t size, bool readonly) = 0;
};
inline thread_local BufferChannel* buffer_channel = nullptr;

/// Sets buffer_channel for its lifetime.
struct BufferChannelScope {
  explicit BufferChannelScope(BufferChannel* c) noexcept : previous_(buffer_channel) { buffer_channel = c; }
  ~BufferChannelScope() { buffer_channel = previous_; }
  BufferChannelScope(const BufferChannelScope&) = delete;
  BufferChannelScope& operator=(const BufferChannelScope&) = delete;

private:
  BufferChannel* previous_;
};

/// Whether a Buffer's layout is one this build can carry: a single-item
/// struct code, a shape with at most 64 dimensions whose bytes fit.
inline bool buffer_layout_ok(std::int64_t itemsize, const std::vector<std::int64_t>& shape, std::size_t& bytes) {
  if (itemsize <= 0 || itemsize > 64 || shape.size() > 64)
    return false;
  std::uint64_t n = static_cast<std::uint64_t>(itemsize);
  for (auto d : shape) {
    if (d < 0 || (d > 0 && n > (std::uint64_t{1} << 40) / static_cast<std::uint64_t>(d)))
      return false;
    n *= static_cast<std::uint64_t>(d);
  }
  bytes = static_cast<std::size_t>(n);
  return true;
}

} // namespace detail

/// A Buffer travels as its layout, then either its bytes (C order) or, in a
/// worker process's frame, the index of a shared-memory descriptor.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Buffer& x) {
  auto name = caf::meta::type_name("Buffer");
  if constexpr (Inspector::writes_state) {
    std::string format;
    std::int64_t itemsize = 1;
    std::vector<std::int64_t> shape;
    bool readonly = false;
    std::int32_t shm = -1;
    std::string data;  // CAF checks its size against the frame's before allocating it
    if (auto err = f(name, format, itemsize, shape, readonly, shm, data))
      return err;
    std::size_t bytes = 0;
    if (!detail::buffer_layout_ok(itemsize, shape, bytes))
      return caf::make_error(caf::sec::invalid_argument);
    Buffer flat;
    if (shm >= 0) {
      flat = detail::buffer_channel ? detail::buffer_channel->take(shm, bytes, readonly) : Buffer();
      if ((!flat.data() && bytes > 0) || !data.empty())
        return caf::make_error(caf::sec::invalid_argument);
    } else {
      if (data.size() != bytes)
        return caf::make_error(caf::sec::invalid_argument);
      flat = Buffer::copy_of(data.data(), data.size());
    }
    x = format == "B" && shape.size() == 1 ? flat : detail::relayout(flat, std::move(format), itemsize, std::move(shape));
    if (!x.state())
      return caf::make_error(caf::sec::invalid_argument);
    return caf::none;
  } else {
    Buffer packed = x.contiguous() ? x : x.copy();
    std::string format = packed.format();
    std::int64_t itemsize = packed.itemsize();
    std::vector<std::int64_t> shape = packed.shape();
    bool readonly = packed.readonly();
    std::int32_t shm = detail::buffer_channel ? detail::buffer_channel->put(packed) : -1;
    std::string data;
    if (shm < 0)
      data.assign(static_cast<const char*>(packed.data()), packed.size());
    return f(name, format, itemsize, shape, readonly, shm, data);
  }
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Bytes& x) {
  return f(caf::meta::type_name("Bytes"), x.data);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Deadline& x) {
  std::int64_t budget = x.budget();
  return f(caf::meta::type_name("Deadline"), budget, caf::meta::load_callback([&]() -> caf::error {
             x = Deadline::from_budget(budget);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Ref& x) {
  std::uint64_t id = x.id();
  std::uint64_t epoch = x.epoch();
  std::string type_name = x.type_name();
  return f(caf::meta::type_name("Ref"), id, epoch, type_name, caf::meta::load_callback([&]() -> caf::error {
             x = id == 0 ? Ref()
                         : Ref(std::make_shared<const detail::RefState>(id, epoch, std::move(type_name), nullptr));
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Value& x) {
  auto name = caf::meta::type_name("Value");
  if constexpr (Inspector::writes_state) {
    std::uint8_t tag = 0;
    if (auto err = f(name, tag))
      return err;
    auto load = [&](auto tmp) -> caf::error {
      auto err = f(tmp);
      x = Value(std::move(tmp));
      return err;
    };
    switch (static_cast<Value::Kind>(tag)) {
      case Value::Kind::null: x = Value(); return caf::none;
      case Value::Kind::boolean: return load(false);
      case Value::Kind::integer: return load(std::int64_t{0});
      case Value::Kind::real: {
        // CAF 0.17 packs doubles in a way that loses NaN: send the bits.
        std::uint64_t bits = 0;
        auto err = f(bits);
        double d;
        std::memcpy(&d, &bits, sizeof d);
        x = Value(d);
        return err;
      }
      case Value::Kind::string: return load(std::string());
      case Value::Kind::bytes: return load(Bytes{});
      case Value::Kind::list:
      case Value::Kind::dict: {
        // Bytes from a peer may nest without end.
        detail::ValueLoadLevel level;
        if (detail::value_load_depth > kMaxLoadDepth)
          return caf::make_error(caf::sec::invalid_argument);
        return tag == static_cast<std::uint8_t>(Value::Kind::list) ? load(List{}) : load(Dict{});
      }
      case Value::Kind::ref: return load(Ref{});
      case Value::Kind::buffer: return load(Buffer{});
    }
    return caf::make_error(caf::sec::invalid_argument);
  } else {
    auto tag = static_cast<std::uint8_t>(x.kind());
    switch (x.kind()) {
      case Value::Kind::null: return f(name, tag);
      case Value::Kind::boolean: { bool b = x.as_bool(); return f(name, tag, b); }
      case Value::Kind::integer: { std::int64_t i = x.as_int(); return f(name, tag, i); }
      case Value::Kind::real: {
        double d = x.as_double();
        std::uint64_t bits;
        std::memcpy(&bits, &d, sizeof bits);
        return f(name, tag, bits);
      }
      case Value::Kind::string: return f(name, tag, std::get<std::string>(x.data()));
      case Value::Kind::bytes: return f(name, tag, std::get<Bytes>(x.data()));
      case Value::Kind::list: return f(name, tag, x.as_list());
      case Value::Kind::dict: return f(name, tag, x.as_dict());
      case Value::Kind::ref: return f(name, tag, std::get<Ref>(x.data()));
      case Value::Kind::buffer: return f(name, tag, std::get<Buffer>(x.data()));
    }
    return f(name, tag);
  }
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Error& x) {
  auto code = static_cast<std::uint8_t>(x.code);
  auto phase = static_cast<std::uint8_t>(x.phase);
  return f(caf::meta::type_name("Error"), code, phase, x.message, x.type, x.traceback, x.where, x.signal,
           x.exit_status, caf::meta::load_callback([&]() -> caf::error {
             x.code = static_cast<ErrorCode>(code);
             x.phase = static_cast<DeadlinePhase>(phase);
             return caf::none;
           }));
}

// An Expected travels as a flag and then only the side it holds (no copy of
// the value while saving, nothing for the other side).
template <class Inspector, class T>
typename Inspector::result_type inspect(Inspector& f, Expected<T>& x) {
  auto name = caf::meta::type_name("Expected");
  if constexpr (Inspector::writes_state) {
    bool ok = false;
    if (auto err = f(name, ok))
      return err;
    if (ok) {
      T value{};
      auto err = f(value);
      x = Expected<T>(std::move(value));
      return err;
    }
    Error error;
    auto err = f(error);
    x = Expected<T>(std::move(error));
    return err;
  } else {
    bool ok = x.has_value();
    if (ok)
      return f(name, ok, *x);
    return f(name, ok, const_cast<Error&>(x.error()));
  }
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ImportRequest& x) {
  return f(caf::meta::type_name("ImportRequest"), x.module, x.deadline);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, CallRequest& x) {
  return f(caf::meta::type_name("CallRequest"), x.target, x.args, x.kwargs, x.want_ref, x.self, x.deadline);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, EvalRequest& x) {
  return f(caf::meta::type_name("EvalRequest"), x.expression, x.want_ref, x.deadline);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ExecRequest& x) {
  return f(caf::meta::type_name("ExecRequest"), x.code, x.deadline);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GetattrRequest& x) {
  return f(caf::meta::type_name("GetattrRequest"), x.target, x.object, x.want_ref, x.deadline);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ReleaseRequest& x) {
  return f(caf::meta::type_name("ReleaseRequest"), x.id, x.epoch);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, BatchRequest& x) {
  std::int64_t call_timeout = x.call_timeout.count();
  return f(caf::meta::type_name("BatchRequest"), x.calls, x.deadline, call_timeout,
           caf::meta::load_callback([&]() -> caf::error {
             x.call_timeout = std::chrono::nanoseconds(call_timeout);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, BatchReply& x) {
  return f(caf::meta::type_name("BatchReply"), x.results);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, StatsRequest&) {
  return f(caf::meta::type_name("StatsRequest"));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LatencyBuckets& x) {
  return f(caf::meta::type_name("LatencyBuckets"), x.le_seconds, x.cumulative, x.sum_seconds, x.count);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TypeStats& x) {
  return f(caf::meta::type_name("TypeStats"), x.type, x.submitted, x.calls, x.errors, x.missed_queued, x.missed_soft,
           x.missed_hard, x.queue_p50_us, x.queue_p99_us, x.run_p50_us, x.run_p99_us, x.queue_histogram,
           x.run_histogram);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, TargetStats& x) {
  return f(caf::meta::type_name("TargetStats"), x.target, x.type, x.outcomes, x.slow);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Stats& x) {
  return f(caf::meta::type_name("Stats"), x.types, x.targets, x.slow_calls, x.live_refs, x.queued, x.wedged,
           x.wedged_count, x.restarts, x.restarts_by_cause, x.workers, x.rss_bytes, x.capability_denials,
           x.isolation, x.python_version, x.gil_enabled, x.free_threaded);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ShutdownRequest& x) {
  std::int64_t grace = x.grace.count();
  return f(caf::meta::type_name("ShutdownRequest"), grace, caf::meta::load_callback([&]() -> caf::error {
             x.grace = Deadline::duration{grace};
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LeakedRef& x) {
  return f(caf::meta::type_name("LeakedRef"), x.id, x.type_name, x.origin);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ShutdownReport& x) {
  return f(caf::meta::type_name("ShutdownReport"), x.finalized, x.leaked_refs, x.message);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, HostCallMessage& x) {
  return f(caf::meta::type_name("HostCallMessage"), x.name, x.args, x.deadline);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeInfoRequest&) {
  return f(caf::meta::type_name("NodeInfoRequest"));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeInfo& x) {
  return f(caf::meta::type_name("NodeInfo"), x.version, x.isolation, x.workers, x.python_version, x.capabilities,
           x.queued, x.pid);
}

} // namespace gk
