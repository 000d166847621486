// Value <-> PyObject conversion, Ref handles, and exception translation.
// PRECONDITION for everything here: the GIL is held.

#include "interop/detail/py.hpp"
#include "interop/detail/buffer_convert.hpp"

#include <cstring>

namespace gk::detail {

// -- handle table -------------------------------------------------------------

std::uint64_t HandleTable::add(PyObject* o, std::string origin) {
  Py_INCREF(o);
  auto id = next_id_++;
  entries_.emplace(id, Entry{o, type_name(o), std::move(origin)});
  return id;
}

PyObject* HandleTable::get(std::uint64_t id, std::uint64_t epoch) const {
  if (epoch != epoch_)
    return nullptr;
  auto i = entries_.find(id);
  return i == entries_.end() ? nullptr : i->second.object;
}

bool HandleTable::remove(std::uint64_t id, std::uint64_t epoch) {
  if (epoch != epoch_)
    return false;
  auto i = entries_.find(id);
  if (i == entries_.end())
    return false;
  PyObject* o = i->second.object;
  entries_.erase(i);
  Py_DECREF(o);  // may run arbitrary __del__ code: after the erase
  return true;
}

std::unordered_map<std::uint64_t, HandleTable::Entry> HandleTable::clear() {
  auto out = std::move(entries_);
  entries_.clear();
  for (auto& [id, e] : out)
    Py_DECREF(e.object);
  return out;
}

Ref make_ref(PyObject* o, const RefContext& refs) {
  static const std::string none;
  auto id = refs.table->add(o, refs.origin ? *refs.origin : none);
  auto epoch = refs.table->epoch();
  return Ref(std::make_shared<const RefState>(id, epoch, type_name(o),
                                             refs.release ? *refs.release : std::function<void(std::uint64_t, std::uint64_t)>()));
}

// -- names --------------------------------------------------------------------

std::string type_name(PyObject* o) {
  PyTypeObject* t = Py_TYPE(o);
  PyRef module = PyRef::steal(PyObject_GetAttrString(reinterpret_cast<PyObject*>(t), "__module__"));
  PyRef qual = PyRef::steal(PyObject_GetAttrString(reinterpret_cast<PyObject*>(t), "__qualname__"));
  PyErr_Clear();
  std::string name = t->tp_name;
  if (qual && PyUnicode_Check(qual.get())) {
    const char* q = PyUnicode_AsUTF8(qual.get());
    if (q)
      name = q;
  }
  if (module && PyUnicode_Check(module.get())) {
    const char* m = PyUnicode_AsUTF8(module.get());
    if (m && std::strcmp(m, "builtins") != 0)
      name = std::string(m) + "." + name;
  }
  PyErr_Clear();
  return name;
}

namespace {

Error conversion_error(const std::string& path, std::string what) {
  Error e(ErrorCode::conversion, path.empty() ? what : path + ": " + what);
  e.where = path;
  return e;
}

std::string key_path(const std::string& path, const std::string& key) {
  std::string out = path + "[\"";
  for (char c : key) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"]";
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// Where a value sits (`result["a"][3]`), rendered only for an error: the
// conversions pass it down the stack without building strings.
struct Path {
  const std::string* root = nullptr;  // the root's name; null below it
  const Path* parent = nullptr;
  const std::string* key = nullptr;  // a dict key, or else `index`
  std::size_t index = 0;

  Path child(const std::string& k) const { return Path{nullptr, this, &k, 0}; }
  Path child(std::size_t i) const { return Path{nullptr, this, nullptr, i}; }
  std::string str() const {
    if (!parent)
      return root ? *root : std::string();
    return key ? key_path(parent->str(), *key) : index_path(parent->str(), index);
  }
};

Error conversion_error(const Path& path, std::string what) {
  return conversion_error(path.str(), std::move(what));
}

PyObject* to_python_impl(const Value& v, const RefContext& refs, const Path& path, Error& err, int depth) {
  if (depth > kMaxDepth) {
    err = conversion_error(path, "nesting deeper than " + std::to_string(kMaxDepth));
    return nullptr;
  }
  switch (v.kind()) {
    case Value::Kind::null: Py_RETURN_NONE;
    case Value::Kind::boolean: return PyBool_FromLong(v.as_bool());
    case Value::Kind::integer: return PyLong_FromLongLong(v.as_int());
    case Value::Kind::real: return PyFloat_FromDouble(v.as_double());
    case Value::Kind::string: {
      auto& s = v.as_string();
      PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
      if (!o) {
        PyErr_Clear();
        err = conversion_error(path, "string is not valid UTF-8");
      }
      return o;
    }
    case Value::Kind::bytes: {
      auto& b = v.as_bytes().data;
      return PyBytes_FromStringAndSize(b.data(), static_cast<Py_ssize_t>(b.size()));
    }
    case Value::Kind::list: {
      auto& l = v.as_list();
      PyRef out = PyRef::steal(PyList_New(static_cast<Py_ssize_t>(l.size())));
      if (!out)
        break;
      for (std::size_t i = 0; i < l.size(); ++i) {
        PyObject* item = to_python_impl(l[i], refs, path.child(i), err, depth + 1);
        if (!item)
          return nullptr;
        PyList_SET_ITEM(out.get(), static_cast<Py_ssize_t>(i), item);
      }
      return out.release();
    }
    case Value::Kind::dict: {
      PyRef out = PyRef::steal(PyDict_New());
      if (!out)
        break;
      for (auto& [k, x] : v.as_dict()) {
        Path kp = path.child(k);
        PyRef key = PyRef::steal(PyUnicode_DecodeUTF8(k.data(), static_cast<Py_ssize_t>(k.size()), "strict"));
        if (!key) {
          PyErr_Clear();
          err = conversion_error(kp, "key is not valid UTF-8");
          return nullptr;
        }
        PyRef item = PyRef::steal(to_python_impl(x, refs, kp, err, depth + 1));
        if (!item)
          return nullptr;
        if (PyDict_SetItem(out.get(), key.get(), item.get()) != 0)
          break;
      }
      return out.release();
    }
    case Value::Kind::buffer: {
      PyObject* o = buffer_to_python(v.as_buffer(), path.str(), err);
      if (!o)
        err.where = path.str();
      return o;
    }
    case Value::Kind::ref: {
      auto& r = v.as_ref();
      PyObject* o = refs.table ? refs.table->get(r.id(), r.epoch()) : nullptr;
      if (!o) {
        std::string where = path.str();
        err = Error(ErrorCode::stale_ref,
                    (where.empty() ? std::string() : where + ": ") + "Ref #" + std::to_string(r.id())
                        + " (" + r.type_name() + ") is stale: its object was released or its "
                        + "interpreter is gone");
        err.where = where;
        return nullptr;
      }
      Py_INCREF(o);
      return o;
    }
  }
  // Only allocation failures reach here.
  err = fetch_python_error();
  return nullptr;
}

Expected<Value> from_python_impl(PyObject* o, const Path& path, int depth) {
  if (depth > kMaxDepth)
    return conversion_error(path, "nesting deeper than " + std::to_string(kMaxDepth)
                                      + " (or a container that contains itself)");
  if (o == Py_None)
    return Value();
  if (PyBool_Check(o))
    return Value(o == Py_True);
  if (PyLong_Check(o)) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0)
      return conversion_error(path, "int does not fit in int64");
    if (x == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      return conversion_error(path, "int could not be read");
    }
    return Value(static_cast<std::int64_t>(x));
  }
  if (PyFloat_Check(o))
    return Value(PyFloat_AS_DOUBLE(o));
  if (PyUnicode_Check(o)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) {
      PyErr_Clear();
      return conversion_error(path, "str is not valid UTF-8 (it holds lone surrogates)");
    }
    return Value(std::string(s, static_cast<std::size_t>(n)));
  }
  if (PyBytes_Check(o))
    return Value(Bytes{std::string(PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o)))});
  if (PyByteArray_Check(o))
    return Value(Bytes{std::string(PyByteArray_AS_STRING(o), static_cast<std::size_t>(PyByteArray_GET_SIZE(o)))});
  if (PyList_Check(o) || PyTuple_Check(o)) {
    bool is_list = PyList_Check(o);
    Py_ssize_t n = is_list ? PyList_GET_SIZE(o) : PyTuple_GET_SIZE(o);
    List out;
    out.reserve(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      // A list may shrink while we read it only if an item's conversion runs
      // Python code; ours does not, but re-check the size anyway.
      if (is_list && i >= PyList_GET_SIZE(o))
        break;
      PyObject* item = is_list ? PyList_GET_ITEM(o, i) : PyTuple_GET_ITEM(o, i);
      auto x = from_python_impl(item, path.child(static_cast<std::size_t>(i)), depth + 1);
      if (!x)
        return x.error();
      out.push_back(std::move(*x));
    }
    return Value(std::move(out));
  }
  if (PyDict_Check(o)) {
    Dict out;
    out.reserve(static_cast<std::size_t>(PyDict_GET_SIZE(o)));
    PyObject *k, *x;
    Py_ssize_t pos = 0;
    while (PyDict_Next(o, &pos, &k, &x)) {
      if (!PyUnicode_Check(k)) {
        PyRef r = PyRef::steal(PyObject_Repr(k));
        const char* rs = r ? PyUnicode_AsUTF8(r.get()) : nullptr;
        PyErr_Clear();
        return conversion_error(path, "dict key " + std::string(rs ? rs : "?") + " ("
                                          + type_name(k) + ") is not a str");
      }
      Py_ssize_t n = 0;
      const char* ks = PyUnicode_AsUTF8AndSize(k, &n);
      if (!ks) {
        PyErr_Clear();
        return conversion_error(path, "dict key is not valid UTF-8");
      }
      std::string key(ks, static_cast<std::size_t>(n));
      auto v = from_python_impl(x, path.child(key), depth + 1);
      if (!v)
        return v.error();
      out.emplace_back(std::move(key), std::move(*v));
    }
    return Value(std::move(out));
  }
  if (is_buffer_result(o))
    return buffer_from_python(o, path.str());
  std::string tn = type_name(o);
  if (PyAnySet_Check(o))
    return conversion_error(path, tn + " has no Value form (convert it to a sorted list)");
  return conversion_error(path, tn + " has no Value form (ask for a Ref to keep it in the runtime)");
}

} // namespace

