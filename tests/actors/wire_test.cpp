// The wire codec round-trips every request and reply type.
#include "actors/wire.hpp"

#include <caf/binary_serializer.hpp>
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace gk;

namespace {

Value nested_value() {
  return Value::dict({{"null", Value()},
                      {"bool", true},
                      {"int", INT64_MIN},
                      {"double", -2.5},
                      {"string", "héllo"},
                      {"bytes", Bytes{std::string("\0\1\xff", 3)}},
                      {"list", Value::list({1, Value::list({Value::dict({{"deep", "x"}})}), Value()})},
                      {"empty", Value::dict({})}});
}

Error rich_error() {
  Error e(ErrorCode::python_exception, "bad record");
  e.type = "mymod.BadRecord";
  e.traceback = "Traceback (most recent call last):\n  File \"mymod.py\", line 3, in f\nmymod.BadRecord: bad record\n";
  e.where = "call mymod:f";
  return e;
}

wire::Frame round_trip(const std::vector<char>& bytes) {
  REQUIRE(bytes.size() >= 4);
  auto decoded = wire::decode(bytes.data() + 4, bytes.size() - 4);
  REQUIRE(decoded.has_value());
  return *decoded;
}

template <class Req>
Req round_trip_request(const Req& r) {
  auto f = round_trip(wire::encode_request(7, AnyRequest(r)));
  CHECK(f.kind == wire::FrameKind::request);
  CHECK(f.id == 7);
  REQUIRE(f.request);
  REQUIRE(std::holds_alternative<Req>(*f.request));
  return std::get<Req>(*f.request);
}

} // namespace

TEST_CASE("every request type survives the wire", "[wire]") {
  auto ref = Ref(std::make_shared<const detail::RefState>(12, 3, "mymod.Box", nullptr));
  CallRequest call{"mymod:f", {nested_value(), Value(ref)}, {{"k", nested_value()}}};
  call.want_ref = true;
  call.self = ref;
  call.deadline = Deadline::after(std::chrono::seconds(5));
  auto c = round_trip_request(call);
  CHECK(c.target == "mymod:f");
  CHECK(c.args[0] == nested_value());
  CHECK(c.args[1].as_ref().id() == 12);
  CHECK(c.args[1].as_ref().epoch() == 3);
  CHECK(c.args[1].as_ref().type_name() == "mymod.Box");
  CHECK(c.kwargs[0].first == "k");
  CHECK(c.kwargs[0].second == nested_value());
  CHECK(c.want_ref);
  CHECK(c.self == ref);
  // The deadline travels as a budget: a little less is left on arrival.
  REQUIRE(c.deadline.is_finite());
  CHECK(c.deadline.remaining() <= std::chrono::seconds(5));
  CHECK(c.deadline.remaining() > std::chrono::seconds(4));

  auto never = round_trip_request(ImportRequest{"json", Deadline::never()});
  CHECK(never.module == "json");
  CHECK(never.deadline.is_never());
  auto unset = round_trip_request(EvalRequest{"1 + 1", true, Deadline()});
  CHECK(unset.expression == "1 + 1");
  CHECK(unset.want_ref);
  CHECK_FALSE(unset.deadline.is_set());
  CHECK(round_trip_request(ExecRequest{"x = 1", Deadline::never()}).code == "x = 1");
  auto ga = round_trip_request(GetattrRequest{"value", ref, false, Deadline::never()});
  CHECK(ga.target == "value");
  CHECK(ga.object == ref);
  auto rel = round_trip_request(ReleaseRequest{5, 9});
  CHECK(rel.id == 5);
  CHECK(rel.epoch == 9);
  BatchRequest batch{{call, CallRequest{"a:b", {1}}}, Deadline::after(std::chrono::seconds(1))};
  auto b = round_trip_request(batch);
  REQUIRE(b.calls.size() == 2);
  CHECK(b.calls[1].target == "a:b");
  CHECK(b.calls[0].args[0] == nested_value());
}

TEST_CASE("replies, errors with tracebacks and batch results survive the wire", "[wire]") {
  auto ok = round_trip(wire::encode_reply(1, AnyReply(Expected<Value>(nested_value()))));
  REQUIRE(ok.reply);
  CHECK(std::get<Expected<Value>>(*ok.reply).value() == nested_value());

  auto failed = round_trip(wire::encode_reply(2, AnyReply(Expected<Value>(rich_error()))));
  REQUIRE(failed.reply);
  CHECK(failed.id == 2);
  CHECK(std::get<Expected<Value>>(*failed.reply).error() == rich_error());

  Error crash(ErrorCode::worker_crashed, "killed");
  crash.signal = 11;
  Error late = Error::deadline(DeadlinePhase::hard, "late");
  BatchReply br{{Expected<Value>(Value(1)), Expected<Value>(crash), Expected<Value>(late)}};
  auto batch = round_trip(wire::encode_reply(3, AnyReply(br)));
  REQUIRE(batch.reply);
  auto& results = std::get<BatchReply>(*batch.reply).results;
  REQUIRE(results.size() == 3);
  CHECK(results[0].value() == Value(1));
  CHECK(results[1].error() == crash);
  CHECK(results[2].error().phase == DeadlinePhase::hard);

  double nan = std::nan("");
  auto special = round_trip(wire::encode_reply(4, AnyReply(Expected<Value>(Value::list({nan, 1e308})))));
  auto& l = std::get<Expected<Value>>(*special.reply).value().as_list();
  CHECK(std::isnan(l[0].as_double()));
  CHECK(l[1].as_double() == 1e308);
}

