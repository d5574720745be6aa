// SPDX-License-Identifier: Apache-2.0
// Test support: what operator new hands out while a meter is armed, and an allocator that runs out
// on demand. The replacement operators live in allocation_meter.cpp, linked only into the tests
// that use it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

namespace testing_support {

// Armed for its lifetime (one at a time): records the most bytes live at once among those
// allocated since, and throws std::bad_alloc from any allocation that would take more than `cap`.
class AllocationMeter {
public:
    explicit AllocationMeter(std::size_t cap = std::numeric_limits<std::size_t>::max());
    ~AllocationMeter();
    AllocationMeter(const AllocationMeter&) = delete;
    AllocationMeter& operator=(const AllocationMeter&) = delete;

    std::size_t peak() const noexcept;
    std::size_t refused() const noexcept;  // allocations refused for the cap

    // False where the thread sanitizer's runtime defines operator new, which a program may then
    // not replace: nothing is counted or refused.
    static bool available() noexcept;
};

}  // namespace testing_support
