#include "gilkeeper/runtime/future.hpp"
#include "runtime/detail/future_state.hpp"

#include "actors/detail/blocking_context.hpp"

namespace gk {

namespace {

template <class T>
Expected<T> convert(AnyReply&& reply);

template <>
Expected<Value> convert<Value>(AnyReply&& reply) {
  if (auto* v = std::get_if<Expected<Value>>(&reply))
    return std::move(*v);
  return Error(ErrorCode::internal, "a batch reply to a single request");
}

template <>
Expected<std::vector<Expected<Value>>> convert<std::vector<Expected<Value>>>(AnyReply&& reply) {
  if (auto* v = std::get_if<Expected<Value>>(&reply)) {
    if (!v->has_value())
      return v->error();
    return Error(ErrorCode::internal, "a single reply to a batch");
  }
  return std::move(std::get<BatchReply>(reply).results);
}

// Where this thread must not wait (see actors/detail/blocking_context.hpp):
// the context's phrase when the reply is not there yet, else nullptr (a
// ready reply is taken without waiting, so it is never refused).
const char* refused_here(detail::FutureState& state) {
  const char* context = detail::blocking_context();
  return context && !state.ready() ? context : nullptr;
}

Error taken() {
  return Error(ErrorCode::internal, "the reply of this future was already taken (by get() or then())");
}

} // namespace

template <class T>
bool Future<T>::ready() const {
  return state_ && state_->ready();
}

template <class T>
void Future<T>::wait() const {
  if (state_ && !refused_here(*state_))
    state_->wait();
}

template <class T>
bool Future<T>::wait_for(std::chrono::nanoseconds timeout) const {
  return wait_until(Deadline::clock::now() + timeout);
}

template <class T>
bool Future<T>::wait_until(Deadline::time_point when) const {
  return state_ && !refused_here(*state_) && state_->wait_until(when);
}

template <class T>
Expected<T> Future<T>::get() {
  if (!state_)
    return Error(ErrorCode::bad_request, "get() on an invalid future");
  if (const char* context = refused_here(*state_))
    return detail::deadlock_error("Future::get", context);
  auto reply = state_->take();
  if (!reply)
    return taken();
  return convert<T>(std::move(*reply));
}

template <class T>
void Future<T>::then(std::function<void(Expected<T>)> fn) {
  if (!state_) {
    fn(Error(ErrorCode::bad_request, "then() on an invalid future"));
    return;
  }
  auto shared = std::make_shared<std::function<void(Expected<T>)>>(std::move(fn));
  if (!state_->then([shared](AnyReply&& reply) { (*shared)(convert<T>(std::move(reply))); }))
    (*shared)(taken());
}

template <class T>
void Future<T>::cancel() {
  if (state_)
    state_->cancel();
}

template <class T>
Deadline Future<T>::deadline() const {
  return state_ ? state_->deadline : Deadline::never();
}

template class Future<Value>;
template class Future<std::vector<Expected<Value>>>;

} // namespace gk
