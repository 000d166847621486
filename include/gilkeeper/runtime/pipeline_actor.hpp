#pragma once

/// For hosts that are actors: the message a Pipeline sends to the actors
/// given to `Pipeline::notify` when it completes:
/// `(gk::pipeline_done_atom, gk::PipelineReport)`.

#include "gilkeeper/runtime/pipeline.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

namespace gk {
using pipeline_done_atom = caf::atom_constant<caf::atom("gkpipedone")>;
} // namespace gk

// A local notification only: never serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gk::PipelineReport)
