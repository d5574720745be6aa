// SPDX-License-Identifier: Apache-2.0
// The code a process may be asked, by message, to enter.
//
// A spawned child, a pool worker or an MPI rank is told what to run as a code address (see
// src/start/code_symbol.hpp). Before it calls one as an entry point, it checks that this binary
// registered that address: every instantiation the library makes of an entry point (spawn_entry,
// the pool's invokers, a Barrier action's makers) registers itself during static initialization,
// in every process that runs the binary, so the list is the same on both ends and complete before
// main(). Anything else a message names is refused.
#pragma once

#include "mprocess/export.hpp"

namespace mprocess {
namespace detail {
template <auto F>
struct EntryPoint;
}

/// The list of entry points, which only the library's own entry point templates may add to.
class MPROCESS_EXPORT EntryPoints {
    template <auto F>
    friend struct detail::EntryPoint;
    // Adds `code` (lock-free: it may run during static initialization of any object, and lookups
    // may run in a child forked from a threaded process). Returns true.
    static bool add(const void* code) noexcept;
};

namespace detail {

template <auto F>
struct EntryPoint {
    static inline const bool registered = EntryPoints::add(reinterpret_cast<const void*>(F));
};

// F, registered as an entry point. Naming EntryPoint<F>::registered here instantiates it, which
// runs its registration at start-up wherever this function template is used.
template <auto F>
decltype(F) entry_point() noexcept {
    static_cast<void>(EntryPoint<F>::registered);
    return F;
}

}  // namespace detail
}  // namespace mprocess
