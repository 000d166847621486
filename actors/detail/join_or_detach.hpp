#pragma once

// Internal: the end of a thread an object owns.

#include <thread>

namespace gk::detail {

/// Joins `t`, or detaches it when called on `t` itself (the owner's last
/// reference went away on its own thread, which then ends by itself).
inline void join_or_detach(std::thread& t) {
  if (!t.joinable())
    return;
  if (t.get_id() == std::this_thread::get_id())
    t.detach();
  else
    t.join();
}

} // namespace gk::detail
