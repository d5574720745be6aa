// SPDX-License-Identifier: Apache-2.0
// What the library's own parts read of a Process beyond its public API.
#pragma once

#include <cstdint>

#include "mprocess/process.hpp"

namespace mprocess::detail {

struct ProcessAccess {
    // The child's peak resident memory in bytes, known once it has been reaped; 0 before, or if
    // it cannot be known.
    static std::uint64_t peak_rss(const Process& p);
};

}  // namespace mprocess::detail
