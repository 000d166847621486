#pragma once

// The files of a run: a buffered output file that remembers write failures,
// and checks on the paths a run reads and writes.

#include "cli/job_runner.hpp"

#include <cstdint>
#include <cstdio>
#include <string>

namespace gk::cli {

// A buffered output file (or stdout) that remembers write failures.
class LineFile {
public:
  ~LineFile();

  // Opens for writing (truncating); "-" is stdout. Prints why it could not.
  bool open(const std::string& path, const char* what);

  void flush() { std::fflush(file_); }

  void write_line(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), file_);
    std::fputc('\n', file_);
    ++lines_;
  }

  // Flushes and closes; false (with a message) when any write failed.
  bool close(const char* what);

  const std::string& path() const noexcept { return path_; }
  std::uint64_t lines() const noexcept { return lines_; }

private:
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  std::string path_;
  std::uint64_t lines_ = 0;
};

// True (with a message) when two of the files a run reads and writes are the
// same file: writing would destroy the input or interleave two outputs.
bool same_files(const RunOptions& options, const std::string& errors_path);

// Counts the lines of a regular file (for the progress bar); -1 otherwise.
std::int64_t count_lines(const std::string& path);

// `path` made absolute and normal (as given when that fails).
std::string absolute(const std::string& path);

} // namespace gk::cli
