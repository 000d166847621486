#pragma once

// `gilkeeper run --sync`: how often the output and errors files are made
// durable (fdatasync) while a run writes them.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace gk::cli {

/// When the run's writer makes what it wrote durable. Whatever the policy,
/// lines are handed to the file system (write(2)) as soon as the writer has
/// nothing more waiting, and at every sync.
struct SyncPolicy {
  enum class Kind {
    /// Never during the run (nor at its end): the OS decides.
    off,
    /// After every `records` lines written (output and errors together),
    /// and at the end.
    every,
    /// At most `interval` after a line was written, and at the end.
    interval,
  };
  Kind kind = Kind::interval;
  std::uint64_t records = 0;
  std::chrono::nanoseconds interval = std::chrono::seconds(1);
};

/// The default: `interval:1s`.
inline constexpr const char* kDefaultSync = "interval:1s";

/// Parses `off`, `every:N` (N >= 1) or `interval:DURATION` (`250ms`, `2s`;
/// above zero). nullopt for anything else. Thread-safe.
std::optional<SyncPolicy> parse_sync_policy(const std::string& text);

} // namespace gk::cli
