// SPDX-License-Identifier: Apache-2.0
// The work of pool_pi and mpi_pi: of n random points in the unit square, how many fall inside the
// quarter circle. Each task has its own seed, so the estimate is the same however tasks are spread.
#pragma once

#include <cstdint>

inline long pi_hits(std::uint64_t seed, long n) {
    std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;  // xorshift64*, seeded apart per task
    auto next = [&s] {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return static_cast<double>((s * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
    };
    long hits = 0;
    for (long i = 0; i < n; ++i) {
        const double x = next(), y = next();
        hits += x * x + y * y <= 1.0;
    }
    return hits;
}
