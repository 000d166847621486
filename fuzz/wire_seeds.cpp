// Writes the wire fuzz target's seed corpus: one file per real message,
// encoded by the encoder, as a frame body (without the length prefix that
// wire::decode does not read), and one stream of whole frames, length
// prefixes included, as a FrameReader reads them. Usage: gk_wire_seeds DIR
#include "actors/wire.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>

using namespace gk;

namespace {

bool write_file(const std::string& path, const char* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(data, static_cast<std::streamsize>(size));
  return static_cast<bool>(out);
}

bool write_seed(const std::string& dir, const std::string& name, const std::vector<char>& frame) {
  return write_file(dir + "/" + name, frame.data() + 4, frame.size() - 4);
}

Value nested() {
  return Value::dict({{"null", Value()},
                      {"bool", true},
                      {"int", std::numeric_limits<std::int64_t>::min()},
                      {"double", -2.5},
                      {"nan", std::numeric_limits<double>::quiet_NaN()},
                      {"string", "h\xc3\xa9llo"},
                      {"bytes", Bytes{std::string("\0\1\xff", 3)}},
                      {"list", Value::list({1, Value::list({Value::dict({{"deep", "x"}})}), Value()})},
                      {"empty", Value::dict({})}});
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const Ref ref(std::make_shared<const detail::RefState>(12, 3, "mymod.Box", nullptr));
  const auto five_seconds = Deadline::after(std::chrono::seconds(5));

  Config config;
  config.python.path = {"/srv/app", "/srv/lib"};
  config.runtime.limits.address_space = 1u << 30;
  config.capabilities.configured = true;
  config.capabilities.deny_modules = {"socket"};
  wire::WorkerSetup setup = wire::make_setup(config, 7);
  setup.preload = {"json", "mymod"};

  CallRequest call{"mymod:f", {nested(), Value(ref)}, {{"k", Value("v")}}};
  call.want_ref = true;
  call.self = ref;
  call.deadline = five_seconds;
  BatchRequest batch;
  batch.calls = {call, CallRequest{"json:dumps", {Value::list({1, 2})}}};
  batch.deadline = Deadline::never();
  batch.call_timeout = std::chrono::milliseconds(250);

  Error error(ErrorCode::python_exception, "bad record");
  error.type = "mymod.BadRecord";
  error.traceback = "Traceback (most recent call last):\n  File \"mymod.py\", line 3\nmymod.BadRecord\n";
  error.where = "call mymod:f";
  Error crash(ErrorCode::worker_crashed, "worker died");
  crash.signal = 11;
  BatchReply batch_reply;
  batch_reply.results = {Expected<Value>(Value(1)), Expected<Value>(error)};

  bool ok = true;
  ok &= write_seed(dir, "hello", wire::encode_hello(setup));
  ok &= write_seed(dir, "ready", wire::encode_ready(Error(), 4242));
  ok &= write_seed(dir, "ready_failed", wire::encode_ready(crash, 0));
  ok &= write_seed(dir, "goodbye", wire::encode_goodbye());
  ok &= write_seed(dir, "stuck", wire::encode_stuck(42));
  LogEvent slow;
  slow.level = LogLevel::warn;
  slow.name = "slow_call";
  slow.message = "call mymod:f still running after 1.0 s";
  // Fields set directly: the seeds link no logger (config/log.cpp).
  slow.fields = {{"target", std::string("mymod:f")}, {"elapsed_ms", std::int64_t{1000}},
                 {"ratio", 1.5}, {"native", false}};
  ok &= write_seed(dir, "event", wire::encode_event(slow));
  ok &= write_seed(dir, "host_call", wire::encode_host_call(7, "resize", {Value(64), Value("x")},
                                                           Deadline::after(std::chrono::seconds(1))));
  ok &= write_seed(dir, "host_reply", wire::encode_host_reply(7, Value::list({1, 2})));
  ok &= write_seed(dir, "host_reply_error", wire::encode_host_reply(7, Error(ErrorCode::bad_request, "no")));
  ok &= write_seed(dir, "host_cancel", wire::encode_host_cancel(7));
  ok &= write_seed(dir, "nested_request", wire::encode_nested_request(8, call));
  ok &= write_seed(dir, "import", wire::encode_request(1, ImportRequest{"json", Deadline::never()}));
  ok &= write_seed(dir, "call", wire::encode_request(2, call));
  ok &= write_seed(dir, "eval", wire::encode_request(3, EvalRequest{"1 + 1", true, Deadline()}));
  ok &= write_seed(dir, "exec", wire::encode_request(4, ExecRequest{"x = 1", five_seconds}));
  ok &= write_seed(dir, "getattr", wire::encode_request(5, GetattrRequest{"mymod:Box", ref, false, five_seconds}));
  ok &= write_seed(dir, "release", wire::encode_request(6, ReleaseRequest{12, 3}));
  ok &= write_seed(dir, "batch", wire::encode_request(7, batch));
  ok &= write_seed(dir, "reply_value", wire::encode_reply(2, Expected<Value>(nested()), 1));
  ok &= write_seed(dir, "reply_error", wire::encode_reply(3, Expected<Value>(error)));
  ok &= write_seed(dir, "reply_ref", wire::encode_reply(4, Expected<Value>(Value(ref))));
  ok &= write_seed(dir, "reply_batch", wire::encode_reply(7, batch_reply));
  std::vector<char> stream;
  for (const auto& frame : {wire::encode_hello(setup), wire::encode_request(2, call),
                            wire::encode_reply(2, Expected<Value>(Value(1))), wire::encode_goodbye()})
    stream.insert(stream.end(), frame.begin(), frame.end());
  ok &= write_file(dir + "/stream", stream.data(), stream.size());
  if (!ok) {
    std::fprintf(stderr, "gk_wire_seeds: cannot write to %s\n", dir.c_str());
    return 1;
  }
  return 0;
}