PyObject* to_python(const Value& v, const RefContext& refs, const std::string& path, Error& err) {
  return to_python_impl(v, refs, Path{&path}, err, 0);
}

Expected<Value> from_python(PyObject* o, const std::string& path) {
  return from_python_impl(o, Path{&path}, 0);
}

// -- exceptions ---------------------------------------------------------------

namespace {

std::string str_of(PyObject* o) {
  if (!o)
    return {};
  PyRef s = PyRef::steal(PyObject_Str(o));
  if (!s) {
    PyErr_Clear();
    return "<unprintable " + type_name(o) + ">";
  }
  Py_ssize_t n = 0;
  const char* c = PyUnicode_AsUTF8AndSize(s.get(), &n);
  if (!c) {
    PyErr_Clear();
    return "<unprintable>";
  }
  return std::string(c, static_cast<std::size_t>(n));
}

// traceback.format_exception, kept for the interpreter's life.
PyObject* format_exception = nullptr;

std::string format_traceback(PyObject* type, PyObject* value, PyObject* tb) {
  if (!format_exception) {
    PyRef mod = PyRef::steal(PyImport_ImportModule("traceback"));
    if (!mod) {
      PyErr_Clear();
      return {};
    }
    format_exception = PyObject_GetAttrString(mod.get(), "format_exception");
    if (!format_exception) {
      PyErr_Clear();
      return {};
    }
  }
  PyRef lines = PyRef::steal(PyObject_CallFunctionObjArgs(
      format_exception, type, value ? value : Py_None, tb ? tb : Py_None, nullptr));
  if (!lines) {
    PyErr_Clear();
    return {};
  }
  std::string out;
  PyRef it = PyRef::steal(PyObject_GetIter(lines.get()));
  if (!it) {
    PyErr_Clear();
    return {};
  }
  while (PyRef line = PyRef::steal(PyIter_Next(it.get()))) {
    const char* c = PyUnicode_AsUTF8(line.get());
    if (c)
      out += c;
  }
  PyErr_Clear();
  return out;
}

} // namespace

