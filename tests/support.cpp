#include "support.hpp"
#include "support_log.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

namespace gk::test {

Config test_config(const std::string& extra_toml) {
  std::string toml = std::string("[python]\npath = [\"") + GK_TEST_PYTHON_DIR + "\", \"" + GK_TEST_EXT_DIR
                     + "\"]\n" + extra_toml;
  return parse_config(toml, "test.toml");
}

Config process_config(const std::string& extra) {
  return test_config("[runtime]\nisolation = \"process\"\n" + extra);
}

RequestOptions within(std::chrono::milliseconds ms) {
  return RequestOptions::with_deadline(Deadline::after(ms));
}

std::uint64_t restarts(Runtime& rt, const std::string& cause) {
  for (auto& [c, n] : rt.stats().restarts_by_cause)
    if (c == cause)
      return n;
  return 0;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int run_command(const std::string& cmd, std::string* out) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p)
    return -1;
  std::array<char, 4096> buf;
  std::string text;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    text.append(buf.data(), n);
  int status = pclose(p);
  if (out)
    *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string temp_dir() {
  char tmpl[] = "/tmp/gk-test-XXXXXX";
  char* d = mkdtemp(tmpl);
  return d ? std::string(d) : std::string("/tmp");
}

} // namespace gk::test

namespace gk::test {

int line_of(const std::string& file, const std::string& text) {
  std::ifstream in(file);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n)
    if (line.find(text) != std::string::npos)
      return n;
  return 0;
}

} // namespace gk::test
