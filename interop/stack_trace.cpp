// The traceback of where running Python code is now (see
// detail/stack_trace.hpp).
//
// Why not `traceback.format_exception`: at a soft deadline the caller waits
// about a millisecond for this, and the first traceback through a source
// file costs that much or more with Python's own machinery (`linecache`
// reads and decodes the whole file through `tokenize`: 0.2 ms for a small
// file, 1.2 ms for a 230 KB one, measured on the 2-core test machine), and
// the position carets import and run `ast`. Reading the one line asked for
// costs a few microseconds.

#include "interop/detail/stack_trace.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <optional>
#include <vector>

namespace gk::detail {

namespace {

// Python's traceback folds a frame repeated more than this many times.
constexpr int kRecursiveCutoff = 3;
// Sources larger than this are left to linecache.
constexpr std::size_t kMaxSourceBytes = 8u << 20;

bool valid_utf8(const std::string& s) {
  std::size_t i = 0, n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > n)
      return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
        return false;
    i += len;
  }
  return true;
}

std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos)
    return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// A source file's bytes, read once per traceback; nullopt when it cannot be
// read as a plain file.
std::optional<std::string> read_source(const std::string& filename) {
  if (filename.empty() || filename.front() == '<')
    return std::nullopt;
  int fd = ::open(filename.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return std::nullopt;
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 || out.size() + static_cast<std::size_t>(n) > kMaxSourceBytes) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// Line `lineno` (1-based) of `source`, stripped; nullopt when the file has
// no such line or the line is not UTF-8 (a coding cookie: linecache decodes).
std::optional<std::string> line_of(const std::string& source, int lineno) {
  std::size_t pos = 0;
  for (int i = 1; i < lineno; ++i) {
    pos = source.find('\n', pos);
    if (pos == std::string::npos)
      return std::nullopt;
    ++pos;
  }
  if (pos >= source.size())
    return std::nullopt;
  auto end = source.find('\n', pos);
  std::string line = source.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
  if (lineno == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0)
    line.erase(0, 3);
  if (!valid_utf8(line))
    return std::nullopt;
  return strip(line);
}

// linecache.getline(filename, lineno, module_globals), stripped: sources
// that are not plain files (zip imports, loaders) and other encodings.
std::string linecache_line(PyObject* filename, int lineno, PyObject* globals) {
  PyRef linecache = PyRef::steal(PyImport_ImportModule("linecache"));
  PyRef line = linecache ? PyRef::steal(PyObject_CallMethod(linecache.get(), "getline", "OiO", filename, lineno,
                                                            globals ? globals : Py_None))
                         : PyRef();
  const char* c = line && PyUnicode_Check(line.get()) ? PyUnicode_AsUTF8(line.get()) : nullptr;
  if (!c) {
    PyErr_Clear();
    return {};
  }
  return strip(c);
}

std::string utf8_of(PyObject* s) {
  const char* c = s && PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : nullptr;
  if (!c) {
    PyErr_Clear();
    return "?";
  }
  return c;
}

} // namespace

std::string format_stack_traceback(PyObject* frame, const std::string& type_name, const std::string& message) {
  std::string last = type_name + (message.empty() ? "" : ": " + message) + "\n";
  if (!frame || !PyFrame_Check(frame))
    return last;

  // Innermost first, as the frames link.
  std::vector<PyRef> stack;
  for (PyRef f = PyRef::borrow(frame); f;
       f = PyRef::steal(reinterpret_cast<PyObject*>(PyFrame_GetBack(reinterpret_cast<PyFrameObject*>(f.get())))))
    stack.push_back(PyRef::borrow(f.get()));

  std::string out = "Traceback (most recent call last):\n";
  std::map<std::string, std::optional<std::string>> sources;
  std::string last_file, last_name;
  int last_line = -1, count = 0;
  auto fold = [&] {
    if (count > kRecursiveCutoff) {
      int more = count - kRecursiveCutoff;
      out += "  [Previous line repeated " + std::to_string(more) + " more time" + (more > 1 ? "s" : "") + "]\n";
    }
  };
  for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
    auto* f = reinterpret_cast<PyFrameObject*>(it->get());
    PyRef code = PyRef::steal(reinterpret_cast<PyObject*>(PyFrame_GetCode(f)));
    auto* co = reinterpret_cast<PyCodeObject*>(code.get());
    std::string filename = utf8_of(co->co_filename);
    std::string name = utf8_of(co->co_name);
    int lineno = PyFrame_GetLineNumber(f);
    if (filename != last_file || lineno != last_line || name != last_name) {
      fold();
      last_file = filename;
      last_line = lineno;
      last_name = name;
      count = 0;
    }
    if (++count > kRecursiveCutoff)
      continue;
    out += "  File \"" + filename + "\", line " + (lineno >= 0 ? std::to_string(lineno) : "None") + ", in " + name
           + "\n";
    if (lineno <= 0)
      continue;
    auto src = sources.find(filename);
    if (src == sources.end())
      src = sources.emplace(filename, read_source(filename)).first;
    std::optional<std::string> line = src->second ? line_of(*src->second, lineno) : std::nullopt;
    if (!line) {
      PyRef globals = PyRef::steal(PyFrame_GetGlobals(f));
      line = linecache_line(co->co_filename, lineno, globals.get());
    }
    if (!line->empty())
      out += "    " + *line + "\n";
  }
  fold();
  return out + last;
}

} // namespace gk::detail