TEST_CASE("the worker setup, ready and goodbye frames survive the wire", "[wire]") {
  Config cfg;
  cfg.python.path = {"/a", "/b"};
  cfg.runtime.interrupt_signal.reset();
  cfg.runtime.limits.address_space = 1 << 30;
  cfg.runtime.limits.core_dumps = true;
  cfg.capabilities.configured = true;
  cfg.capabilities.deny_modules = {"ctypes"};
  cfg.capabilities.network = NetworkPolicy::loopback;
  auto f = round_trip(wire::encode_hello(wire::make_setup(cfg, 42)));
  REQUIRE(f.setup);
  auto back = wire::config_from_setup(*f.setup);
  CHECK(back.python.path == cfg.python.path);
  CHECK_FALSE(back.runtime.interrupt_signal.has_value());
  CHECK(*back.runtime.limits.address_space == (1u << 30));
  CHECK_FALSE(back.runtime.limits.cpu_seconds.has_value());
  CHECK(back.runtime.limits.core_dumps);
  CHECK(back.capabilities.deny_modules == std::vector<std::string>{"ctypes"});
  CHECK(back.capabilities.network == NetworkPolicy::loopback);
  CHECK(f.setup->epoch == 42);

  auto ready = round_trip(wire::encode_ready(rich_error(), 1234));
  CHECK(ready.kind == wire::FrameKind::ready);
  CHECK(ready.pid == 1234);
  CHECK(ready.error == rich_error());
  CHECK(round_trip(wire::encode_goodbye()).kind == wire::FrameKind::goodbye);
}

TEST_CASE("malformed frames are errors, not crashes", "[wire]") {
  auto bytes = wire::encode_request(1, AnyRequest(CallRequest{"m:f", {nested_value()}}));
  for (std::size_t cut = 5; cut < bytes.size(); cut += 7) {
    auto d = wire::decode(bytes.data() + 4, cut - 4);
    CHECK_FALSE(d.has_value());
  }
  char junk[] = {99, 1, 2, 3};
  auto bad = wire::decode(junk, sizeof junk);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("unknown frame kind") != std::string::npos);
}

TEST_CASE("a request whose budget reaches past the clock's range arrives with no deadline", "[wire][deadline]") {
  // The budget of a request frame, written by hand: adding it to the clock
  // overflowed, and the deadline wrapped into the past (found by fuzzing).
  std::vector<char> body;
  caf::binary_serializer sink(nullptr, body);
  auto kind = static_cast<std::uint8_t>(wire::FrameKind::request);
  std::uint64_t id = 9;
  std::uint8_t index = 0;  // ImportRequest
  std::string module = "json";
  std::int64_t budget = std::numeric_limits<std::int64_t>::max() - 1000;
  REQUIRE_FALSE(sink(kind, id, index, module, budget));
  auto f = wire::decode(body.data(), body.size());
  REQUIRE(f.has_value());
  REQUIRE(f->request);
  auto& import = std::get<ImportRequest>(*f->request);
  CHECK(import.deadline.is_never());
  CHECK_FALSE(import.deadline.expired());

  CHECK(Deadline::after(Deadline::duration::max()).is_never());
  CHECK(Deadline::after(std::chrono::hours(1)).is_finite());
}

TEST_CASE("a frame nesting lists without end is refused, not a stack overflow", "[wire]") {
  // A reply whose value is a list in a list in a list ..., 200,000 deep:
  // loading it recursed until the stack ran out (found by fuzzing).
  std::vector<char> body;
  caf::binary_serializer sink(nullptr, body);
  auto kind = static_cast<std::uint8_t>(wire::FrameKind::reply);
  std::uint64_t id = 1, denials = 0;
  std::uint8_t index = 0;  // Expected<Value>
  bool ok = true;
  REQUIRE_FALSE(sink(kind, id, denials, index, ok));
  const auto list_tag = static_cast<char>(Value::Kind::list);
  for (int i = 0; i < 200000; ++i) {
    body.push_back(list_tag);
    body.push_back(1);  // one element
  }
  body.push_back(static_cast<char>(Value::Kind::null));
  auto deep = wire::decode(body.data(), body.size());
  REQUIRE_FALSE(deep.has_value());
  CHECK(deep.error().message.find("malformed frame") != std::string::npos);

  // A value too deep to convert (past kMaxDepth) still arrives, to fail its
  // conversion with an error naming where.
  Value nested;
  for (int i = 0; i < kMaxDepth + 5; ++i)
    nested = Value::list({nested});
  auto f = round_trip(wire::encode_reply(2, AnyReply(Expected<Value>(nested))));
  REQUIRE(f.reply);
  CHECK(std::get<Expected<Value>>(*f.reply).value() == nested);
}

