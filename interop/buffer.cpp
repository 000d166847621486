#include "gilkeeper/interop/buffer.hpp"

#include <cstring>
#include <stdexcept>
#include <unistd.h>

namespace gk {

namespace {

// The size of one item of a struct-module format ('@' native, '<', '>', '='
// and '!' prefixes taken), or 0 when it is not a single-item code.
std::int64_t item_size(const std::string& format) {
  std::string f = format;
  if (!f.empty() && std::strchr("@=<>!", f[0]))
    f.erase(0, 1);
  if (f.size() != 1)
    return 0;
  switch (f[0]) {
    case 'b': case 'B': case 'c': case '?': return 1;
    case 'h': case 'H': case 'e': return 2;
    case 'i': case 'I': case 'f': return 4;
    case 'l': case 'L': return static_cast<std::int64_t>(sizeof(long));
    case 'q': case 'Q': case 'd': case 'n': case 'N': return 8;
    default: return 0;
  }
}

std::shared_ptr<detail::BufferState> flat(void* data, std::size_t size, std::shared_ptr<const void> keep, bool readonly) {
  auto st = std::make_shared<detail::BufferState>();
  st->data = data;
  st->size = size;
  st->readonly = readonly;
  st->shape = {static_cast<std::int64_t>(size)};
  st->strides = {1};
  st->keep = std::move(keep);
  return st;
}

} // namespace

Buffer Buffer::allocate(std::size_t bytes) {
  std::shared_ptr<char[]> memory(new char[bytes == 0 ? 1 : bytes]);
  void* data = memory.get();
  return Buffer(flat(data, bytes, std::shared_ptr<const void>(memory, memory.get()), false));
}

Buffer Buffer::copy_of(const void* data, std::size_t size) {
  Buffer b = allocate(size);
  if (size > 0)
    std::memcpy(b.data(), data, size);
  return b;
}

Buffer Buffer::wrap(void* data, std::size_t size, std::shared_ptr<const void> keep_alive, bool readonly) {
  return Buffer(flat(data, size, std::move(keep_alive), readonly));
}

Buffer Buffer::as(const std::string& format, std::vector<std::int64_t> shape) const {
  std::int64_t itemsize = item_size(format);
  if (itemsize == 0)
    throw std::invalid_argument("gk::Buffer::as: '" + format + "' is not a single-item struct format");
  std::int64_t n = 1;
  for (auto d : shape) {
    if (d < 0)
      throw std::invalid_argument("gk::Buffer::as: a negative dimension");
    n *= d;
  }
  if (!contiguous() || static_cast<std::size_t>(n * itemsize) != size())
    throw std::invalid_argument("gk::Buffer::as: " + std::to_string(n * itemsize) + " bytes of items for a "
                                + (contiguous() ? "" : "non-contiguous ") + "buffer of " + std::to_string(size()));
  auto st = std::make_shared<detail::BufferState>();
  st->data = data();
  st->size = size();
  st->readonly = readonly();
  st->format = format;
  st->itemsize = itemsize;
  st->shape = std::move(shape);
  st->strides.assign(st->shape.size(), itemsize);
  for (std::size_t i = st->shape.size(); i-- > 1;)
    st->strides[i - 1] = st->strides[i] * st->shape[i];
  st->memfd = state_->memfd;
  st->keep = state_;  // the original state keeps the memory (and its memfd)
  return Buffer(std::move(st));
}

namespace {
const std::string kEmptyFormat = "B";
const std::vector<std::int64_t> kNoDims;
const std::vector<std::int64_t> kZeroShape = {0};
const std::vector<std::int64_t> kOneStride = {1};
} // namespace

void* Buffer::data() const noexcept { return state_ ? state_->data : nullptr; }
std::size_t Buffer::size() const noexcept { return state_ ? state_->size : 0; }
bool Buffer::readonly() const noexcept { return state_ ? state_->readonly : false; }
const std::string& Buffer::format() const noexcept { return state_ ? state_->format : kEmptyFormat; }
std::int64_t Buffer::itemsize() const noexcept { return state_ ? state_->itemsize : 1; }
const std::vector<std::int64_t>& Buffer::shape() const noexcept { return state_ ? state_->shape : kZeroShape; }
const std::vector<std::int64_t>& Buffer::strides() const noexcept { return state_ ? state_->strides : kOneStride; }

std::int64_t Buffer::count() const noexcept {
  std::int64_t n = 1;
  for (auto d : shape())
    n *= d;
  return n;
}

bool Buffer::contiguous() const noexcept {
  std::int64_t step = itemsize();
  auto& sh = shape();
  auto& st = strides();
  for (std::size_t i = sh.size(); i-- > 0;) {
    if (sh[i] > 1 && st[i] != step)
      return false;
    step *= sh[i];
  }
  return true;
}

Buffer Buffer::copy() const {
  std::size_t bytes = static_cast<std::size_t>(count() * itemsize());
  Buffer out = allocate(bytes);
  if (contiguous()) {
    if (bytes > 0)
      std::memcpy(out.data(), data(), bytes);
  } else {
    // Walk the items in C order.
    auto& sh = shape();
    auto& st = strides();
    std::vector<std::int64_t> index(sh.size(), 0);
    auto* dst = static_cast<char*>(out.data());
    auto* base = static_cast<const char*>(data());
    for (std::int64_t k = 0; k < count(); ++k) {
      std::int64_t offset = 0;
      for (std::size_t i = 0; i < sh.size(); ++i)
        offset += index[i] * st[i];
      std::memcpy(dst, base + offset, static_cast<std::size_t>(itemsize()));
      dst += itemsize();
      for (std::size_t i = sh.size(); i-- > 0;) {
        if (++index[i] < sh[i])
          break;
        index[i] = 0;
      }
    }
  }
  if (format() == "B" && shape().size() == 1)
    return out;
  return out.as(format(), shape());
}

bool operator==(const Buffer& a, const Buffer& b) {
  if (a.state_ == b.state_)
    return true;
  if (a.format() != b.format() || a.shape() != b.shape())
    return false;
  Buffer x = a.contiguous() ? a : a.copy();
  Buffer y = b.contiguous() ? b : b.copy();
  std::size_t n = static_cast<std::size_t>(x.count() * x.itemsize());
  return n == 0 || std::memcmp(x.data(), y.data(), n) == 0;
}

} // namespace gk
