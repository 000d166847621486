#pragma once

/// Internals of config.cpp: reading typed values out of toml++ nodes and
/// turning every problem into a ConfigError with file, line, column, key path
/// and what was expected. Not installed; header-only so that the build's
/// `config/*.cpp` glob needs no `detail/` entry.

#include "gilkeeper/config/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gk::detail {

/// `s` in double quotes, with `"`, `\` and control characters escaped.
inline std::string in_quotes(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : s) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\u00";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

/// `parent.key`, quoting `key` the way TOML would when it is not bare.
inline std::string key_path(const std::string& parent, std::string_view key) {
  const bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
  std::string part = bare ? std::string(key) : in_quotes(key);
  return parent.empty() ? part : parent + "." + part;
}

/// `parent[index]`.
inline std::string index_path(const std::string& parent, std::size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

/// "a string", "an integer", ...: how a message names what it got.
inline std::string type_phrase(toml::node_type type) {
  switch (type) {
  case toml::node_type::string: return "a string";
  case toml::node_type::integer: return "an integer";
  case toml::node_type::floating_point: return "a float";
  case toml::node_type::boolean: return "a boolean";
  case toml::node_type::table: return "a table";
  case toml::node_type::array: return "an array";
  case toml::node_type::date: return "a date";
  case toml::node_type::time: return "a time";
  case toml::node_type::date_time: return "a date-time";
  case toml::node_type::none: break;
  }
  return "nothing";
}

/// Edit distance between two keys (insertions, deletions, substitutions).
inline std::size_t levenshtein(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

/// True for `name` or `a.b.c` where every part is a Python identifier
/// (ASCII letters, digits, `_`, or any non-ASCII byte; no leading digit).
inline bool is_dotted_name(std::string_view text) {
  if (text.empty()) return false;
  bool part_start = true;
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '.') {
      if (part_start) return false;
      part_start = true;
      continue;
    }
    const bool letter =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || byte >= 0x80;
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && !part_start)) return false;
    part_start = false;
  }
  return !part_start;
}

/// Reads values for one source, throwing ConfigError on the first problem.
/// Not thread-safe; one per parse.
class TomlReader {
public:
  TomlReader(std::string file, std::filesystem::path base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  const std::string& file() const { return file_; }

  [[noreturn]] void fail(const toml::source_region& where, std::string key,
                         std::string message) const {
    throw ConfigError(file_, static_cast<int>(where.begin.line),
                      static_cast<int>(where.begin.column), std::move(key), std::move(message));
  }

  [[noreturn]] void fail_type(const toml::node& node, std::string key,
                              std::string_view expected) const {
    fail(node.source(), std::move(key),
         "expected " + std::string(expected) + ", got " + type_phrase(node.type()));
  }

  /// Calls `handle(name, value, path)` for each entry of `table` in file
  /// order. A key outside `allowed` is an error at the key's own position,
  /// suggesting the closest allowed key within two edits.
  template <class Handler>
  void for_each_entry(const toml::table& table, const std::string& path,
                      std::initializer_list<std::string_view> allowed, Handler&& handle) const {
    for_each_key(table, path,
                 [&](const toml::key& key, const toml::node& value, const std::string& key_path) {
                   if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end())
                     fail(key.source(), key_path, unknown_key_message(key.str(), allowed));
                   handle(key.str(), value, key_path);
                 });
  }

