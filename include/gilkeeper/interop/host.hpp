#pragma once

/// Host functions: C++ functions Python code calls as
/// `gilkeeper.host.NAME(...)` (registered with `Runtime::expose`).
///
/// A host function runs on a host thread (`gk-host`), never on the
/// interpreter's, while the Python call waits with the GIL released. It
/// gets the call's `HostCall`: its name and its context, whose deadline is
/// the remaining deadline of the Python request that called it and whose
/// token is cancelled when that request stops waiting (its deadline, a
/// cancel). Requests it makes to the same runtime are served re-entrantly
/// by the waiting interpreter (see docs/host-functions.md).

#include "gilkeeper/interop/context.hpp"
#include "gilkeeper/interop/expected.hpp"
#include "gilkeeper/interop/value.hpp"

#include <functional>
#include <string>
#include <utility>

namespace gk {

/// What a host function is told about the call it serves. Thread-safe: a
/// plain value.
class HostCall {
public:
  HostCall(std::string name, RequestContext context) : name_(std::move(name)), context_(std::move(context)) {}

  /// The name Python called (`resize` of `gilkeeper.host.resize`).
  const std::string& name() const noexcept { return name_; }
  /// The Python request's context: pass it as `RequestOptions::parent` to
  /// requests made on this call's behalf from another thread (on the host
  /// function's own thread that is automatic).
  const RequestContext& context() const noexcept { return context_; }
  /// When the Python request that called stops being worth an answer.
  const Deadline& deadline() const noexcept { return context_.deadline; }
  /// True once Python stopped waiting (its deadline passed, it was
  /// cancelled): the result will be dropped.
  bool cancelled() const noexcept { return context_.cancel.cancelled(); }

private:
  std::string name_;
  RequestContext context_;
};

/// A host function. Returning an error, throwing, or returning a Value with
/// no Python form raises `gilkeeper.HostError` in Python (with `code` and
/// `message`).
using HostFunction = std::function<Expected<Value>(const List& args, const HostCall& call)>;

} // namespace gk
