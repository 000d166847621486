// Buffers: host memory seen by Python as a memoryview (and numpy) without a
// copy, buffer-protocol results seen by the host without a copy, kept alive
// by a handle released on the interpreter's thread. Thread isolation here;
// process isolation (shared memory) in tests/runtime/shm_test.cpp.
#include "../support.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

using namespace gk;
using namespace std::chrono_literals;

namespace {

const RequestOptions kLong = RequestOptions::with_deadline(Deadline::after(std::chrono::seconds(30)));

Buffer doubles(std::size_t n) {
  Buffer b = Buffer::allocate(n * sizeof(double)).as("d", {static_cast<std::int64_t>(n)});
  for (std::size_t i = 0; i < n; ++i)
    b.items<double>()[i] = static_cast<double>(i);
  return b;
}

} // namespace

TEST_CASE("a Buffer arrives in Python as a memoryview over the host's memory", "[buffer]") {
  Runtime rt(test::test_config());
  Buffer b = Buffer::allocate(1 << 20);
  std::memset(b.data(), 1, b.size());
  std::memcpy(b.data(), "abcd", 4);
  auto r = rt.call("gk_bufmod:describe", {b}, {}, kLong);
  REQUIRE(r);
  CHECK(r->get<std::string>("type").value() == "memoryview");
  CHECK(r->get<std::string>("format").value() == "B");
  CHECK(r->get<std::int64_t>("nbytes").value() == (1 << 20));
  CHECK_FALSE(r->get<bool>("readonly").value());
  CHECK(r->get<Bytes>("first")->data == "abcd");
  CHECK(rt.call("gk_bufmod:total", {b}, {}, kLong)->as_int() == (1 << 20) - 4 + ('a' + 'b' + 'c' + 'd'));
  // With a layout: numpy sees doubles.
  auto d = rt.call("gk_bufmod:describe", {doubles(8)}, {}, kLong);
  CHECK(d->get<std::string>("format").value() == "d");
  CHECK(d->get<List>("shape").value() == List{8});
}

TEST_CASE("numpy writes in place into the host's memory", "[buffer]") {
  Runtime rt(test::test_config());
  Buffer b = doubles(1000);
  auto address = rt.call("gk_bufmod:double_in_place", {b}, {}, kLong);
  REQUIRE(address);
  CHECK(static_cast<std::uintptr_t>(address->as_int()) == reinterpret_cast<std::uintptr_t>(b.data()));
  for (std::size_t i = 0; i < 1000; ++i)
    REQUIRE(b.items<double>()[i] == 2.0 * static_cast<double>(i));
}

TEST_CASE("a read-only Buffer stays read-only in Python", "[buffer]") {
  Runtime rt(test::test_config());
  static const char text[] = "constant";
  Buffer b = Buffer::wrap(const_cast<char*>(text), 8, nullptr, true);
  auto r = rt.call("gk_bufmod:try_write", {b}, {}, kLong);
  REQUIRE(r);
  CHECK(r->as_string().rfind("refused", 0) == 0);
  CHECK(std::string(text) == "constant");
}

TEST_CASE("a numpy result is a Buffer over the array's own memory until released", "[buffer]") {
  Runtime rt(test::test_config());
  auto before = rt.stats().live_refs;
  {
    auto r = rt.call("gk_bufmod:kept", {}, {}, kLong);
    REQUIRE(r);
    REQUIRE(r->is_buffer());
    Buffer b = r->as_buffer();
    CHECK(b.itemsize() == 8);
    CHECK(b.shape() == std::vector<std::int64_t>{10});
    CHECK(b.format().find('d') != std::string::npos);
    CHECK(b.items<double>()[3] == 3.0);
    // No copy: a write in Python shows through the host's Buffer.
    REQUIRE(rt.call("gk_bufmod:poke", {42.5}, {}, kLong));
    CHECK(b.items<double>()[0] == 42.5);
    CHECK(rt.stats().live_refs == before + 1);
  }
  // The last copy went: the object is released on the interpreter's thread.
  auto until = std::chrono::steady_clock::now() + 5s;
  while (rt.stats().live_refs != before && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  CHECK(rt.stats().live_refs == before);
}

TEST_CASE("buffer results keep their layout: strided and two-dimensional arrays", "[buffer]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_bufmod:every_other", {10}, {}, kLong);
  REQUIRE(r);
  Buffer b = r->as_buffer();
  CHECK_FALSE(b.contiguous());
  CHECK(b.count() == 5);
  Buffer c = b.copy();
  CHECK(c.contiguous());
  for (int i = 0; i < 5; ++i)
    CHECK(c.items<std::int32_t>()[i] == 2 * i);
  CHECK(b == c);

  auto m = rt.call("gk_bufmod:matrix", {}, {}, kLong);
  REQUIRE(m);
  CHECK(m->as_buffer().shape() == std::vector<std::int64_t>{2, 3});
  CHECK(m->as_buffer().items<std::int64_t>()[5] == 5);
  // And back: Python sees the same shape.
  auto d = rt.call("gk_bufmod:describe", {*m}, {}, kLong);
  CHECK(d->get<List>("shape").value() == List{2, 3});
}