  /// Calls `handle(key, value, path)` for each entry of `table` in file
  /// order, whatever its key.
  template <class Handler>
  void for_each_key(const toml::table& table, const std::string& path, Handler&& handle) const {
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (auto&& [key, value] : table) entries.emplace_back(&key, &value);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      const auto& pa = a.first->source().begin;
      const auto& pb = b.first->source().begin;
      return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
    });
    for (const auto& [key, value] : entries) handle(*key, *value, key_path(path, key->str()));
  }

  const toml::table& table(const toml::node& node, const std::string& key) const {
    if (const auto* t = node.as_table()) return *t;
    fail_type(node, key, "a table");
  }

  std::string string(const toml::node& node, const std::string& key) const {
    if (const auto* s = node.as_string()) return s->get();
    fail_type(node, key, "a string");
  }

  std::string non_empty_string(const toml::node& node, const std::string& key) const {
    std::string value = string(node, key);
    if (value.empty()) fail(node.source(), key, "expected a non-empty string, got \"\"");
    return value;
  }

  bool boolean(const toml::node& node, const std::string& key) const {
    if (const auto* b = node.as_boolean()) return b->get();
    fail_type(node, key, "a boolean");
  }

  /// An integer in [min, max]; the message names the range.
  std::int64_t integer(const toml::node& node, const std::string& key, std::int64_t min,
                       std::int64_t max = std::numeric_limits<std::int64_t>::max()) const {
    const auto* i = node.as_integer();
    if (!i) fail_type(node, key, "an integer");
    const std::int64_t value = i->get();
    if (value < min || value > max) fail(node.source(), key, range_message(value, min, max));
    return value;
  }

  std::vector<std::string> strings(const toml::node& node, const std::string& key) const {
    const auto* array = node.as_array();
    if (!array) fail_type(node, key, "an array of strings");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < array->size(); ++i)
      out.push_back(string((*array)[i], index_path(key, i)));
    return out;
  }

  /// Dotted Python module names (`os`, `os.path`).
  std::vector<std::string> module_names(const toml::node& node, const std::string& key) const {
    std::vector<std::string> out = strings(node, key);
    for (std::size_t i = 0; i < out.size(); ++i)
      if (!is_dotted_name(out[i]))
        fail(node.as_array()->get(i)->source(), index_path(key, i),
             "expected a dotted module name like \"os.path\", got " + in_quotes(out[i]));
    return out;
  }

  /// Paths, relative ones resolved against the base directory; absolute and
  /// lexically normal, without a trailing separator.
  std::vector<std::string> paths(const toml::node& node, const std::string& key) const {
    std::vector<std::string> out = strings(node, key);
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i].empty())
        fail(node.as_array()->get(i)->source(), index_path(key, i),
             "expected a non-empty path, got \"\"");
      std::filesystem::path p(out[i]);
      if (p.is_relative()) p = base_dir_ / p;
      p = p.lexically_normal();
      if (!p.has_filename() && p != p.root_path()) p = p.parent_path();
      out[i] = p.string();
    }
    return out;
  }

  /// One path, resolved as `paths` resolves each of its entries.
  std::string path(const toml::node& node, const std::string& key) const {
    std::string text = non_empty_string(node, key);
    std::filesystem::path p(text);
    if (p.is_relative()) p = base_dir_ / p;
    return p.lexically_normal().string();
  }

  /// A duration string; never `"none"`.
  std::chrono::nanoseconds duration(const toml::node& node, const std::string& key) const {
    const auto* s = node.as_string();
    if (!s) fail_type(node, key, "a duration string like \"250ms\"");
    if (auto value = parse_duration(s->get())) return *value;
    fail(node.source(), key,
         "expected a duration like \"250ms\", \"5s\", \"2m\", got " + in_quotes(s->get()));
  }

  /// A duration string or `"none"`.
  Timeout timeout(const toml::node& node, const std::string& key) const {
    const auto* s = node.as_string();
    if (!s) fail_type(node, key, "a duration string like \"250ms\"");
    if (auto value = parse_timeout(s->get())) return *value;
    fail(node.source(), key,
         "expected a duration like \"250ms\", \"5s\", \"2m\" or \"none\", got " +
             in_quotes(s->get()));
  }

  /// A string among `choices`, mapped to its value.
  template <class T>
  T choice(const toml::node& node, const std::string& key,
           std::initializer_list<std::pair<std::string_view, T>> choices) const {
    std::string expected = "expected one of ";
    for (const auto& c : choices) expected += in_quotes(c.first) + ", ";
    const auto* s = node.as_string();
    if (!s) fail(node.source(), key, expected + "got " + type_phrase(node.type()));
    for (const auto& c : choices)
      if (c.first == s->get()) return c.second;
    fail(node.source(), key, expected + "got " + in_quotes(s->get()));
  }

private:
  static std::string unknown_key_message(std::string_view name,
                                         std::initializer_list<std::string_view> allowed) {
    std::string message = "unknown key " + in_quotes(name);
    std::string_view best;
    std::size_t best_distance = 3;
    for (std::string_view candidate : allowed) {
      const std::size_t distance = levenshtein(name, candidate);
      if (distance < best_distance) {
        best = candidate;
        best_distance = distance;
      }
    }
    if (!best.empty()) message += "; did you mean " + in_quotes(best) + "?";
    return message;
  }

  static std::string range_message(std::int64_t value, std::int64_t min, std::int64_t max) {
    if (max == std::numeric_limits<std::int64_t>::max())
      return "expected an integer >= " + std::to_string(min) + ", got " + std::to_string(value);
    return "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
           ", got " + std::to_string(value);
  }

  std::string file_;
  std::filesystem::path base_dir_;
};

} // namespace gk::detail
