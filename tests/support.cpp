#include "support.hpp"
#include "support_log.hpp"

#include <nlohmann/json.hpp>

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

bool parse_metrics(const std::string& text, std::vector<MetricSample>& samples, std::string& error) {
  std::string dir = temp_dir();
  std::string path = dir + "/metrics.txt";
  std::ofstream(path, std::ios::binary) << text;
  // One JSON line per sample: [family, type, name, labels, value].
  std::string script =
      "import json, sys\n"
      "from prometheus_client.parser import text_string_to_metric_families\n"
      "for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
      "    for s in f.samples:\n"
      "        print(json.dumps([f.name, f.type, s.name, s.labels, s.value]))\n";
  std::string script_path = dir + "/parse.py";
  std::ofstream(script_path) << script;
  std::string out;
  int status = run_command("/usr/bin/python3 " + script_path + " " + path + " 2>&1", &out);
  samples.clear();
  if (status != 0) {
    error = "prometheus_client's parser refused it (status " + std::to_string(status) + "): " + out;
    return false;
  }
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_array() || j.size() != 5) {
      error = "unexpected parser output: " + line;
      return false;
    }
    MetricSample m;
    m.family = j[0].get<std::string>();
    m.type = j[1].get<std::string>();
    m.name = j[2].get<std::string>();
    for (auto& [k, v] : j[3].items())
      m.labels[k] = v.get<std::string>();
    m.value = j[4].get<double>();
    samples.push_back(std::move(m));
  }
  return true;
}

double metric_sum(const std::vector<MetricSample>& samples, const std::string& name,
                  const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (auto& s : samples) {
    if (s.name != name)
      continue;
    bool match = true;
    for (auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      match = match && it != s.labels.end() && it->second == v;
    }
    if (match)
      sum += s.value;
  }
  return sum;
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
