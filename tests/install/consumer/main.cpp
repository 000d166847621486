// A program built against an installed gilkeeper with find_package.
#include <gilkeeper/gilkeeper.hpp>
// Every other public header compiles on its own against the installed tree.
#include <gilkeeper/actors/messages.hpp>
#include <gilkeeper/actors/py_runtime.hpp>
#include <gilkeeper/config/duration.hpp>
#include <gilkeeper/interop/ref.hpp>
#include <gilkeeper/runtime/pipeline.hpp>
#include <gilkeeper/runtime/pipeline_actor.hpp>
#include <gilkeeper/runtime/workers.hpp>

#include <iostream>

int main() {
  gk::Runtime rt(gk::Config{});
  auto r = rt.eval("6 * 7");
  if (!r) {
    std::cerr << r.error().to_string() << "\n";
    return 1;
  }
  std::cout << "consumer: " << r->as_int() << "\n";
  return 0;
}
