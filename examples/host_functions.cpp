// host_functions: Python calling C++ (gilkeeper.host.NAME), a call that
// comes back into Python (re-entrancy), a deadline that reaches the host
// function, and a numpy array that works on the host's memory in place.
// docs/host-functions.md and docs/buffers.md.
#include <gilkeeper/gilkeeper.hpp>

#include <chrono>
#include <iostream>
#include <thread>

using namespace std::chrono_literals;

int main() {
  gk::Runtime rt(gk::parse_config(R"(
[timeouts]
default = "5s"
)"));

  // A host function: arguments and result are gk::Values.
  rt.expose("scale", [](const gk::List& args) -> gk::Expected<gk::Value> {
    return gk::Value(args.at(0).as_double() * args.at(1).as_double());
  });
  // One that calls back into Python: served by the interpreter that waits
  // for it, however deep the calls go.
  rt.expose("fib", [&rt](const gk::List& args) -> gk::Expected<gk::Value> {
    return rt.call("__main__:fib", {args.at(0)});
  });
  // One that sees the calling request's deadline and is told when Python
  // stops waiting.
  rt.expose("slow", [](const gk::List&, const gk::HostCall& call) -> gk::Expected<gk::Value> {
    while (!call.cancelled())
      std::this_thread::sleep_for(1ms);
    std::cout << "host: the Python call gave up, stopping\n";
    return gk::Value();
  });

  auto defined = rt.exec(R"(
from gilkeeper import host
import gilkeeper
import numpy as np

def area(w, h):
    return host.scale(w, h)

def fib(n):                       # Python -> host -> Python -> ...
    return n if n < 2 else host.fib(n - 1) + host.fib(n - 2)

def patient():
    try:
        host.slow()
    except gilkeeper.DeadlineExceeded:
        return "deadline at the host call"

def normalize(view):              # the host's memory, as numpy, in place
    a = np.asarray(view)
    a /= a.max()
)");
  if (!defined) {
    std::cerr << defined.error().to_string() << "\n";
    return 1;
  }

  std::cout << "area: " << rt.call("__main__:area", {3.0, 4.5})->as_double() << "\n";
  std::cout << "fib(10) through the host: " << rt.call("__main__:fib", {10})->as_int() << "\n";

  gk::RequestOptions short_deadline;
  short_deadline.deadline = gk::Deadline::after(200ms);
  auto r = rt.call("__main__:patient", {}, {}, short_deadline);
  std::cout << "patient: " << (r ? r->repr() : r.error().to_string()) << "\n";

  // A buffer of doubles the host owns; numpy divides it in place.
  gk::Buffer values = gk::Buffer::allocate(4 * sizeof(double)).as("d", {4});
  double* v = values.items<double>();
  v[0] = 1;
  v[1] = 2;
  v[2] = 4;
  v[3] = 8;
  if (auto n = rt.call("__main__:normalize", {values}); !n) {
    std::cerr << n.error().to_string() << "\n";
    return 1;
  }
  std::cout << "normalized in place: " << v[0] << " " << v[1] << " " << v[2] << " " << v[3] << "\n";
  return v[3] == 1.0 ? 0 : 1;
}
