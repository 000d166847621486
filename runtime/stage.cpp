// A pipeline's stages: the Stage factories, and whether a RetryPolicy
// retries an error.

#include "gilkeeper/runtime/pipeline.hpp"

#include <algorithm>

namespace gk {

bool RetryPolicy::retries(const Error& e, int attempts_so_far) const {
  if (attempts_so_far >= attempts)
    return false;
  return std::find(on.begin(), on.end(), e.code) != on.end();
}

Stage Stage::python(std::string name, std::string call) {
  Stage s;
  s.name = std::move(name);
  s.call = std::move(call);
  return s;
}

Stage Stage::cpp(std::string name, StageFunction function) {
  Stage s;
  s.name = std::move(name);
  s.function = std::move(function);
  return s;
}

Stage Stage::cpp(std::string name, ContextStageFunction function) {
  Stage s;
  s.name = std::move(name);
  s.function_with_context = std::move(function);
  return s;
}

} // namespace gk
