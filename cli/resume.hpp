#pragma once

// `gilkeeper run --resume`: what the output and errors files of an
// interrupted run already hold, and where to go on from.
//
// Each line of both files names its input line (`"line": N`), so the two
// files alone say which records are done: no progress file. Reading them:
// - a line without its newline, or that is not JSON, is torn: it and
//   everything after it in that file are cut off (a crash or a full disk
//   leaves at most the end of a file unfinished);
// - an errors line with code `runtime_stopped` (a record the interruption
//   stopped before it ran) does not count as done: it and everything after
//   it in the errors file are cut off;
// - in an ordered job, both files must stay in input order after the new
//   lines are appended: the records done are the longest run of input
//   records from the first one that are all in one file or the other, and
//   lines for records after that run are cut off (they run again);
// - anything else that does not fit the input refuses the resume: a line
//   naming an input line beyond the input's end or a blank one, an errors
//   line whose input is not that line's text, a record in both files or
//   twice, lines out of order in an ordered job, an errors line naming a
//   stage the job does not have, a line not in the form `gilkeeper run`
//   writes.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gk::cli {

/// What one file of an interrupted run keeps.
struct ResumedFile {
  /// Bytes kept: whole lines, each for a record that is done.
  std::uint64_t keep_bytes = 0;
  std::uint64_t lines = 0;
  /// Bytes cut off after them (torn, stopped, or out of order).
  std::uint64_t cut_bytes = 0;
};

/// Where a resumed run goes on from.
struct ResumePoint {
  ResumedFile output, errors;
  /// Input line numbers of the records done (in a kept line), ascending.
  std::vector<std::uint64_t> done;
  /// The kept errors lines by error code.
  std::map<std::string, std::uint64_t> failed_by_code;
  /// What was found and cut, one sentence each (for stderr).
  std::vector<std::string> notes;
};

/// Reads `input` and the files of the interrupted run (a missing file is
/// empty); `ordered` is the job's output order, `stages` its stage names.
/// Changes nothing. False, with the reason in `why`, when the files do not
/// fit the input or the job.
bool find_resume_point(const std::string& input, const std::string& output, const std::string& errors,
                       bool ordered, const std::vector<std::string>& stages, ResumePoint& point, std::string& why);

} // namespace gk::cli
