// SPDX-License-Identifier: Apache-2.0
#include "platform/shm.hpp"

#include <fcntl.h>
#include <sys/mman.h>

namespace mprocess::platform {

Fd shm_open(const char* path, bool create) noexcept {
    const int flags = create ? O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC : O_RDWR | O_CLOEXEC;
    return Fd(::shm_open(path, flags, 0600));
}

bool shm_unlink(const char* path) noexcept {
    return ::shm_unlink(path) == 0;
}

}  // namespace mprocess::platform
