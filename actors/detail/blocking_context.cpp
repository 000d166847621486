#include "actors/detail/blocking_context.hpp"
#include "gilkeeper/config/log.hpp"

namespace gk::detail {

namespace {
// Constant-initialized and trivially destructible: no guard on access.
thread_local const char* t_context = nullptr;
} // namespace

const char* blocking_context() noexcept {
  return t_context;
}

void mark_thread(const char* context) noexcept {
  t_context = context;
}

Error deadlock_error(const std::string& what, const char* context) {
  Error e(ErrorCode::deadlock, what + ": a blocking call made " + (context ? context : "where it cannot be served"));
  // Refusals are rare and always a bug in the caller: each is an alert.
  LogEvent event;
  event.level = LogLevel::warn;
  event.name = "deadlock";
  event.message = e.message;
  event.with("call", what).with("context", context ? context : "");
  log::emit(std::move(event));
  return e;
}

} // namespace gk::detail