TEST_CASE("a worker's log event crosses with every field kind; a corrupt field count is refused cheaply", "[wire]") {
  LogEvent event;
  event.level = LogLevel::warn;
  event.name = "slow_call";
  event.message = "call m:f still running after 1.0 s";
  event.with("target", "m:f").with("elapsed_ms", std::int64_t{1000}).with("ratio", 1.5).with("native", true);
  auto f = round_trip(wire::encode_event(event));
  REQUIRE(f.kind == wire::FrameKind::event);
  REQUIRE(f.event);
  CHECK(f.event->name == "slow_call");
  CHECK(f.event->level == LogLevel::warn);
  CHECK(f.event->time == event.time);
  CHECK(f.event->text("target") == "m:f");
  CHECK(f.event->text("elapsed_ms") == "1000");
  REQUIRE(f.event->field("ratio"));
  CHECK(std::get<double>(f.event->field("ratio")->value) == 1.5);
  REQUIRE(f.event->field("native"));
  CHECK(std::get<bool>(f.event->field("native")->value));

  // An event whose field-kind count says four billion in a frame of a few
  // bytes: it was allocated (and zeroed) before the count was checked
  // against the frame (found by fuzzing). Refused, with no memory taken.
  std::vector<char> body;
  caf::binary_serializer sink(nullptr, body);
  auto kind = static_cast<std::uint8_t>(wire::FrameKind::event);
  std::int64_t time = 0;
  std::uint8_t level = 2;
  std::string name = "x", message = "y";
  std::vector<std::string> keys{"k"};
  REQUIRE_FALSE(sink(kind, time, level, name, message, keys));
  std::size_t count = 0xFFFFFFF0;
  REQUIRE_FALSE(sink.begin_sequence(count));
  body.push_back(0);
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  auto bad = wire::decode(body.data(), body.size());
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.find("malformed frame of kind 7") != std::string::npos);
  CHECK(after.ru_maxrss - before.ru_maxrss < 256 * 1024);  // KiB
}

TEST_CASE("frames cross a socketpair whole, large ones included", "[wire]") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  std::string big(1 << 20, 'x');
  auto frame = wire::encode_reply(9, AnyReply(Expected<Value>(Value(Bytes{big}))));
  std::thread writer([&] { CHECK(wire::write_all(sv[0], frame.data(), frame.size())); });
  auto body = wire::read_frame(sv[1]);
  writer.join();
  REQUIRE(body);
  auto f = wire::decode(body->data(), body->size());
  REQUIRE(f.has_value());
  CHECK(std::get<Expected<Value>>(*f->reply).value().as_bytes().data == big);
  close(sv[0]);
  CHECK_FALSE(wire::read_frame(sv[1]).has_value());  // EOF
  close(sv[1]);
}

TEST_CASE("the host's frame reader decodes many, split and large frames in place", "[wire]") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  // 200 small replies, one of 3 MiB (the buffer grows), then 200 small ones,
  // written in odd-sized pieces so that frames straddle reads.
  std::vector<char> stream;
  std::string big(3 << 20, 'y');
  for (std::uint64_t i = 0; i < 401; ++i) {
    Value v = i == 200 ? Value(Bytes{big}) : Value(static_cast<std::int64_t>(i));
    auto frame = wire::encode_reply(i, AnyReply(Expected<Value>(v)));
    stream.insert(stream.end(), frame.begin(), frame.end());
  }
  std::thread writer([&] {
    std::size_t at = 0, piece = 1;
    while (at < stream.size()) {
      std::size_t n = std::min(piece, stream.size() - at);
      CHECK(wire::write_all(sv[0], stream.data() + at, n));
      at += n;
      piece = piece * 7 % 100003 + 1;
    }
    close(sv[0]);
  });
  wire::FrameReader reader;
  std::uint64_t expect = 0;
  bool alive = true;
  while (alive) {
    alive = reader.fill(sv[1]);
    while (auto body = reader.next()) {
      auto f = wire::decode(body->data(), body->size());
      REQUIRE(f.has_value());
      REQUIRE(f->id == expect);
      auto& v = std::get<Expected<Value>>(*f->reply).value();
      if (expect == 200)
        CHECK(v.as_bytes().data == big);
      else
        CHECK(v.as_int() == static_cast<std::int64_t>(expect));
      ++expect;
    }
  }
  writer.join();
  CHECK(expect == 401);
  CHECK_FALSE(reader.corrupt());
  close(sv[1]);
}
