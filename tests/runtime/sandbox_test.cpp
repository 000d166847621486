// The kernel backs the capability rules in process isolation: native code
// that bypasses Python's audit events still gets EPERM.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <cerrno>

using namespace gk;
using namespace std::chrono_literals;

namespace {

Config sandboxed(const std::string& caps) {
  return test::test_config("[runtime]\nisolation = \"process\"\n[capabilities]\n" + caps);
}

std::int64_t native(Runtime& rt, const std::string& fn) {
  auto r = rt.exec("import gk_testext\n_r = gk_testext." + fn + "()");
  REQUIRE(r.has_value());
  auto v = rt.eval("_r");
  REQUIRE(v.has_value());
  return v->as_int();
}

} // namespace

TEST_CASE("native fork, exec and internet sockets get EPERM from the kernel when denied", "[sandbox][process]") {
  Runtime rt(sandboxed("fork = \"deny\"\nsubprocess = \"deny\"\nnetwork = false\n"));
  CHECK(native(rt, "raw_fork") == -EPERM);
  CHECK(native(rt, "raw_exec") == -EPERM);
  CHECK(native(rt, "raw_socket_inet") == -EPERM);
  // What must keep working: threads, AF_UNIX sockets.
  CHECK(native(rt, "raw_thread") == 0);
  CHECK(native(rt, "raw_socket_unix") == 0);
  auto pool = rt.eval("__import__('concurrent.futures').futures.ThreadPoolExecutor(4).map(abs, [-1, -2, -3]).__next__()");
  REQUIRE(pool.has_value());
  CHECK(pool->as_int() == 1);
  // The worker is unharmed.
  CHECK(rt.call("gk_testmod:add", {1, 2})->as_int() == 3);
}

TEST_CASE("the default capabilities deny a native fork in a worker but allow exec and sockets", "[sandbox][process]") {
  Runtime rt(test::test_config("[runtime]\nisolation = \"process\"\n"));
  CHECK(native(rt, "raw_fork") == -EPERM);
  CHECK(native(rt, "raw_socket_inet") == 0);
  CHECK(native(rt, "raw_thread") == 0);
}

TEST_CASE("fork = \"allow\" lets native code fork in a worker", "[sandbox][process]") {
  Runtime rt(sandboxed("fork = \"allow\"\n"));
  CHECK(native(rt, "raw_fork") > 0);
}

TEST_CASE("capability denials in worker processes are counted in the host's stats", "[sandbox][process][capabilities]") {
  Runtime rt(sandboxed("deny_modules = [\"ctypes\"]\n"));
  for (int i = 0; i < 2; ++i) {
    auto r = rt.exec("import ctypes");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ErrorCode::capability_denied);
    CHECK(r.error().where == "capabilities.deny_modules: ctypes");
    CHECK(r.error().type == "gilkeeper.ImportDenied");
  }
  CHECK(rt.stats().capability_denials == 2);
}
