// SPDX-License-Identifier: Apache-2.0
// The resource tracker: unlinks the named shared memory blocks a process created and did not
// unlink, once that process and every process that inherited the tracker from it have ended.
#pragma once

#include <string>

namespace mprocess::detail {

// Registers a name this process created (starting the tracker on first use); unregisters it.
void tracker_register(const std::string& name);
void tracker_unregister(const std::string& name) noexcept;

// In a child just forked, before it starts threads: closes the tracker's pipe inherited from the
// parent, so that the tracker does not wait for this process too once the parent's family has
// ended (a manager's server, which makes no named block). A block registered later starts a
// tracker of its own.
void tracker_leave() noexcept;

}  // namespace mprocess::detail
