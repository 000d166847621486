// The files of a run: LineFile's writing, syncing and accounting, the
// summary's atomic replacement, and checks on the paths a run reads and
// writes.

#include "cli/line_file.hpp"
#include "cli/say.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gk::cli {

namespace {

// Lines are written in one write(2) once this much is queued.
constexpr std::size_t kBufferBytes = 1 << 16;

// Writes all of `data`; the bytes written (fewer on an error, with errno set).
std::size_t write_all(int fd, const char* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  return done;
}

} // namespace

LineFile::~LineFile() {
  if (fd_ >= 0 && owned_)
    ::close(fd_);
}

bool LineFile::open(const std::string& path, const char* what) {
  path_ = path;
  what_ = what;
  if (path == "-") {
    fd_ = STDOUT_FILENO;
    owned_ = false;
  } else {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    owned_ = true;
    if (fd_ < 0) {
      say("cannot open the " + what_ + " file " + path + ": " + std::strerror(errno));
      return false;
    }
  }
  struct stat st {};
  regular_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
  size_ = owned_ ? 0 : static_cast<std::uint64_t>(regular_ ? st.st_size : 0);
  return true;
}

bool LineFile::open_to_append(const std::string& path, const char* what, std::uint64_t keep_bytes,
                              std::uint64_t kept_lines) {
  path_ = path;
  what_ = what;
  owned_ = true;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    say("cannot open the " + what_ + " file " + path + ": " + std::strerror(errno));
    return false;
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    say("cannot resume: the " + what_ + " file " + path + " is not a regular file");
    return false;
  }
  regular_ = true;
  auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < keep_bytes) {
    say("cannot resume: the " + what_ + " file " + path + " shrank while it was read");
    return false;
  }
  if (size > keep_bytes && ::ftruncate(fd_, static_cast<off_t>(keep_bytes)) != 0) {
    say("cannot cut the " + what_ + " file " + path + " back to its last whole line: " + std::strerror(errno));
    return false;
  }
  size_ = keep_bytes;
  lines_ = kept_lines;
  return true;
}

bool LineFile::write_line(std::string_view text) {
  if (failed_) {
    ++lost_;
    return false;
  }
  buffer_.append(text.data(), text.size());
  buffer_ += '\n';
  ++queued_;
  return buffer_.size() < kBufferBytes || flush();
}

bool LineFile::flush() {
  if (failed_)
    return false;
  if (buffer_.empty())
    return true;
  std::size_t done = write_all(fd_, buffer_.data(), buffer_.size());
  if (done == buffer_.size()) {
    size_ += done;
    lines_ += queued_;
    queued_ = 0;
    buffer_.clear();
    return true;
  }
  int error = errno;
  // The lines whose every byte was written count; a torn one is cut off so
  // that the file ends with a whole line.
  auto whole_lines =
      static_cast<std::uint64_t>(std::count(buffer_.begin(), buffer_.begin() + static_cast<long>(done), '\n'));
  std::size_t whole_bytes = done == 0 ? 0 : buffer_.rfind('\n', done - 1) + 1;  // npos + 1 == 0
  if (done > whole_bytes && regular_ && owned_)
    (void)!::ftruncate(fd_, static_cast<off_t>(size_ + whole_bytes));
  size_ += whole_bytes;
  lines_ += whole_lines;
  lost_ += queued_ - whole_lines;
  queued_ = 0;
  buffer_.clear();
  return fail(error, "writing");
}

bool LineFile::sync() {
  if (!flush())
    return false;
  if (regular_ && ::fdatasync(fd_) != 0)
    return fail(errno, "syncing");
  return true;
}

bool LineFile::close() {
  bool ok = flush();
  if (fd_ >= 0 && owned_) {
    if (::close(fd_) != 0 && ok)
      ok = fail(errno, "closing");
  }
  fd_ = -1;
  return ok && !failed_;
}

bool LineFile::fail(int error, const char* doing) {
  if (!failed_)
    failure_ = std::string(doing) + " the " + what_ + " file " + path_ + " failed: " + std::strerror(error);
  failed_ = true;
  return false;
}

bool replace_file(const std::string& path, const std::string& text, const char* what) {
  if (path == "-") {
    if (write_all(STDOUT_FILENO, text.data(), text.size()) == text.size())
      return true;
    say("writing the " + std::string(what) + " to stdout failed: " + std::strerror(errno));
    return false;
  }
  std::string partial = path + ".partial";
  int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  bool ok = fd >= 0 && write_all(fd, text.data(), text.size()) == text.size() && ::fsync(fd) == 0;
  int error = errno;
  if (fd >= 0 && ::close(fd) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (ok && std::rename(partial.c_str(), path.c_str()) != 0) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    ::unlink(partial.c_str());
    say("writing the " + std::string(what) + " file " + path + " failed: " + std::strerror(error));
    return false;
  }
  // The rename itself is durable once the directory is (best effort).
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)!::fsync(dir_fd);
    ::close(dir_fd);
  }
  return true;
}

bool same_files(const RunOptions& options, const std::string& errors_path) {
  std::vector<std::pair<std::string, std::string>> files = {
      {"--input", options.input}, {"--output", options.output}, {"--errors", errors_path},
      {"--summary-json", options.summary_json}, {"--metrics-file", options.metrics_file}};
  for (std::size_t i = 0; i < files.size(); ++i) {
    for (std::size_t j = i + 1; j < files.size(); ++j) {
      auto& [name_a, a] = files[i];
      auto& [name_b, b] = files[j];
      if (a.empty() || b.empty() || a == "-" || b == "-")
        continue;
      std::error_code ec_a, ec_b;
      auto pa = std::filesystem::weakly_canonical(a, ec_a);
      auto pb = std::filesystem::weakly_canonical(b, ec_b);
      if (!ec_a && !ec_b && pa == pb) {
        say(name_a + " and " + name_b + " are the same file: " + a);
        return true;
      }
    }
  }
  return false;
}

std::string absolute(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

std::int64_t count_lines(const std::string& path) {
  if (path == "-")
    return -1;
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (!f)
    return -1;
  // Records are the lines that are not blank.
  std::int64_t lines = 0;
  char buf[1 << 16];
  std::size_t n;
  bool content = false;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    for (std::size_t i = 0; i < n; ++i) {
      char c = buf[i];
      if (c == '\n') {
        lines += content;
        content = false;
      } else if (c != ' ' && c != '\t' && c != '\r') {
        content = true;
      }
    }
  }
  std::fclose(f);
  return lines + (content ? 1 : 0);
}

} // namespace gk::cli
