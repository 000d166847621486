// caf_host: a CAF program gives gilkeeper its own actor system and calls Python from an event-based actor, with a timeout that interrupts Python.
#include <gilkeeper/actors/py_runtime.hpp>
#include <gilkeeper/gilkeeper.hpp>

#include <caf/all.hpp>

#include <iostream>

using namespace std::chrono_literals;

int main() {
  // 1. The host's actor system, prepared for gilkeeper's messages. The
  //    runtime starts no scheduler of its own on it.
  caf::actor_system_config cfg;
  gk::configure_actor_system(cfg);
  caf::actor_system sys{cfg};
  gk::Runtime rt(gk::Config{}, sys);
  auto python = gk::runtime_actor(rt);

  // 2. An event-based actor asks Python twice, never blocking its thread:
  //    a quick call, then a sleep that its 50 ms timeout interrupts (the
  //    timeout is the request's deadline, so Python stops at it).
  int failures = 0;
  auto asker = sys.spawn([&failures, python](caf::event_based_actor* self) {
    gk::request(self, python, 1s, gk::CallRequest{"math:hypot", {3.0, 4.0}})
        .then(
            [=, &failures](const gk::Value& v) {
              std::cout << "hypot(3, 4) = " << v.as_double() << "\n";
              gk::request(self, python, 50ms, gk::CallRequest{"time:sleep", {10}})
                  .then([&failures](const gk::Value&) { ++failures; },
                        [](const caf::error& e) {
                          auto err = gk::from_caf_error(e);
                          std::cout << "sleep(10) with a 50 ms timeout: " << to_string(err.code) << " ("
                                    << to_string(err.phase) << ")\n";
                        });
            },
            [&failures](const caf::error& e) {
              std::cerr << gk::from_caf_error(e).to_string() << "\n";
              ++failures;
            });
  });
  caf::scoped_actor waiter{sys};
  waiter->wait_for(asker);

  // 3. The interpreter is free again at once: the sleep did not go on.
  auto next = rt.eval("40 + 2");
  std::cout << "next call: " << (next ? next->as_int() : -1) << "\n";
  rt.shutdown();
  return failures == 0 && next && next->as_int() == 42 ? 0 : 1;
}
