// A program built against an installed gilkeeper with find_package.
#include <gilkeeper/gilkeeper.hpp>

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
