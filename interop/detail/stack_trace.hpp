#pragma once

// Internal to interop/: the traceback of where running Python code is now,
// made inside the soft interrupt's signal handler, so that a caller is told
// where its code was without waiting for the exception to unwind.

#include "interop/detail/py.hpp"

#include <string>

namespace gk::detail {

/// The traceback that `traceback.format_exception` would give for an
/// exception of `type_name` with `message` raised in `frame` (the innermost
/// frame; may be null or None: then only the last line), outermost frame
/// first, ending with "type_name: message\n". It differs only in what costs:
/// no position carets (`^^^^`; an interrupt lands on any instruction), and
/// source lines are read straight from the file (the line asked for, not
/// the whole file through `tokenize`), falling back to `linecache` for
/// sources that are not plain UTF-8 files (zip imports, coding cookies).
/// Frames repeated more than 3 times in a row are folded as Python folds
/// them ("[Previous line repeated N more times]").
/// PRECONDITION: GIL held, on the thread whose stack `frame` is.
std::string format_stack_traceback(PyObject* frame, const std::string& type_name, const std::string& message);

} // namespace gk::detail
