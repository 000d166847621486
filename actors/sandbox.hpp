#pragma once

/// The kernel-level part of the capability rules, for worker processes.
///
/// Audit hooks are not a sandbox (PEP 578 says so): native code can make
/// system calls directly. In process isolation a worker therefore also sets
/// `no_new_privs` and installs a seccomp filter (libseccomp) backing the
/// same policy, where a denied system call fails with EPERM (never kills):
/// - `fork` denied: the `fork` system call, and `clone` without
///   `CLONE_THREAD` or `CLONE_VFORK` (a plain fork); `clone3` answers ENOSYS
///   so that glibc falls back to `clone`, whose flags seccomp can read.
///   Threads keep working, and so does vfork+exec (posix_spawn, Python's
///   subprocess and multiprocessing's spawn), which is fork-safe.
/// - `subprocess` denied: `execve` and `execveat` (and `vfork`).
/// - `network` denied: `socket` for every family but `AF_UNIX` (and
///   `AF_NETLINK`, used by the C library). `"loopback"` cannot be checked by
///   seccomp (addresses sit behind pointers): it is left to the audit hook.

#include "gilkeeper/config/config.hpp"

#include <string>

namespace gk {

/// Applies the seccomp filter for `caps` to the calling process (all its
/// threads that start afterwards, and the current one). Returns an empty
/// string on success, else what failed. Call before starting threads.
std::string apply_sandbox(const CapabilitiesConfig& caps);

} // namespace gk
