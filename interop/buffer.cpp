#include "gilkeeper/interop/buffer.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
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

// A mapping of a memfd: unmapped and closed with the Buffer's last copy.
struct Mapping {
  void* address = nullptr;
  std::size_t length = 0;
  int fd = -1;
  ~Mapping() {
    if (address && address != MAP_FAILED)
      ::munmap(address, length);
    if (fd >= 0)
      ::close(fd);
  }
};

int new_memfd(std::size_t size) {
  int fd = ::memfd_create("gk-buffer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -1;
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    ::close(fd);
    return -1;
  }
  // Its size is fixed: a peer that maps it cannot be cut short (SIGBUS).
  ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  return fd;
}

} // namespace

namespace detail {

Buffer map_memfd(int fd, std::size_t size, bool readonly) {
  auto m = std::make_shared<Mapping>();
  m->fd = fd;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) < size)
    return Buffer();
  m->length = size == 0 ? 1 : size;
  m->address = ::mmap(nullptr, m->length, readonly ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m->address == MAP_FAILED)
    return Buffer();
  auto s = flat(m->address, size, std::shared_ptr<const void>(m, m.get()), readonly);
  s->memfd = fd;
  return Buffer(std::move(s));
}

Buffer relayout(const Buffer& b, std::string format, std::int64_t itemsize, std::vector<std::int64_t> shape) {
  std::int64_t n = 1;
  for (auto d : shape)
    n *= d;
  if (!b.state() || !b.contiguous() || itemsize <= 0 || static_cast<std::size_t>(n * itemsize) != b.size())
    return Buffer();
  auto st = std::make_shared<BufferState>();
  st->data = b.data();
  st->size = b.size();
  st->readonly = b.readonly();
  st->format = std::move(format);
  st->itemsize = itemsize;
  st->shape = std::move(shape);
  st->strides.assign(st->shape.size(), itemsize);
  for (std::size_t i = st->shape.size(); i-- > 1;)
    st->strides[i - 1] = st->strides[i] * st->shape[i];
  st->memfd = b.state()->memfd;
  st->keep = b.state();
  return Buffer(std::move(st));
}

int memfd_copy(const void* data, std::size_t size) {
  int fd = new_memfd(size);
  if (fd < 0)
    return -1;
  auto* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd, p + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      ::close(fd);
      return -1;
    }
    done += static_cast<std::size_t>(n);
  }
  return fd;
}

} // namespace detail

Buffer Buffer::allocate(std::size_t bytes) {
  if (bytes >= kSharedMemoryThreshold) {
    int fd = new_memfd(bytes);
    if (fd >= 0) {
      Buffer b = detail::map_memfd(fd, bytes, false);
      if (b.data())
        return b;
    }
    // No shared memory (a sandbox, a limit): plain memory, copied when sent.
  }
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
