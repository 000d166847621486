// Fuzzes the wire codec between a host and its worker processes: any bytes
// are a frame body that decodes or is refused with an error; a decoded frame
// encodes again into a frame that decodes. The same bytes also arrive as a
// stream through a FrameReader, which cuts them into frames.
#include "actors/wire.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <unistd.h>

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "wire_fuzz: %s\n", what);
  std::abort();
}

std::vector<char> encode(const gk::wire::Frame& frame) {
  using gk::wire::FrameKind;
  switch (frame.kind) {
    case FrameKind::hello: return gk::wire::encode_hello(*frame.setup);
    case FrameKind::ready: return gk::wire::encode_ready(frame.error, frame.pid);
    case FrameKind::request: return gk::wire::encode_request(frame.id, *frame.request);
    case FrameKind::nested_request: return gk::wire::encode_nested_request(frame.id, *frame.request);
    case FrameKind::reply: return gk::wire::encode_reply(frame.id, *frame.reply, frame.denials);
    case FrameKind::goodbye: return gk::wire::encode_goodbye();
    case FrameKind::stuck: return gk::wire::encode_stuck(frame.id);
    case FrameKind::event: return gk::wire::encode_event(*frame.event);
    case FrameKind::host_call: return gk::wire::encode_host_call(frame.id, frame.name, frame.args, frame.deadline);
    case FrameKind::host_reply: return gk::wire::encode_host_reply(frame.id, *frame.result);
    case FrameKind::host_cancel: return gk::wire::encode_host_cancel(frame.id);
  }
  broken("decode returned an unknown frame kind");
}

void decode_and_reencode(const char* body, std::size_t size) {
  auto frame = gk::wire::decode(body, size);
  if (!frame) {
    if (frame.error().code != gk::ErrorCode::bad_request)
      broken("a refused frame is not a bad_request");
    return;
  }
  std::vector<char> again = encode(*frame);
  if (again.size() < 4)
    broken("an encoded frame has no length prefix");
  auto second = gk::wire::decode(again.data() + 4, again.size() - 4);
  if (!second)
    broken("a re-encoded frame does not decode");
  if (second->kind != frame->kind || second->id != frame->id)
    broken("a re-encoded frame changed its kind or id");
}

// A pipe the stream is written through (one per process; drained each run).
int pipe_ends[2] = {-1, -1};

void read_as_stream(const std::uint8_t* data, std::size_t size) {
  if (pipe_ends[0] < 0) {
    if (::pipe(pipe_ends) != 0)
      broken("cannot make a pipe");
    ::fcntl(pipe_ends[0], F_SETFL, O_NONBLOCK);
  }
  // A pipe holds 64 KiB: longer inputs are only decoded whole.
  if (size == 0 || size > 60000)
    return;
  if (::write(pipe_ends[1], data, size) != static_cast<ssize_t>(size))
    broken("short write to the pipe");
  gk::wire::FrameReader reader;
  if (!reader.fill(pipe_ends[0]))
    broken("FrameReader::fill failed on a live pipe");
  while (auto body = reader.next())
    decode_and_reencode(body->data(), body->size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  decode_and_reencode(reinterpret_cast<const char*>(data), size);
  read_as_stream(data, size);
  return 0;
}
