// Buffers across the border (gilkeeper/interop/buffer.hpp), without copies:
// - host -> Python: a memoryview over the host's memory, exported by a
//   small object (`gilkeeper._HostBuffer`) that holds the Buffer's state;
// - Python -> host: any object with the buffer protocol but bytes and
//   bytearray becomes a Buffer over its memory, kept alive by a memoryview
//   of it in the interpreter's handle table (released on the interpreter's
//   thread, as a Ref is, when the Buffer's last copy goes).
// PRECONDITION for everything here: the GIL is held.

#include "interop/detail/buffer_convert.hpp"

#include <cstring>
#include <type_traits>

namespace gk::detail {

static_assert(std::is_same_v<Py_ssize_t, std::int64_t> || sizeof(Py_ssize_t) == sizeof(std::int64_t),
              "shape and strides are passed to Python as they are stored");

namespace {

struct HostBufferObject {
  PyObject_HEAD
  std::shared_ptr<const BufferState>* state;
};

PyTypeObject* g_host_buffer_type = nullptr;

BufferOwner& owner() {
  static BufferOwner& o = *new BufferOwner;
  return o;
}

int host_buffer_get(PyObject* self, Py_buffer* view, int flags) {
  auto& st = **reinterpret_cast<HostBufferObject*>(self)->state;
  if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE && st.readonly) {
    PyErr_SetString(PyExc_BufferError, "this gilkeeper buffer is read-only");
    view->obj = nullptr;
    return -1;
  }
  std::int64_t count = 1;
  for (auto d : st.shape)
    count *= d;
  view->buf = st.data;
  view->obj = Py_NewRef(self);
  view->len = static_cast<Py_ssize_t>(count * st.itemsize);
  view->readonly = st.readonly ? 1 : 0;
  view->itemsize = static_cast<Py_ssize_t>(st.itemsize);
  view->format = (flags & PyBUF_FORMAT) ? const_cast<char*>(st.format.c_str()) : nullptr;
  view->ndim = static_cast<int>(st.shape.size());
  view->shape = (flags & PyBUF_ND) == PyBUF_ND ? reinterpret_cast<Py_ssize_t*>(const_cast<std::int64_t*>(st.shape.data())) : nullptr;
  view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES
                      ? reinterpret_cast<Py_ssize_t*>(const_cast<std::int64_t*>(st.strides.data()))
                      : nullptr;
  view->suboffsets = nullptr;
  view->internal = nullptr;
  // A consumer that cannot take strides gets them only when they are C order.
  if (!view->strides && view->ndim > 0) {
    std::int64_t step = st.itemsize;
    for (std::size_t i = st.shape.size(); i-- > 0;) {
      if (st.shape[i] > 1 && st.strides[i] != step) {
        Py_CLEAR(view->obj);
        PyErr_SetString(PyExc_BufferError, "this gilkeeper buffer is not contiguous");
        return -1;
      }
      step *= st.shape[i];
    }
  }
  return 0;
}

void host_buffer_dealloc(PyObject* self) {
  delete reinterpret_cast<HostBufferObject*>(self)->state;
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

PyType_Slot host_buffer_slots[] = {
    {Py_bf_getbuffer, reinterpret_cast<void*>(host_buffer_get)},
    {Py_tp_dealloc, reinterpret_cast<void*>(host_buffer_dealloc)},
    {Py_tp_doc, const_cast<char*>("Host memory exported to Python (a gk::Buffer); seen through a memoryview.")},
    {0, nullptr}};

PyType_Spec host_buffer_spec = {"gilkeeper._HostBuffer", sizeof(HostBufferObject), 0, Py_TPFLAGS_DEFAULT,
                                host_buffer_slots};

} // namespace

BufferOwner& buffer_owner() {
  return owner();
}

bool add_buffer_type(PyObject* module) {
  g_host_buffer_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&host_buffer_spec));
  if (!g_host_buffer_type)
    return false;
  Py_INCREF(g_host_buffer_type);
  return PyModule_AddObject(module, "_HostBuffer", reinterpret_cast<PyObject*>(g_host_buffer_type)) == 0;
}

void reset_buffer_type() {
  Py_CLEAR(g_host_buffer_type);
}

PyObject* buffer_to_python(const Buffer& b, const std::string& path, Error& err) {
  if (!g_host_buffer_type || !b.state()) {
    if (!b.state())
      return PyMemoryView_FromMemory(const_cast<char*>(""), 0, PyBUF_READ);
    err = Error(ErrorCode::internal, path + ": buffers need the gilkeeper module");
    return nullptr;
  }
  PyObject* raw = PyType_GenericAlloc(g_host_buffer_type, 0);
  if (!raw) {
    err = fetch_python_error();
    return nullptr;
  }
  reinterpret_cast<HostBufferObject*>(raw)->state = new std::shared_ptr<const BufferState>(b.state());
  PyRef holder = PyRef::steal(raw);
  PyObject* view = PyMemoryView_FromObject(holder.get());
  if (!view)
    err = fetch_python_error();
  return view;
}

