#pragma once

// How the CLI reports on stderr: one line, "gilkeeper: <message>".

#include <cstdio>
#include <string>

namespace gk::cli {

inline void say(const std::string& message) {
  std::fprintf(stderr, "gilkeeper: %s\n", message.c_str());
}

} // namespace gk::cli
