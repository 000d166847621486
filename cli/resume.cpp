// `--resume`: reading the files of an interrupted run against its input.

#include "cli/resume.hpp"

#include "cli/json_value.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>

#include <sys/stat.h>

namespace gk::cli {

namespace {

// One line of the output or errors file, for a record.
struct Entry {
  std::uint64_t line = 0;
  // The byte just after its newline.
  std::uint64_t end = 0;
  // Errors only: the hash of the input as written, and the error code.
  std::size_t input_hash = 0;
  std::string code;
  // Its position in its file (1-based), for messages.
  std::uint64_t file_line = 0;
  bool is_error = false;
};

// What reading one file found.
struct FileScan {
  std::vector<Entry> entries;
  std::uint64_t size = 0;
  // Why reading stopped before the end ("" when it did not).
  std::string cut_reason;
};

bool is_blank(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// Parses `{"line":N,"<field>":` at the start of `body`; `after` is where the
// field's value starts.
bool leading_line_number(std::string_view body, std::string_view field, std::uint64_t& n, std::size_t& after) {
  constexpr std::string_view head = "{\"line\":";
  if (body.substr(0, head.size()) != head)
    return false;
  std::size_t i = head.size();
  n = 0;
  std::size_t digits = 0;
  while (i < body.size() && body[i] >= '0' && body[i] <= '9' && digits < 19) {
    n = n * 10 + static_cast<std::uint64_t>(body[i] - '0');
    ++i;
    ++digits;
  }
  if (digits == 0 || n == 0)
    return false;
  std::string rest = ",\"" + std::string(field) + "\":";
  if (body.substr(i, rest.size()) != rest)
    return false;
  after = i + rest.size();
  return true;
}

// Reads one file of the interrupted run. False (with `why`) for a line that
// is JSON but not in the form `gilkeeper run` writes, or out of order in an
// ordered job.
bool scan_file(const std::string& path, const char* what, bool errors, bool ordered,
               const std::vector<std::string>& stages, FileScan& scan, std::string& why) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (!f) {
    if (errno == ENOENT)
      return true;
    why = "cannot read the " + std::string(what) + " file " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(::fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::fclose(f);
    why = "the " + std::string(what) + " file " + path + " is not a regular file";
    return false;
  }
  scan.size = static_cast<std::uint64_t>(st.st_size);
  simdjson::dom::parser parser;
  char* buffer = nullptr;
  std::size_t capacity = 0;
  ssize_t n;
  std::uint64_t offset = 0, file_line = 0;
  bool ok = true;
  while ((n = ::getline(&buffer, &capacity, f)) != -1) {
    std::string_view text(buffer, static_cast<std::size_t>(n));
    ++file_line;
    if (text.back() != '\n') {
      scan.cut_reason = "its last line is torn (no newline)";
      break;
    }
    std::string_view body = text.substr(0, text.size() - 1);
    simdjson::dom::element doc;
    if (body.empty() || parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS) {
      scan.cut_reason = "line " + std::to_string(file_line) + " is torn (not JSON)";
      break;
    }
    Entry e;
    e.file_line = file_line;
    e.is_error = errors;
    e.end = offset + static_cast<std::uint64_t>(n);
    std::size_t after = 0;
    std::string_view code, stage;
    if (!leading_line_number(body, errors ? "input" : "value", e.line, after)
        || (errors
            && (doc["error"]["code"].get_string().get(code) != simdjson::SUCCESS
                || doc["error"]["stage"].get_string().get(stage) != simdjson::SUCCESS))) {
      why = path + ":" + std::to_string(file_line) + ": not a line `gilkeeper run` writes to its " + what
            + " file";
      ok = false;
      break;
    }
    if (errors) {
      // The input as written sits between the line number and the error
      // object, whose strings cannot hold this text unescaped.
      auto error_at = body.rfind(",\"error\":{\"code\":\"");
      if (error_at == std::string_view::npos || error_at < after) {
        why = path + ":" + std::to_string(file_line) + ": not a line `gilkeeper run` writes to its errors file";
        ok = false;
        break;
      }
      if (!stage.empty() && std::find(stages.begin(), stages.end(), stage) == stages.end()) {
        why = path + ":" + std::to_string(file_line) + ": stage \"" + std::string(stage)
              + "\" is not a stage of this job: is this the same job?";
        ok = false;
        break;
      }
      e.input_hash = std::hash<std::string_view>()(body.substr(after, error_at - after));
      e.code = std::string(code);
      if (e.code == "runtime_stopped") {
        scan.cut_reason = "line " + std::to_string(file_line) + " is a record the interruption stopped";
        break;
      }
    }
    if (ordered && !scan.entries.empty() && e.line <= scan.entries.back().line) {
      why = path + ":" + std::to_string(file_line) + ": input line " + std::to_string(e.line)
            + " comes after input line " + std::to_string(scan.entries.back().line)
            + ": the job writes in input order, this file is not its " + what + " file";
      ok = false;
      break;
    }
    scan.entries.push_back(std::move(e));
    offset += static_cast<std::uint64_t>(n);
  }
  std::free(buffer);
  std::fclose(f);
  return ok;
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

} // namespace

bool find_resume_point(const std::string& input, const std::string& output, const std::string& errors,
                       bool ordered, const std::vector<std::string>& stages, ResumePoint& point, std::string& why) {
  FileScan out, err;
  if (!scan_file(output, "output", false, ordered, stages, out, why)
      || !scan_file(errors, "errors", true, ordered, stages, err, why))
    return false;

  // Every record named in either file, by input line.
  std::vector<const Entry*> named;
  named.reserve(out.entries.size() + err.entries.size());
  for (auto& e : out.entries)
    named.push_back(&e);
  for (auto& e : err.entries)
    named.push_back(&e);
  std::sort(named.begin(), named.end(), [](const Entry* a, const Entry* b) { return a->line < b->line; });
  for (std::size_t i = 1; i < named.size(); ++i) {
    if (named[i]->line == named[i - 1]->line) {
      bool both = named[i]->is_error != named[i - 1]->is_error;
      why = "input line " + std::to_string(named[i]->line) + " is in "
            + (both ? "both the output and the errors file" : "the same file twice")
            + ": these files are not those of one run";
      return false;
    }
  }

  // Against the input: each named line is a record there (with the same
  // text, for an errors line), and the records done in order end at the
  // first record named nowhere.
  std::FILE* in = std::fopen(input.c_str(), "r");
  if (!in) {
    why = "cannot read the input file " + input + ": " + std::strerror(errno);
    return false;
  }
  char* buffer = nullptr;
  std::size_t capacity = 0;
  ssize_t n;
  std::uint64_t line = 0, done_in_order = 0;
  bool gap = false;
  std::size_t k = 0;
  bool ok = true;
  while ((n = ::getline(&buffer, &capacity, in)) != -1) {
    ++line;
    std::string_view text(buffer, static_cast<std::size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
      text.remove_suffix(1);
    bool blank = is_blank(text);
    if (k < named.size() && named[k]->line == line) {
      const Entry& e = *named[k];
      if (blank) {
        why = (e.is_error ? errors : output) + ":" + std::to_string(e.file_line) + " names input line "
              + std::to_string(line) + ", which is blank in " + input + ": is this the same input?";
        ok = false;
        break;
      }
      if (e.is_error && std::hash<std::string_view>()(input_json_text(text)) != e.input_hash) {
        why = errors + ":" + std::to_string(e.file_line) + ": its input is not line " + std::to_string(line)
              + " of " + input + ": is this the same input?";
        ok = false;
        break;
      }
      ++k;
    } else if (!blank) {
      gap = true;
    }
    if (!gap)
      done_in_order = line;
  }
  bool read_failed = std::ferror(in) != 0;
  std::free(buffer);
  std::fclose(in);
  if (!ok)
    return false;
  if (read_failed) {
    why = "reading the input file " + input + " failed";
    return false;
  }
  if (k < named.size()) {
    const Entry& e = *named[k];
    why = (e.is_error ? errors : output) + ":" + std::to_string(e.file_line) + " names input line "
          + std::to_string(e.line) + ", but " + input + " has " + plural(line, "line", "lines")
          + ": is this the same input?";
    return false;
  }

  // What each file keeps.
  std::uint64_t limit = ordered ? done_in_order : UINT64_MAX;
  auto keep = [&](FileScan& scan, ResumedFile& file, const std::string& path) {
    std::uint64_t kept = 0, end = 0;
    for (auto& e : scan.entries) {
      if (e.line > limit)
        break;
      ++kept;
      end = e.end;
      point.done.push_back(e.line);
      if (e.is_error)
        ++point.failed_by_code[e.code];
    }
    file.keep_bytes = end;
    file.lines = kept;
    file.cut_bytes = scan.size - end;
    if (file.cut_bytes == 0)
      return;
    std::string note = "cut the last " + plural(file.cut_bytes, "byte", "bytes") + " of " + path + ": ";
    if (kept < scan.entries.size())
      note += plural(scan.entries.size() - kept, "line", "lines") + " for records after input line "
              + std::to_string(limit) + ", which run again to keep the input order"
              + (scan.cut_reason.empty() ? "" : "; then " + scan.cut_reason);
    else
      note += scan.cut_reason;
    point.notes.push_back(note);
  };
  keep(out, point.output, output);
  keep(err, point.errors, errors);
  std::sort(point.done.begin(), point.done.end());
  return true;
}

} // namespace gk::cli
