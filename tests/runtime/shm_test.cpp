// Buffers in process isolation: large ones travel as shared memory (a sealed
// memfd passed beside the frame), in both directions, and the memory is
// gone once both sides are done, also when the worker is killed mid-call.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <thread>
#include <unistd.h>

using namespace gk;
using namespace std::chrono_literals;

namespace {

const RequestOptions kLong = RequestOptions::with_deadline(Deadline::after(std::chrono::seconds(60)));

// gilkeeper's buffer memory this (host) process holds: descriptors + mappings.
int host_gk_buffers() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      char target[256] = {};
      std::string link = std::string("/proc/self/fd/") + e->d_name;
      ssize_t len = ::readlink(link.c_str(), target, sizeof target - 1);
      if (len > 0 && std::strstr(target, "gk-buffer"))
        ++n;
    }
    ::closedir(d);
  }
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find("gk-buffer") != std::string::npos)
      ++n;
  return n;
}

int worker_gk_buffers(Runtime& rt) {
  auto r = rt.call("gk_bufmod:gk_buffers_here", {}, {}, kLong);
  REQUIRE(r);
  return static_cast<int>(r->get<std::int64_t>("fds").value() + r->get<std::int64_t>("maps").value());
}

} // namespace

TEST_CASE("a 64 MiB buffer reaches a worker process intact through shared memory, which is gone after the call",
          "[buffer][process][shm]") {
  Runtime rt(test::process_config("workers = 1\n"));
  int host_before = host_gk_buffers();
  std::uint64_t expected = 0;
  {
    Buffer b = Buffer::allocate(64u << 20);
    auto* p = static_cast<unsigned char*>(b.data());
    for (std::size_t i = 0; i < b.size(); ++i) {
      p[i] = static_cast<unsigned char>((i * 31) >> 3);
      expected += p[i];
    }
    CHECK(host_gk_buffers() == host_before + 2);  // the caller's own: a descriptor and a mapping
    auto sum = rt.call("gk_bufmod:checksum", {b}, {}, kLong);
    REQUIRE(sum);
    CHECK(static_cast<std::uint64_t>(sum->as_int()) == expected);
    CHECK(worker_gk_buffers(rt) == 0);
    CHECK(host_gk_buffers() == host_before + 2);
  }
  CHECK(host_gk_buffers() == host_before);
}

TEST_CASE("a large array made in a worker comes back through shared memory", "[buffer][process][shm]") {
  Runtime rt(test::process_config("workers = 1\n"));
  int host_before = host_gk_buffers();
  {
    auto r = rt.call("gk_bufmod:new_array", {1 << 20}, {}, kLong);  // 8 MiB of doubles
    REQUIRE(r);
    REQUIRE(r->is_buffer());
    const Buffer& b = r->as_buffer();
    CHECK(b.shape() == std::vector<std::int64_t>{1 << 20});
    CHECK(b.items<double>()[12345] == 12345.0);
    CHECK(worker_gk_buffers(rt) == 0);
    CHECK(host_gk_buffers() == host_before + 2);
  }
  CHECK(host_gk_buffers() == host_before);
}

TEST_CASE("numpy in a worker writes in place into the host's shared buffer", "[buffer][process][shm]") {
  Runtime rt(test::process_config("workers = 1\n"));
  std::size_t n = 1 << 16;  // 512 KiB of doubles
  Buffer b = Buffer::allocate(n * sizeof(double)).as("d", {static_cast<std::int64_t>(n)});
  for (std::size_t i = 0; i < n; ++i)
    b.items<double>()[i] = static_cast<double>(i);
  REQUIRE(rt.call("gk_bufmod:double_in_place", {b}, {}, kLong));
  for (std::size_t i = 0; i < n; ++i)
    REQUIRE(b.items<double>()[i] == 2.0 * static_cast<double>(i));
  // Returned as it came: the same memory, mapped again.
  auto back = rt.call("gk_bufmod:as_numpy_and_back", {b}, {}, kLong);
  REQUIRE(back);
  b.items<double>()[7] = -1;
  CHECK(back->as_buffer().items<double>()[7] == -1);
}

TEST_CASE("a worker killed while it holds a shared buffer leaves no shared memory behind", "[buffer][process][shm]") {
  Runtime rt(test::process_config("workers = 1\n"));
  int host_before = host_gk_buffers();
  {
    auto pid = rt.eval("__import__('os').getpid()", kLong);
    REQUIRE(pid);
    Buffer b = Buffer::allocate(16u << 20);
    std::memset(b.data(), 7, b.size());
    auto f = rt.call_async("gk_bufmod:hold", {b, 30}, {}, kLong);
    // Killed while Python holds the mapped buffer.
    std::this_thread::sleep_for(300ms);
    REQUIRE(::kill(static_cast<pid_t>(pid->as_int()), SIGKILL) == 0);
    auto r = f.get();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::worker_crashed);
    CHECK(host_gk_buffers() == host_before + 2);  // only the caller's own
    CHECK(worker_gk_buffers(rt) == 0);            // its replacement holds none
  }
  CHECK(host_gk_buffers() == host_before);
}

TEST_CASE("small buffers travel inside the frame", "[buffer][process]") {
  Runtime rt(test::process_config("workers = 1\n"));
  Buffer b = Buffer::copy_of("abcdefgh", 8);
  auto d = rt.call("gk_bufmod:describe", {b}, {}, kLong);
  REQUIRE(d);
  CHECK(d->get<Bytes>("first")->data == "abcd");
  CHECK(d->get<std::int64_t>("nbytes").value() == 8);
  auto back = rt.call("gk_bufmod:identity", {b}, {}, kLong);
  REQUIRE(back);
  CHECK(back->as_buffer() == b);
}

TEST_CASE("a structured numpy array crosses from a worker with its format", "[buffer][process]") {
  Runtime rt(test::process_config("workers = 1\n"));
  for (int n : {4, 1 << 14}) {  // inside the frame, and through shared memory
    auto r = rt.call("gk_bufmod:structured", {n}, {}, kLong);
    REQUIRE(r);
    const Buffer& b = r->as_buffer();
    CHECK(b.itemsize() == 12);
    CHECK(b.count() == n);
    CHECK(b.format().find("T{") != std::string::npos);
    // The worker is still there (a reply it could not send would have cost it).
    CHECK(rt.eval("1", kLong)->as_int() == 1);
  }
}