TEST_CASE("a Buffer through numpy and back is the same memory", "[buffer]") {
  Runtime rt(test::test_config());
  Buffer b = doubles(1 << 20);  // 8 MiB
  auto r = rt.call("gk_bufmod:as_numpy_and_back", {b}, {}, kLong);
  REQUIRE(r);
  REQUIRE(r->is_buffer());
  CHECK(r->as_buffer().data() == b.data());
  CHECK(r->as_buffer().shape() == b.shape());
  auto i = rt.call("gk_bufmod:identity", {b}, {}, kLong);
  REQUIRE(i);
  CHECK(i->as_buffer().data() == b.data());
}

TEST_CASE("bytes and bytearray results stay Bytes, and Buffer layouts are checked", "[buffer]") {
  Runtime rt(test::test_config());
  CHECK(rt.eval("b'xy'")->is_bytes());
  CHECK(rt.eval("bytearray(b'xy')")->is_bytes());
  CHECK(rt.eval("memoryview(b'xy')")->is_buffer());
  CHECK(rt.eval("memoryview(b'xy')")->as_buffer().readonly());
  CHECK_THROWS_AS(Buffer::allocate(10).as("d", {2}), std::invalid_argument);
  CHECK_THROWS_AS(Buffer::allocate(16).as("zz", {2}), std::invalid_argument);
  CHECK(Buffer::allocate(16).as("<d", {2}).itemsize() == 8);
  CHECK(Value(doubles(3)).repr() == "<buffer d (3,), 24 bytes>");
  CHECK(Value(doubles(3)) == Value(doubles(3)));
}

TEST_CASE("a pipeline carries buffers between stages without copies", "[buffer][pipeline]") {
  Runtime rt(test::test_config());
  std::vector<Buffer> inputs;
  for (int i = 0; i < 20; ++i)
    inputs.push_back(doubles(4096));
  std::mutex m;
  std::map<std::uint64_t, Value> outputs;
  const void* seen_by_cpp[20] = {};
  Pipeline p(rt, {Stage::python("scale", "gk_bufmod:scale"),
                  Stage::cpp("look",
                             [&](const Value& v) -> Expected<Value> {
                               // The C++ stage sees the same memory numpy wrote.
                               std::lock_guard<std::mutex> g(m);
                               seen_by_cpp[static_cast<std::size_t>(v.as_buffer().items<double>()[1] / 2)] =
                                   v.as_buffer().data();
                               return v;
                             }),
                  Stage::python("address", "gk_bufmod:address")});
  p.on_output([&](Output&& o) {
    std::lock_guard<std::mutex> g(m);
    outputs[o.id] = o.value;
  });
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    // Each input's item 1 says which input it is.
    inputs[i].items<double>()[1] = static_cast<double>(i);
    REQUIRE(p.push(i, inputs[i]));
  }
  p.close();
  auto report = p.wait();
  CHECK(report.ok == 20);
  REQUIRE(outputs.size() == 20);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    // Scaled in place, seen in place by the C++ stage and by the last stage.
    CHECK(inputs[i].items<double>()[2] == 4.0);
    CHECK(seen_by_cpp[i] == inputs[i].data());
    CHECK(static_cast<std::uintptr_t>(outputs[i].as_int()) == reinterpret_cast<std::uintptr_t>(inputs[i].data()));
  }
}

TEST_CASE("numpy scalars come back as numbers, not buffers", "[buffer]") {
  Runtime rt(test::test_config());
  auto r = rt.call("gk_bufmod:scalars", {}, {}, kLong);
  REQUIRE(r);
  CHECK(r->as_list().at(0) == Value(5));
  CHECK(r->as_list().at(1) == Value(0.5));
  CHECK(r->as_list().at(2) == Value(true));
  CHECK(r->as_list().at(3) == Value(200));
}
