#pragma once

/// `Buffer`: a block of memory that crosses the border without a copy.
///
/// A Buffer is a handle (copies share the memory) with the layout of
/// Python's buffer protocol: a struct-module `format` ("B" bytes, "d"
/// doubles, "f", "i", "q", ...), the `itemsize`, a `shape` and `strides` in
/// bytes (C order when made here). In Python it arrives as a `memoryview`
/// over the host's memory, with no copy in thread isolation;
/// `numpy.asarray(view)` makes a numpy array over the same memory (writable
/// unless the Buffer is read-only). A Python result that supports the
/// buffer protocol (a memoryview, a numpy array, array.array, mmap) comes
/// back as a Buffer over the Python object's memory, with no copy, kept
/// alive by a handle until the last copy of the Buffer goes away (the
/// object is released on the interpreter's thread then). `bytes` and
/// `bytearray` results stay `Bytes` (one copy; wrap them in a memoryview to
/// get a Buffer). See docs/buffers.md.
///
/// Thread-safety: a plain value; the memory is shared, so concurrent writes
/// to it are the caller's to order.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace gk {

namespace detail {
struct BufferState;
}

/// Buffers of at least this many bytes cross to a worker process through
/// shared memory (a sealed memfd passed beside the frame) instead of inside
/// it; `Buffer::allocate` places them in such memory from the start.
inline constexpr std::size_t kSharedMemoryThreshold = 64 * 1024;

class Buffer {
public:
  /// An empty buffer (no memory, size 0).
  Buffer() = default;

  /// `bytes` of fresh memory owned by the Buffer, uninitialised, writable,
  /// format "B". From kSharedMemoryThreshold on it is shared memory (a
  /// memfd), so that a worker process maps it instead of receiving a copy.
  static Buffer allocate(std::size_t bytes);
  /// A copy of `size` bytes at `data`.
  static Buffer copy_of(const void* data, std::size_t size);
  /// Memory the caller owns, kept alive by `keep_alive` (released when the
  /// last copy of this Buffer goes away). No copy.
  static Buffer wrap(void* data, std::size_t size, std::shared_ptr<const void> keep_alive, bool readonly = false);

  /// The same memory seen with another layout: `format` (struct module
  /// syntax, one item), `shape` (C order). Throws std::invalid_argument
  /// when the shape's bytes are not the buffer's size or the format is not
  /// one of the struct module's single-item codes.
  Buffer as(const std::string& format, std::vector<std::int64_t> shape) const;

  void* data() const noexcept;
  /// Bytes of items (count() × itemsize()).
  std::size_t size() const noexcept;
  bool readonly() const noexcept;
  const std::string& format() const noexcept;
  std::int64_t itemsize() const noexcept;
  const std::vector<std::int64_t>& shape() const noexcept;
  const std::vector<std::int64_t>& strides() const noexcept;
  /// Items (the product of the shape).
  std::int64_t count() const noexcept;
  /// True when the items are packed in C order (no gaps).
  bool contiguous() const noexcept;
  /// A contiguous copy in fresh memory (the items in C order).
  Buffer copy() const;
  /// True when this is the memory of `other` (same handle).
  bool same_memory(const Buffer& other) const noexcept { return state_ == other.state_; }

  /// The items as `T` (no copy). PRECONDITION: contiguous() and
  /// sizeof(T) == itemsize().
  template <class T>
  T* items() const noexcept {
    return static_cast<T*>(data());
  }

  /// The contents, byte for byte, and the layout are equal.
  friend bool operator==(const Buffer& a, const Buffer& b);
  friend bool operator!=(const Buffer& a, const Buffer& b) { return !(a == b); }

  /// Internal: the shared state (for the runtime's conversions).
  const std::shared_ptr<const detail::BufferState>& state() const noexcept { return state_; }
  explicit Buffer(std::shared_ptr<const detail::BufferState> state) : state_(std::move(state)) {}

private:
  std::shared_ptr<const detail::BufferState> state_;
};

namespace detail {
/// What copies of a Buffer share.
struct BufferState {
  void* data = nullptr;
  std::size_t size = 0;
  bool readonly = false;
  std::string format = "B";
  std::int64_t itemsize = 1;
  std::vector<std::int64_t> shape;    ///< one dimension of `size` items when made here
  std::vector<std::int64_t> strides;  ///< bytes per step in each dimension
  /// Keeps the memory alive (its owner).
  std::shared_ptr<const void> keep;
  /// A memfd holding the memory from its first byte (process isolation's
  /// shared memory), or -1; open while `keep` lives.
  int memfd = -1;
};
/// The memory of `b` (contiguous) seen as `shape` items of `itemsize`
/// bytes in C order, with any struct-module `format` (also structured ones,
/// "T{...}", that `Buffer::as` does not parse). Empty when the sizes differ.
Buffer relayout(const Buffer& b, std::string format, std::int64_t itemsize, std::vector<std::int64_t> shape);
/// Maps `size` bytes of the memfd `fd` (taking it over: closed when the
/// Buffer's last copy goes). An empty Buffer when the file is smaller or
/// cannot be mapped.
Buffer map_memfd(int fd, std::size_t size, bool readonly);
/// A sealed memfd holding a copy of `size` bytes at `data`, or -1.
int memfd_copy(const void* data, std::size_t size);
} // namespace detail

} // namespace gk
