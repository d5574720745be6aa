// The resource tracker: unlinks the named shared memory blocks a process created and did not
// unlink, once that process and every process that inherited the tracker from it have ended.
#pragma once

#include <string>

namespace mprocess::detail {

// Registers a name this process created (starting the tracker on first use); unregisters it.
void tracker_register(const std::string& name);
void tracker_unregister(const std::string& name) noexcept;

}  // namespace mprocess::detail
