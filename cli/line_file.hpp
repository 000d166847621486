#pragma once

// The files of a run: an output file that knows which of its lines reached
// the file, and checks on the paths a run reads and writes.

#include "cli/job_runner.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace gk::cli {

// A file a run writes lines to (or stdout), with its own buffer, so that it
// knows which lines reached the file: a line counts as written once write(2)
// took all of its bytes. A write that fails (a full disk, a file size limit)
// leaves the file ending with its last whole line (a torn line is cut off
// again), marks the file failed, and every line given to it from then on is
// counted lost instead of written. Not thread-safe: one writer at a time.
class LineFile {
public:
  LineFile() = default;
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;
  ~LineFile();

  // Opens for writing, truncating; "-" is stdout. Prints why it could not.
  bool open(const std::string& path, const char* what);

  // Opens an existing file (or creates it) to append after its first
  // `keep_bytes` bytes, which hold `kept_lines` lines; whatever follows them
  // is cut off. Prints why it could not.
  bool open_to_append(const std::string& path, const char* what, std::uint64_t keep_bytes,
                      std::uint64_t kept_lines);

  // Queues a line (without its newline); writes the buffer when it is full.
  // False once the file has failed: the line is counted lost.
  bool write_line(std::string_view text);

  // Writes every queued line. False once the file has failed.
  bool flush();

  // Writes every queued line and makes the file's data durable (fdatasync;
  // a no-op for a pipe or a terminal). False once the file has failed.
  bool sync();

  // Flushes and closes; false (with a message) when any write failed.
  bool close();

  const std::string& path() const noexcept { return path_; }
  // Lines in the file: written by this run, plus those kept on opening.
  std::uint64_t lines() const noexcept { return lines_; }
  // Lines given to write_line that never reached the file.
  std::uint64_t lost() const noexcept { return lost_; }
  bool failed() const noexcept { return failed_; }
  // Why the file failed ("" while it has not): "writing the output file
  // out.jsonl failed: No space left on device".
  const std::string& failure() const noexcept { return failure_; }

private:
  bool fail(int error, const char* doing);

  int fd_ = -1;
  bool owned_ = false;
  bool regular_ = false;
  bool failed_ = false;
  std::string what_;
  std::string path_;
  std::string failure_;
  std::string buffer_;
  // Bytes of the file that hold whole lines (regular files).
  std::uint64_t size_ = 0;
  std::uint64_t lines_ = 0;
  std::uint64_t queued_ = 0;
  std::uint64_t lost_ = 0;
};

// True (with a message) when two of the files a run reads and writes are the
// same file: writing would destroy the input or interleave two outputs.
bool same_files(const RunOptions& options, const std::string& errors_path);

// Counts the lines of a regular file (for the progress bar); -1 otherwise.
std::int64_t count_lines(const std::string& path);

// `path` made absolute and normal (as given when that fails).
std::string absolute(const std::string& path);

// Replaces the file at `path` with `text` (a new file renamed over it, made
// durable first), so that a crash leaves the old file or the new one, never
// a torn one; "-" writes to stdout. False (with a message) on failure.
bool replace_file(const std::string& path, const std::string& text, const char* what);

} // namespace gk::cli
