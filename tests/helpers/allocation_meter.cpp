// SPDX-License-Identifier: Apache-2.0
// The program's operator new and delete, over malloc and free, metered while an AllocationMeter is
// armed. Every non-aligned form is replaced, so that no block crosses between these and the
// runtime's own (ASan reports such a crossing as a mismatch); the aligned forms keep the
// runtime's, unmetered. TSan's runtime defines them all and cannot be overridden: there, none is.
#include "helpers/allocation_meter.hpp"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

namespace testing_support {
namespace {

std::atomic<bool> armed{false};
std::atomic<std::int64_t> live{0};  // since armed: may go below 0 as older blocks are freed
std::atomic<std::int64_t> high{0};
std::atomic<std::int64_t> limit{0};
std::atomic<std::size_t> refusals{0};

}  // namespace

AllocationMeter::AllocationMeter(std::size_t cap) {
    live = 0;
    high = 0;
    refusals = 0;
    limit = static_cast<std::int64_t>(std::min<std::size_t>(cap, std::numeric_limits<std::int64_t>::max()));
    armed = true;
}

AllocationMeter::~AllocationMeter() {
    armed = false;
}

std::size_t AllocationMeter::peak() const noexcept {
    return static_cast<std::size_t>(high.load());
}

std::size_t AllocationMeter::refused() const noexcept {
    return refusals.load();
}

bool AllocationMeter::available() noexcept {
#if defined(__SANITIZE_THREAD__)
    return false;
#else
    return true;
#endif
}

}  // namespace testing_support

#if !defined(__SANITIZE_THREAD__)
namespace testing_support {
namespace {

void* allocate(std::size_t size) noexcept {
    const bool metered = armed.load(std::memory_order_relaxed);
    if (metered && live.load(std::memory_order_relaxed) + static_cast<std::int64_t>(size) >
                       limit.load(std::memory_order_relaxed)) {
        refusals.fetch_add(1, std::memory_order_relaxed);
        return nullptr;
    }
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p && metered) {
        const auto got = static_cast<std::int64_t>(::malloc_usable_size(p));
        const std::int64_t now = live.fetch_add(got, std::memory_order_relaxed) + got;
        std::int64_t seen = high.load(std::memory_order_relaxed);
        while (now > seen && !high.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
        }
    }
    return p;
}

void release(void* p) noexcept {
    if (!p) return;
    if (armed.load(std::memory_order_relaxed))
        live.fetch_sub(static_cast<std::int64_t>(::malloc_usable_size(p)), std::memory_order_relaxed);
    std::free(p);
}

void* allocate_or_throw(std::size_t size) {
    void* p = allocate(size);
    if (!p) throw std::bad_alloc();
    return p;
}

}  // namespace
}  // namespace testing_support

void* operator new(std::size_t size) {
    return testing_support::allocate_or_throw(size);
}
void* operator new[](std::size_t size) {
    return testing_support::allocate_or_throw(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    return testing_support::allocate(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    return testing_support::allocate(size);
}
void operator delete(void* p) noexcept {
    testing_support::release(p);
}
void operator delete[](void* p) noexcept {
    testing_support::release(p);
}
void operator delete(void* p, std::size_t) noexcept {
    testing_support::release(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    testing_support::release(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    testing_support::release(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    testing_support::release(p);
}
#endif
