// Fuzzes gk::parse_config: any text is either a Config or a ConfigError that
// names a position; nothing else may escape, crash or leak.
#include "gilkeeper/config/config.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    gk::Config config = gk::parse_config(text);
    // A stage list that parsed keeps what it promised.
    for (const auto& stage : config.stages)
      if (stage.name.empty() || stage.call.find(':') == std::string::npos)
        std::abort();
  } catch (const gk::ConfigError& error) {
    if (error.line() < 0 || error.column() < 0)
      std::abort();
  }
  return 0;
}
