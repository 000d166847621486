#pragma once

/// Internal to interop/: the capability rules of `[capabilities]`, enforced
/// by a C-level audit hook (PEP 578), and the fork-safe defaults of
/// `multiprocessing`. See docs/capabilities.md for the rules.
///
/// Lifetime, per interpreter:
///   1. `install_capability_hook(policy)` before `Py_InitializeFromConfig`
///      (CPython clears C-level audit hooks in `Py_FinalizeEx`, so every
///      interpreter start adds the hook again; its userData is the policy);
///   2. start-up imports run unchecked;
///   3. `activate_capabilities(policy)` at the end of start-up: from here on
///      every rule is enforced, in every Python thread;
///   4. `Py_FinalizeEx` (the rules still hold while atexit handlers run);
///   5. `retire_capabilities()`.
/// The policy object stays alive in a process-wide slot until the next
/// `install_capability_hook` (so an interpreter that could not be finalized
/// keeps being policed).
///
/// This header does not include Python.h.

#include "gilkeeper/config/config.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace gk::detail {

/// The compiled rules of one interpreter, and its denial counter.
class CapabilityPolicy;

/// Compiles `caps`. Thread-safe.
std::shared_ptr<CapabilityPolicy> make_capability_policy(const CapabilitiesConfig& caps);

/// True when the policy restricts anything (otherwise no hook is needed).
bool restricts_anything(const CapabilityPolicy& policy) noexcept;

/// Adds the audit hook for the interpreter about to start, pointing at
/// `policy` (inactive until `activate_capabilities`), and keeps the policy
/// alive. PRECONDITION: Python not initialised; called by the thread that
/// starts it.
void install_capability_hook(std::shared_ptr<CapabilityPolicy> policy);

/// Starts enforcing: snapshots the modules loaded during start-up (they stay
/// importable) and resolves the write directories. Returns false with a
/// Python error set on failure. PRECONDITION: GIL held, end of start-up.
bool activate_capabilities(CapabilityPolicy& policy);

/// Stops enforcing (the interpreter is gone). Thread-safe. PRECONDITION:
/// after `Py_FinalizeEx`, or when start-up failed.
void retire_capabilities() noexcept;

/// Denials so far. Thread-safe (an atomic counter).
std::uint64_t capability_denials(const CapabilityPolicy& policy) noexcept;

/// Makes `multiprocessing` start its processes with the "spawn" method by
/// default (an exec of `sys.executable`, never a bare fork of this threaded
/// process), lazily: a tiny meta-path finder adjusts the module when it is
/// first imported, so start-up does not pay for importing it. Also makes
/// multiprocessing's helper processes (resource tracker, forkserver) stop
/// when the interpreter finalizes. Returns false with a Python error set.
/// PRECONDITION: GIL held, during start-up.
bool install_multiprocessing_defaults(const CapabilityPolicy& policy);

} // namespace gk::detail
