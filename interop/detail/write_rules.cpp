// The capability rule on writes (write_paths): where a write lands, symlinks
// resolved like the kernel does, checked against the allowed directories.

#include "interop/detail/capability_policy.hpp"

#include <climits>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gk::detail {

namespace {

// A path is under a directory when it is the directory or inside it.
bool path_under(std::string_view path, std::string_view dir) {
  if (dir == "/")
    return !path.empty() && path[0] == '/';
  return starts_with(path, dir) && (path.size() == dir.size() || path[dir.size()] == '/');
}

// The directory a *_dir_fd argument names, or the working directory.
std::string base_dir(PyObject* dir_fd) {
  if (dir_fd && PyLong_Check(dir_fd)) {
    long fd = PyLong_AsLong(dir_fd);
    PyErr_Clear();
    if (fd >= 0) {
      char buf[PATH_MAX];
      std::string link = "/proc/self/fd/" + std::to_string(fd);
      ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
      if (n > 0)
        return std::string(buf, static_cast<std::size_t>(n));
    }
  }
  return current_dir();
}

// Where a write to `path` lands, symlinks resolved like the kernel does.
// `follow`: the final component is followed when it is a symlink (open,
// chmod, truncate...); otherwise the name itself is acted on (remove,
// rename, mkdir...). Components that do not exist yet are kept as written.
std::string resolve_for_write(std::string path, const std::string& base, bool follow, int depth = 0) {
  if (path.empty() || path[0] != '/')
    path = base + "/" + path;
  while (path.size() > 1 && path.back() == '/')
    path.pop_back();
  std::string name = basename_of(path);
  if (follow || name == "." || name == "..") {
    if (auto r = real_path(path))
      return *r;
    struct stat st;
    if (follow && depth < 40 && ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      // A dangling symlink: open(O_CREAT) creates its target.
      char buf[PATH_MAX];
      ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
      if (n > 0)
        return resolve_for_write(std::string(buf, static_cast<std::size_t>(n)),
                                 resolve_for_write(dirname_of(path), "/", false, depth + 1), true,
                                 depth + 1);
    }
  }
  // The deepest existing ancestor, then the rest as written.
  std::string parent = dirname_of(path);
  std::string rest = name;
  for (;;) {
    if (auto r = real_path(parent))
      return (*r == "/" ? "" : *r) + "/" + rest;
    if (parent == "/" || parent == ".")
      return path;
    rest = basename_of(parent) + "/" + rest;
    parent = dirname_of(parent);
  }
}

} // namespace

int check_write(CapabilityPolicy& p, const char* event, PyObject* path_obj, PyObject* dir_fd, bool follow) {
  if (!path_obj || PyLong_Check(path_obj))
    return 0;  // an open file descriptor: opening it was checked
  auto path = path_of(path_obj);
  std::string target;
  if (path) {
    if (*path == "/dev/null")
      return 0;
    target = resolve_for_write(*path, base_dir(dir_fd), follow);
    for (auto& dir : p.write_dirs)
      if (path_under(target, dir))
        return 0;
  }
  std::string shown = path ? *path : std::string("?");
  return deny(p, "write_paths", target.empty() ? shown : target,
              std::string(event) + " of " + quoted(shown)
                  + (target.empty() || target == shown ? std::string() : " (" + target + ")")
                  + (p.write_dirs.empty() ? " (write_paths = []: no writes anywhere)"
                                          : " (not under write_paths)"));
}

// Binding an AF_UNIX socket to a path creates a file there.
int check_unix_bind(CapabilityPolicy& p, PyObject* address) {
  if (!p.caps.write_paths_set || !address || !(PyUnicode_Check(address) || PyBytes_Check(address)))
    return 0;
  auto path = path_of(address);
  if (!path || path->empty() || (*path)[0] == '\0')
    return 0;  // the abstract namespace: no file
  return check_write(p, "socket.bind", address, nullptr, false);
}

int check_open(CapabilityPolicy& p, PyObject* args) {
  PyObject* flags_obj = arg(args, 2);
  long flags = flags_obj && PyLong_Check(flags_obj) ? PyLong_AsLong(flags_obj) : 0;
  PyErr_Clear();
  if ((flags & O_ACCMODE) == O_RDONLY && !(flags & (O_CREAT | O_TRUNC | O_APPEND)))
    return 0;
  return check_write(p, "open for writing", arg(args, 0), nullptr, true);
}

// sqlite3 opens its files itself: "file:" URIs are read-only with mode=ro.
int check_sqlite(CapabilityPolicy& p, PyObject* args) {
  auto db = path_of(arg(args, 0));
  if (!db || db->empty() || *db == ":memory:")
    return 0;
  if (starts_with(*db, "file:")) {
    std::string rest = db->substr(5);
    auto q = rest.find('?');
    std::string query = q == std::string::npos ? std::string() : rest.substr(q + 1);
    rest = rest.substr(0, q);
    if (query.find("mode=ro") != std::string::npos || query.find("mode=memory") != std::string::npos)
      return 0;
    if (starts_with(rest, "//"))
      rest = rest.substr(rest.find('/', 2) == std::string::npos ? rest.size() : rest.find('/', 2));
    PyRef s = PyRef::steal(PyUnicode_FromString(rest.c_str()));
    if (!s)
      PyErr_Clear();
    return check_write(p, "sqlite3.connect", s ? s.get() : arg(args, 0), nullptr, true);
  }
  return check_write(p, "sqlite3.connect", arg(args, 0), nullptr, true);
}

} // namespace gk::detail
