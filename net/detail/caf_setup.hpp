#pragma once

// Internal: the actor system of a server or a client of remote runtimes:
// CAF's middleman, its OpenSSL module when TLS is on, and gilkeeper's
// message vocabulary.

#include "gilkeeper/interop/error.hpp"
#include "gilkeeper/net/remote.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <memory>
#include <string>

namespace gk::detail {

/// An unreadable TLS file named, or an incomplete set refused; none when
/// TLS is off or all three are readable.
Error check_tls_files(const TlsFiles& tls, const char* certificate_option, const char* key_option,
                      const char* ca_option);

/// A config for a network actor system.
std::unique_ptr<caf::actor_system_config> network_config(const TlsFiles& tls);

} // namespace gk::detail