void reset_caches() {
  Py_CLEAR(format_exception);
}

Error fetch_python_error() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb && value)
    PyException_SetTraceback(value, tb);
  PyRef t = PyRef::steal(type), v = PyRef::steal(value), b = PyRef::steal(tb);
  Error e(ErrorCode::python_exception, str_of(v.get()));
  e.type = v ? type_name(v.get()) : (t ? std::string(reinterpret_cast<PyTypeObject*>(t.get())->tp_name) : "?");
  // The soft interrupt's own exception, unchanged: its handler already made
  // the traceback of where the code was (detail/stack_trace.hpp).
  auto& interrupted = interrupt_state();
  if (interrupted.raised && v.get() == interrupted.raised)
    e.traceback = interrupted.raised_traceback;
  else
    e.traceback = format_traceback(t.get(), v.get(), b.get());
  PyObject* deadline_type = deadline_exceeded_type();
  if (deadline_type && t && PyObject_IsSubclass(t.get(), deadline_type) == 1) {
    e.code = ErrorCode::deadline_exceeded;
    e.phase = DeadlinePhase::soft;
  }
  PyObject* cancel_type = cancelled_type();
  if (cancel_type && t && PyObject_IsSubclass(t.get(), cancel_type) == 1)
    e.code = ErrorCode::cancelled;
  // A capability denial that escaped: `where` is the rule the hook named
  // (`capabilities.deny_modules: ctypes`); type, message and traceback stay.
  PyObject* denied_type = capability_denied_type();
  if (denied_type && t && PyObject_IsSubclass(t.get(), denied_type) == 1) {
    e.code = ErrorCode::capability_denied;
    PyRef rule = v ? PyRef::steal(PyObject_GetAttrString(v.get(), "rule")) : PyRef();
    if (rule && PyUnicode_Check(rule.get()))
      e.where = str_of(rule.get());
    else
      e.where = "capabilities";
  }
  PyErr_Clear();
  return e;
}

} // namespace gk::detail