bool is_buffer_result(PyObject* o) {
  return PyObject_CheckBuffer(o) && !PyBytes_Check(o) && !PyByteArray_Check(o);
}

namespace {

// The host Buffer whose memory `o` is, when `o` is a memoryview of one or
// an object made over one (numpy.asarray(view): its `base` chain), seen
// from its first byte: such a result goes back as that memory (in a worker
// process, the same shared memory), not as a new handle.
const std::shared_ptr<const BufferState>* host_buffer_behind(PyObject* o, const void* data) {
  PyRef at = PyRef::borrow(o);
  for (int hops = 0; at && hops < 4; ++hops) {
    if (PyMemoryView_Check(at.get())) {
      Py_buffer* v = PyMemoryView_GET_BUFFER(at.get());
      if (v->obj && Py_TYPE(v->obj) == g_host_buffer_type) {
        auto* state = reinterpret_cast<HostBufferObject*>(v->obj)->state;
        return (*state)->data == data ? state : nullptr;
      }
      return nullptr;
    }
    PyRef base = PyRef::steal(PyObject_GetAttrString(at.get(), "base"));
    if (!base) {
      PyErr_Clear();
      return nullptr;
    }
    if (base.get() == Py_None)
      return nullptr;
    at = std::move(base);
  }
  return nullptr;
}

} // namespace

Expected<Value> buffer_from_python(PyObject* o, const std::string& path) {
  auto& own = owner();
  PyRef view = PyRef::steal(PyMemoryView_FromObject(o));
  if (!view) {
    Error e = fetch_python_error();
    Error out(ErrorCode::conversion, (path.empty() ? "" : path + ": ") + type_name(o)
                                         + " has a buffer that cannot be read: " + e.message);
    out.where = path;
    return out;
  }
  Py_buffer* v = PyMemoryView_GET_BUFFER(view.get());
  if (v->ndim == 0 && !PyMemoryView_Check(o)) {
    // A numpy scalar (numpy.int64(5), numpy.float32(0.5), numpy.bool_):
    // the number it is, as Python's int, float or bool would be.
    if (v->format && (v->format[0] == '?' || std::strcmp(v->format, "?") == 0))
      return Value(PyObject_IsTrue(o) == 1);
    if (PyIndex_Check(o)) {
      PyRef i = PyRef::steal(PyNumber_Index(o));
      if (i)
        return from_python(i.get(), path);
      PyErr_Clear();
    } else if (PyNumber_Check(o)) {
      PyRef f = PyRef::steal(PyNumber_Float(o));
      if (f)
        return Value(PyFloat_AS_DOUBLE(f.get()));
      PyErr_Clear();
    }
  }
  if (v->suboffsets) {
    Error out(ErrorCode::conversion, (path.empty() ? "" : path + ": ") + type_name(o)
                                         + " is an indirect (PIL-style) buffer; only strided buffers convert");
    out.where = path;
    return out;
  }
  auto st = std::make_shared<BufferState>();
  st->data = v->buf;
  st->readonly = v->readonly != 0;
  st->format = v->format ? v->format : "B";
  st->itemsize = v->itemsize;
  if (v->ndim == 0) {
    st->shape = {1};
    st->strides = {v->itemsize};
  } else {
    st->shape.assign(v->shape, v->shape + v->ndim);
    if (v->strides)
      st->strides.assign(v->strides, v->strides + v->ndim);
    else {
      st->strides.assign(static_cast<std::size_t>(v->ndim), v->itemsize);
      for (int i = v->ndim - 1; i > 0; --i)
        st->strides[static_cast<std::size_t>(i - 1)] = st->strides[static_cast<std::size_t>(i)] * v->shape[i];
    }
  }
  st->size = static_cast<std::size_t>(v->len);
  if (auto* host = host_buffer_behind(o, v->buf)) {
    st->memfd = (*host)->memfd;
    st->keep = *host;  // the host's memory, kept by its own state
    return Value(Buffer(std::move(st)));
  }
  if (own.table && own.release) {
    // The memoryview holds the object's export: in the handle table until
    // the Buffer's last copy goes, then released on the interpreter thread.
    auto id = own.table->add(view.get(), "buffer");
    auto epoch = own.table->epoch();
    st->keep = std::make_shared<const RefState>(id, epoch, type_name(o), own.release);
  } else {
    // No interpreter thread to release it on: one copy instead.
    Buffer copy = Buffer(st).copy();
    return Value(std::move(copy));
  }
  return Value(Buffer(std::move(st)));
}

} // namespace gk::detail
