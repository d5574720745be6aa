// SPDX-License-Identifier: Apache-2.0
// Named POSIX shared memory: objects in /dev/shm that another process opens by name (anonymous
// blocks are memfds, posix.hpp). `path` is the name with its leading '/'.
#pragma once

#include "platform/posix.hpp"

namespace mprocess::platform {

// shm_open() of an object for reading and writing, close-on-exec. With `create`, a new object
// (mode 0600), never an existing one. An invalid Fd, errno set, on failure, so that the caller
// tells a taken or missing name from other errors.
Fd shm_open(const char* path, bool create) noexcept;

// shm_unlink(); false, errno set, on failure. Async-signal-safe: the resource tracker calls it in a
// child forked from a process that may have threads.
bool shm_unlink(const char* path) noexcept;

}  // namespace mprocess::platform
