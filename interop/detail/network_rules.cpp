// The capability rule on the network (network = false | "loopback"): sockets,
// the addresses they reach, and name resolution.

#include "interop/detail/capability_policy.hpp"

#include <arpa/inet.h>
#include <cctype>
#include <netinet/in.h>
#include <sys/socket.h>

namespace gk::detail {

namespace {

bool loopback_host(std::string host) {
  if (auto pct = host.find('%'); pct != std::string::npos)
    host.resize(pct);  // an IPv6 zone
  for (auto& c : host)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (host == "localhost")
    return true;
  in_addr v4;
  if (::inet_aton(host.c_str(), &v4) != 0)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6))
      return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

std::string host_of(PyObject* o) {
  if (o && PyBytes_Check(o))
    return std::string(PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
  return utf8(o);
}

} // namespace

// socket.connect/bind/sendto/sendmsg: (socket, address).
int check_address(CapabilityPolicy& p, const char* event, PyObject* address) {
  if (!address || address == Py_None || PyUnicode_Check(address) || PyBytes_Check(address)
      || PyByteArray_Check(address))
    return 0;  // no address (a connected socket) or an AF_UNIX path
  std::string host;
  if (PyTuple_Check(address) && PyTuple_GET_SIZE(address) >= 1)
    host = host_of(PyTuple_GET_ITEM(address, 0));
  if (p.caps.network == NetworkPolicy::loopback && !host.empty() && loopback_host(host))
    return 0;
  PyRef repr = PyRef::steal(PyObject_Repr(address));
  std::string shown = repr ? utf8(repr.get()) : std::string("?");
  PyErr_Clear();
  return deny(p, "network", shown,
              std::string(event) + " to " + shown
                  + (p.caps.network == NetworkPolicy::loopback ? " (network = \"loopback\": only 127.0.0.0/8, ::1 "
                                                                 "and localhost)"
                                                               : " (network = false)"));
}

int check_socket_new(CapabilityPolicy& p, PyObject* args) {
  long family = -1;
  if (PyObject* f = arg(args, 1); f && PyLong_Check(f))
    family = PyLong_AsLong(f);
  PyErr_Clear();
  if (family == AF_UNIX)
    return 0;
  if (p.caps.network == NetworkPolicy::loopback && (family == AF_INET || family == AF_INET6))
    return 0;  // what it may reach is checked at connect/bind/sendto
  std::string shown = family == AF_INET ? "AF_INET" : family == AF_INET6 ? "AF_INET6"
                      : family == -1    ? "an inherited descriptor of unknown family"
                                        : "family " + std::to_string(family);
  return deny(p, "network", "socket(" + shown + ")",
              "creating a socket of " + shown
                  + (p.caps.network == NetworkPolicy::loopback ? " (network = \"loopback\")" : " (network = false)"));
}

// Name resolution is network traffic (DNS) unless it names the loopback.
int check_lookup(CapabilityPolicy& p, const char* event, PyObject* host_obj) {
  std::string host = host_of(host_obj);
  if (p.caps.network == NetworkPolicy::loopback && (!host_obj || host_obj == Py_None || loopback_host(host)))
    return 0;
  PyErr_Clear();
  std::string shown = host_obj && host_obj != Py_None ? host : std::string("None");
  return deny(p, "network", shown,
              std::string(event) + " of " + quoted(shown)
                  + (p.caps.network == NetworkPolicy::loopback ? " (network = \"loopback\")" : " (network = false)"));
}

} // namespace gk::detail
