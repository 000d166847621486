#pragma once

// Internal to interop/: Buffers to and from Python (buffer_convert.cpp).
// Includes Python.h. PRECONDITION for every function: the GIL is held.

#include "interop/detail/py.hpp"

#include <functional>

namespace gk::detail {

/// Where Python objects behind Buffers are kept (the interpreter's handle
/// table) and how their release reaches the interpreter's thread.
struct BufferOwner {
  HandleTable* table = nullptr;
  std::function<void(std::uint64_t, std::uint64_t)> release;
};
BufferOwner& buffer_owner();

/// Adds `gilkeeper._HostBuffer` (in the module's init) / drops it.
bool add_buffer_type(PyObject* module);
void reset_buffer_type();

/// A memoryview over the Buffer's memory (no copy). Null with `err` set on
/// failure.
PyObject* buffer_to_python(const Buffer& b, const std::string& path, Error& err);
/// True for an object that converts to a Buffer: the buffer protocol,
/// except bytes and bytearray (which stay Bytes).
bool is_buffer_result(PyObject* o);
/// A Buffer over the object's memory (no copy).
Expected<Value> buffer_from_python(PyObject* o, const std::string& path);

} // namespace gk::detail
