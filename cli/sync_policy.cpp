// Parsing `--sync`.

#include "cli/sync_policy.hpp"

#include "gilkeeper/config/duration.hpp"

#include <cctype>

namespace gk::cli {

std::optional<SyncPolicy> parse_sync_policy(const std::string& text) {
  SyncPolicy p;
  if (text == "off") {
    p.kind = SyncPolicy::Kind::off;
    return p;
  }
  auto colon = text.find(':');
  if (colon == std::string::npos)
    return std::nullopt;
  std::string kind = text.substr(0, colon), arg = text.substr(colon + 1);
  if (kind == "every") {
    if (arg.empty() || arg.size() > 18)
      return std::nullopt;
    for (char c : arg)
      if (!std::isdigit(static_cast<unsigned char>(c)))
        return std::nullopt;
    p.kind = SyncPolicy::Kind::every;
    p.records = std::stoull(arg);
    if (p.records == 0)
      return std::nullopt;
    return p;
  }
  if (kind == "interval") {
    auto d = parse_duration(arg);
    if (!d || d->count() <= 0)
      return std::nullopt;
    p.kind = SyncPolicy::Kind::interval;
    p.interval = *d;
    return p;
  }
  return std::nullopt;
}

} // namespace gk::cli
