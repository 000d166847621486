// The files of a run: LineFile's opening and closing, and checks on the paths
// a run reads and writes.

#include "cli/line_file.hpp"
#include "cli/say.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

namespace gk::cli {

LineFile::~LineFile() {
  if (file_ && owned_)
    std::fclose(file_);
}

bool LineFile::open(const std::string& path, const char* what) {
  path_ = path;
  if (path == "-") {
    file_ = stdout;
    owned_ = false;
  } else {
    file_ = std::fopen(path.c_str(), "w");
    owned_ = true;
    if (!file_) {
      say("cannot open the " + std::string(what) + " file " + path + ": " + std::strerror(errno));
      return false;
    }
  }
  // stdio allocates (and keeps) the buffer: stdout outlives this object.
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 16);
  return true;
}

bool LineFile::close(const char* what) {
  bool ok = std::fflush(file_) == 0 && !std::ferror(file_);
  int saved = errno;
  if (owned_)
    ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok)
    say("writing the " + std::string(what) + " file " + path_ + " failed: " + std::strerror(saved));
  return ok;
}

bool same_files(const RunOptions& options, const std::string& errors_path) {
  std::vector<std::pair<std::string, std::string>> files = {
      {"--input", options.input}, {"--output", options.output}, {"--errors", errors_path},
      {"--summary-json", options.summary_json}};
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
