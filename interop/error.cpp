#include "gilkeeper/interop/error.hpp"

namespace gk {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::none: return "none";
    case ErrorCode::python_exception: return "python_exception";
    case ErrorCode::deadline_exceeded: return "deadline_exceeded";
    case ErrorCode::conversion: return "conversion";
    case ErrorCode::capability_denied: return "capability_denied";
    case ErrorCode::worker_crashed: return "worker_crashed";
    case ErrorCode::wedged: return "wedged";
    case ErrorCode::degraded: return "degraded";
    case ErrorCode::stale_ref: return "stale_ref";
    case ErrorCode::overloaded: return "overloaded";
    case ErrorCode::bad_request: return "bad_request";
    case ErrorCode::runtime_stopped: return "runtime_stopped";
    case ErrorCode::bad_input: return "bad_input";
    case ErrorCode::internal: return "internal";
    case ErrorCode::cancelled: return "cancelled";
    case ErrorCode::deadlock: return "deadlock";
    case ErrorCode::node_lost: return "node_lost";
  }
  return "internal";
}

const char* to_string(DeadlinePhase phase) noexcept {
  switch (phase) {
    case DeadlinePhase::none: return "";
    case DeadlinePhase::queued: return "queued";
    case DeadlinePhase::soft: return "soft";
    case DeadlinePhase::hard: return "hard";
  }
  return "";
}

ErrorCode error_code_from_string(const std::string& name) noexcept {
  for (int i = 1; i <= static_cast<int>(kLastErrorCode); ++i) {
    auto c = static_cast<ErrorCode>(i);
    if (name == to_string(c))
      return c;
  }
  return ErrorCode::none;
}

std::string Error::to_string() const {
  std::string out = gk::to_string(code);
  if (phase != DeadlinePhase::none) {
    out += " (";
    out += gk::to_string(phase);
    out += ")";
  }
  out += ": ";
  if (!type.empty())
    out += type + ": ";
  out += message;
  // The place, unless the message already names it ("call m:f ran past
  // its deadline").
  if (!where.empty() && code != ErrorCode::python_exception && message.find(where) == std::string::npos)
    out += " [" + where + "]";
  return out;
}

bool operator==(const Error& a, const Error& b) {
  return a.code == b.code && a.phase == b.phase && a.message == b.message
         && a.type == b.type && a.traceback == b.traceback && a.where == b.where
         && a.signal == b.signal && a.exit_status == b.exit_status;
}

} // namespace gk
