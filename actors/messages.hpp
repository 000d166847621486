#pragma once

/// CAF glue for the message vocabulary: atoms, the error category, and the
/// conversion between `gk::Error` and `caf::error`.
///
/// The request and reply structs (interop/request.hpp) travel inside this
/// process as CAF messages. (Serialization across processes is the wire
/// codec's job; inside one process CAF never serializes them.)

#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/interop/request.hpp"

#include <caf/atom.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

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

using reply_atom = caf::atom_constant<caf::atom("gkreply")>;
using timeout_atom = caf::atom_constant<caf::atom("gktimeout")>;

} // namespace gk

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::Value)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::Error)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::ImportRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::CallRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::EvalRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::ExecRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::GetattrRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::ReleaseRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::BatchRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::BatchReply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::StatsRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::Stats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::ShutdownRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::ShutdownReport)
