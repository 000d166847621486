// The actor system of a server or client of remote runtimes, endpoints and
// TLS files.

#include "net/detail/caf_setup.hpp"

#include "gilkeeper/runtime/runtime.hpp"

#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include <charconv>
#include <fstream>

namespace gk {

Expected<std::pair<std::string, std::uint16_t>> parse_endpoint(const std::string& endpoint) {
  auto bad = [&](const std::string& why) {
    Error e(ErrorCode::bad_request, "\"" + endpoint + "\" is not host:port: " + why);
    e.where = "endpoint";
    return Expected<std::pair<std::string, std::uint16_t>>(e);
  };
  auto colon = endpoint.rfind(':');
  if (colon == std::string::npos)
    return bad("no port");
  std::string host = endpoint.substr(0, colon);
  std::string port_text = endpoint.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty())
    return bad("no host");
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 || port_text.empty())
    return bad("the port must be a number from 0 to 65535");
  return std::make_pair(host, static_cast<std::uint16_t>(port));
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

namespace detail {

Error check_tls_files(const TlsFiles& tls, const char* certificate_option, const char* key_option,
                      const char* ca_option) {
  if (!tls.enabled())
    return Error();
  const std::pair<const std::string*, const char*> files[] = {
      {&tls.certificate, certificate_option}, {&tls.key, key_option}, {&tls.ca, ca_option}};
  for (auto& [path, option] : files) {
    if (path->empty()) {
      Error e(ErrorCode::bad_request, std::string("TLS needs all three of ") + certificate_option + ", " + key_option
                                          + " and " + ca_option + " (mutual TLS: each side presents a certificate "
                                          "signed by the CA); " + option + " is missing");
      e.where = option;
      return e;
    }
  }
  for (auto& [path, option] : files) {
    std::ifstream in(*path);
    if (!in) {
      Error e(ErrorCode::bad_request, std::string("cannot read ") + option + " " + *path);
      e.where = option;
      return e;
    }
  }
  return Error();
}

std::unique_ptr<caf::actor_system_config> network_config(const TlsFiles& tls) {
  auto cfg = std::make_unique<caf::actor_system_config>();
  cfg->set("scheduler.max-threads", std::size_t{2});
  cfg->load<caf::io::middleman>();
  if (tls.enabled()) {
    cfg->load<caf::openssl::manager>();
    cfg->openssl_certificate = tls.certificate;
    cfg->openssl_key = tls.key;
    cfg->openssl_cafile = tls.ca;
  }
  configure_actor_system(*cfg);
  return cfg;
}

} // namespace detail
} // namespace gk
