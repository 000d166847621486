#include "actors/detail/blocking_context.hpp"

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
  return Error(ErrorCode::deadlock, what + ": a blocking call made " + (context ? context : "where it cannot be served"));
}

} // namespace gk::detail
