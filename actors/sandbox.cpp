#include "actors/sandbox.hpp"

#include <cerrno>
#include <cstring>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>

namespace gk {

std::string apply_sandbox(const CapabilitiesConfig& caps) {
  bool deny_fork = !caps.fork;
  bool deny_exec = !caps.subprocess;
  bool deny_net = caps.network == NetworkPolicy::deny;
  if (!deny_fork && !deny_exec && !deny_net)
    return {};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + std::strerror(errno);
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx)
    return "seccomp_init failed";
  int rc = 0;
  auto add = [&](std::uint32_t action, int syscall, unsigned count, const scmp_arg_cmp* args) {
    if (rc == 0)
      rc = seccomp_rule_add_array(ctx, action, syscall, count, args);
  };
  const auto eperm = SCMP_ACT_ERRNO(EPERM);
  if (deny_fork || deny_exec) {
    // clone3 keeps its flags behind a pointer: make glibc fall back to clone.
    add(SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, nullptr);
  }
  if (deny_fork) {
    add(eperm, SCMP_SYS(fork), 0, nullptr);
    // clone without CLONE_THREAD and without CLONE_VFORK is a fork.
    scmp_arg_cmp plain_fork[] = {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD | CLONE_VFORK, 0)};
    add(eperm, SCMP_SYS(clone), 1, plain_fork);
  }
  if (deny_exec) {
    add(eperm, SCMP_SYS(execve), 0, nullptr);
    add(eperm, SCMP_SYS(execveat), 0, nullptr);
    add(eperm, SCMP_SYS(vfork), 0, nullptr);
  }
  if (deny_net) {
    // One rule per forbidden family: AF_UNIX (and AF_NETLINK, which the C
    // library uses for interface queries) stay allowed.
    for (int family : {AF_INET, AF_INET6, AF_PACKET, AF_X25, AF_AX25, AF_IPX, AF_APPLETALK, AF_NETROM,
                       AF_BRIDGE, AF_ATMPVC, AF_ROSE, AF_DECnet, AF_NETBEUI, AF_SECURITY, AF_KEY,
                       AF_ATMSVC, AF_RDS, AF_SNA, AF_IRDA, AF_PPPOX, AF_WANPIPE, AF_LLC, AF_IB, AF_MPLS,
                       AF_CAN, AF_TIPC, AF_BLUETOOTH, AF_IUCV, AF_RXRPC, AF_ISDN, AF_PHONET, AF_IEEE802154,
                       AF_CAIF, AF_ALG, AF_NFC, AF_VSOCK, AF_KCM, AF_QIPCRTR, AF_SMC, AF_XDP}) {
      scmp_arg_cmp fam[] = {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))};
      add(eperm, SCMP_SYS(socket), 1, fam);
    }
  }
  if (rc == 0)
    rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0)
    return std::string("seccomp: ") + std::strerror(-rc);
  return {};
}

} // namespace gk
