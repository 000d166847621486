#include "actors/host_functions.hpp"

#include <cerrno>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace gk::detail {

namespace {

thread_local const RequestContext* t_host_context = nullptr;

// An idle gk-host thread ends after this long without work.
constexpr auto kIdleEnd = std::chrono::seconds(10);

bool is_identifier(const std::string& name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0]))))
    return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  return true;
}

} // namespace

const RequestContext* current_host_context() noexcept {
  return t_host_context;
}

// -- HostNest -----------------------------------------------------------------

HostNest::HostNest(const Executor* executor_, bool nestable_, std::string name_)
  : executor(executor_), nestable(nestable_), name(std::move(name_)) {}

HostNest::~HostNest() {
  if (owns_fd)
    ::close(fd);
}

bool HostNest::push(Job& job) {
  {
    std::lock_guard<std::mutex> g(m_);
    if (!open_)
      return false;
    nested_.push_back(std::move(job));
  }
  notify();
  return true;
}

void HostNest::finish(Expected<Value> result) {
  {
    std::lock_guard<std::mutex> g(m_);
    if (finished_)
      return;
    finished_ = true;
    result_ = std::move(result);
  }
  if (on_finish)
    on_finish();
  else
    notify();
}

std::deque<Job> HostNest::close() {
  std::lock_guard<std::mutex> g(m_);
  open_ = false;
  return std::move(nested_);
}

bool HostNest::open() {
  std::lock_guard<std::mutex> g(m_);
  return open_;
}

HostNest::Next HostNest::take() {
  Next next;
  std::lock_guard<std::mutex> g(m_);
  if (result_) {
    next.result = std::move(result_);
    result_.reset();
  } else if (!nested_.empty()) {
    next.job.emplace(std::move(nested_.front()));
    nested_.pop_front();
  }
  return next;
}

void HostNest::notify() noexcept {
  if (eventfd) {
    std::uint64_t one = 1;
    ssize_t n;
    do
      n = ::write(fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
  }
}

void HostNest::drain() {
  if (pump) {
    pump();
    return;
  }
  std::uint64_t count;
  ssize_t n;
  do
    n = ::read(fd, &count, sizeof count);
  while (n < 0 && errno == EINTR);
}

// -- HostFunctions ------------------------------------------------------------

HostFunctions::~HostFunctions() {
  std::unique_lock<std::mutex> lk(pool_->mutex);
  pool_->stop = true;
  pool_->cv.notify_all();
  // Idle threads end at once; a thread inside a host function is not waited
  // for (it holds the pool and ends when its function returns).
  pool_->ended.wait_for(lk, std::chrono::seconds(1), [&] { return pool_->idle == 0; });
}

Error HostFunctions::expose(const std::string& name, HostFunction fn) {
  if (!is_identifier(name))
    return Error(ErrorCode::bad_request, "expose: '" + name + "' is not a host function name (a Python identifier "
                                         "that does not start with '_')");
  if (!fn)
    return Error(ErrorCode::bad_request, "expose: the function for '" + name + "' is empty");
  std::unique_lock<std::shared_mutex> g(fns_mutex_);
  fns_[name] = std::make_shared<const HostFunction>(std::move(fn));
  return Error();
}

bool HostFunctions::remove(const std::string& name) {
  std::unique_lock<std::shared_mutex> g(fns_mutex_);
  return fns_.erase(name) > 0;
}

std::shared_ptr<const HostFunction> HostFunctions::find(const std::string& name) const {
  std::shared_lock<std::shared_mutex> g(fns_mutex_);
  auto it = fns_.find(name);
  return it == fns_.end() ? nullptr : it->second;
}

std::vector<std::string> HostFunctions::names() const {
  std::shared_lock<std::shared_mutex> g(fns_mutex_);
  std::vector<std::string> out;
  for (auto& [name, fn] : fns_)
    out.push_back(name);
  return out;
}

Error HostFunctions::not_exposed(const std::string& name) const {
  std::string known;
  for (auto& n : names())
    known += (known.empty() ? "" : ", ") + n;
  return Error(ErrorCode::bad_request, "no host function is exposed as '" + name + "'"
                                           + (known.empty() ? std::string(" (none is)") : " (exposed: " + known + ")"));
}

std::size_t HostFunctions::threads() const {
  std::lock_guard<std::mutex> g(pool_->mutex);
  return pool_->live;
}

void HostFunctions::run(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> g(pool_->mutex);
    pool_->tasks.push_back(std::move(task));
    if (pool_->idle < pool_->tasks.size()) {
      // Every thread is busy (a nested call holds its thread): one more.
      pool_->live++;
      std::thread([pool = pool_] { serve(pool); }).detach();
      return;
    }
  }
  // Outside the lock: the woken thread does not wait for it.
  pool_->cv.notify_one();
}

void HostFunctions::serve(const std::shared_ptr<Pool>& pool) {
  pthread_setname_np(pthread_self(), "gk-host");
  std::unique_lock<std::mutex> lk(pool->mutex);
  for (;;) {
    if (!pool->tasks.empty()) {
      auto task = std::move(pool->tasks.front());
      pool->tasks.pop_front();
      lk.unlock();
      task();
      task = nullptr;  // what it holds goes before the thread waits again
      lk.lock();
      continue;
    }
    if (pool->stop)
      break;
    pool->idle++;
    bool work = pool->cv.wait_for(lk, kIdleEnd, [&] { return !pool->tasks.empty() || pool->stop; });
    pool->idle--;
    if (!work)
      break;
  }
  pool->live--;
  pool->ended.notify_all();
}

void HostFunctions::start(std::shared_ptr<HostNest> nest, std::shared_ptr<const HostFunction> fn, List args) {
  run([nest = std::move(nest), fn = std::move(fn), args = std::move(args)] {
    RequestContext context{nest->deadline, nest->token, nest};
    HostCall call(nest->name, context);
    const RequestContext* previous = t_host_context;
    t_host_context = &context;
    Expected<Value> result = Error();
    try {
      result = (*fn)(args, call);
    } catch (const std::exception& e) {
      result = Error(ErrorCode::internal, "it threw " + std::string(e.what()));
    } catch (...) {
      result = Error(ErrorCode::internal, "it threw an exception that is not a std::exception");
    }
    t_host_context = previous;
    nest->finish(std::move(result));
  });
}

Expected<std::shared_ptr<HostNest>> HostFunctions::call(const Executor* executor, const std::string& name, List args,
                                                        Deadline deadline, bool nestable, int wake_fd) {
  auto fn = find(name);
  if (!fn)
    return not_exposed(name);
  auto nest = std::make_shared<HostNest>(executor, nestable, name);
  nest->deadline = deadline;
  nest->fd = wake_fd >= 0 ? wake_fd : ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  nest->eventfd = nest->fd >= 0;
  nest->owns_fd = wake_fd < 0 && nest->fd >= 0;
  if (nest->fd < 0)
    return Error(ErrorCode::internal, "host call " + name + ": eventfd failed");
  start(nest, std::move(fn), std::move(args));
  return nest;
}

} // namespace gk::detail
