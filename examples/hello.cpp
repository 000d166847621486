// hello: start a runtime, call Python from several host threads, read stats.
#include <gilkeeper/gilkeeper.hpp>

#include <iostream>
#include <thread>
#include <vector>

int main() {
  // A config in code; a host would usually load a TOML file instead.
  gk::Runtime rt(gk::parse_config(R"(
[timeouts]
default = "5s"
)"));

  // A synchronous call: any plain thread may do this.
  auto r = rt.call("math:hypot", {3.0, 4.0});
  if (!r) {
    std::cerr << "error: " << r.error().to_string() << "\n";
    return 1;
  }
  std::cout << "math.hypot(3, 4) = " << r->as_double() << "\n";

  // Many threads, one interpreter: each request runs to completion in turn.
  rt.exec("hits = 0\ndef hit():\n    global hits\n    hits += 1\n    return hits\n");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i)
        rt.call("__main__:hit");
    });
  for (auto& t : threads)
    t.join();
  std::cout << "hits = " << rt.eval("hits")->as_int() << "\n";

  // Errors are values, with the Python type, message and traceback.
  auto bad = rt.eval("1 / 0");
  std::cout << "1 / 0 -> " << bad.error().to_string() << "\n";

  auto stats = rt.stats();
  std::cout << "calls: " << stats.type("call")->calls << ", python " << stats.python_version << "\n";
  return rt.eval("hits")->as_int() == 400 ? 0 : 1;
}
