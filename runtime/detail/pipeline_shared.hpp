#pragma once

// Internal to runtime/: what a pipeline's driver thread shares with the
// pushers, the runtime's reply slots and the C++ stage threads.

#include "gilkeeper/runtime/pipeline.hpp"
#include "actors/executor.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace gk::detail {

// A reply for one dispatch (a Python request or a C++ stage call).
struct Event {
  std::uint64_t dispatch = 0;
  AnyReply reply;
};

// State shared with the pushers, the runtime's reply slots and the C++ stage
// threads; it outlives the pipeline if a late reply comes in after it is
// gone.
struct Shared {
  using clock = std::chrono::steady_clock;

  std::mutex m;
  std::condition_variable driver_cv, space_cv, done_cv;
  std::vector<PipelineRecord> incoming;  // pushed, not yet taken by the driver
  std::vector<Event> events;
  bool wake = false;  // the driver has something to look at
  bool closed = false;
  bool stopping = false;
  bool done = false;
  clock::time_point stop_at{};
  std::uint64_t pushed = 0;
  std::uint64_t emitted = 0;
  std::size_t max_in_flight_seen = 0;

  // PRECONDITION: `m` held. True when the driver needs a notify.
  bool set_wake() {
    bool was = wake;
    wake = true;
    return !was;
  }
  void post(Event&& e) {
    bool notify;
    {
      std::lock_guard<std::mutex> g(m);
      events.push_back(std::move(e));
      notify = set_wake();
    }
    if (notify)
      driver_cv.notify_one();
  }
};

class PipelineSlot final : public ReplySlot {
public:
  PipelineSlot(std::shared_ptr<Shared> shared, std::uint64_t dispatch)
    : shared_(std::move(shared)), dispatch_(dispatch) {}

protected:
  void deliver(AnyReply&& reply) override { shared_->post(Event{dispatch_, std::move(reply)}); }

private:
  std::shared_ptr<Shared> shared_;
  std::uint64_t dispatch_;
};

} // namespace gk::detail
