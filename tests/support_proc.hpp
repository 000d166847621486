#pragma once

#include <chrono>
#include <thread>

// Reading /proc for tests: children of this process and zombies.

#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace gk::test {

struct ProcInfo {
  int pid;
  char state;
};

/// Direct children of process `parent` (any thread), with their state
/// ('Z' for a zombie).
inline std::vector<ProcInfo> children_of(int parent) {
  std::vector<ProcInfo> out;
  DIR* d = opendir("/proc");
  if (!d)
    return out;
  while (dirent* e = readdir(d)) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0)
      continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line))
      continue;
    auto close = line.rfind(')');
    if (close == std::string::npos)
      continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    int ppid;
    rest >> state >> ppid;
    if (ppid == parent)
      out.push_back({pid, state});
  }
  closedir(d);
  return out;
}

/// Direct children of this process, with their state.
inline std::vector<ProcInfo> children_of_self() { return children_of(getpid()); }

inline int count_zombies(const std::vector<ProcInfo>& ps) {
  int n = 0;
  for (auto& p : ps)
    n += p.state == 'Z';
  return n;
}

/// The zombies among this process's children once a reap cycle had its
/// chance: a child that exits is a zombie until the supervisor reaps it, a
/// moment later, so a zombie counts only if it is still there after
/// `within`. Returns as soon as there is none.
inline int zombies_after_reap(std::chrono::milliseconds within = std::chrono::milliseconds(1000)) {
  auto until = std::chrono::steady_clock::now() + within;
  int n = count_zombies(children_of_self());
  while (n > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    n = count_zombies(children_of_self());
  }
  return n;
}

} // namespace gk::test
