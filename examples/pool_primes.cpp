// SPDX-License-Identifier: Apache-2.0
// A CPU-bound map: count the primes below N by trial division, split into ranges, once in this
// process and once over a Pool, with a progress line, then print the speedup.
//
//     pool_primes [N] [workers]      (N = 10000000, workers = cpu_count() by default)
//
// On a terminal the progress is one live line; piped into a file it is a plain line per tenth.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <utility>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

bool is_prime(unsigned n) {
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (unsigned d = 3; d * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}

// The primes in [from, to).
long count_primes(std::pair<unsigned, unsigned> range) {
    long count = 0;
    for (unsigned n = range.first; n < range.second; ++n) count += is_prime(n);
    return count;
}

long total(const std::vector<long>& counts) {
    long sum = 0;
    for (long c : counts) sum += c;
    return sum;
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    const unsigned n = argc > 1 ? static_cast<unsigned>(std::strtoul(argv[1], nullptr, 10)) : 10'000'000;
    const unsigned workers = argc > 2 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)) : mp::cpu_count();
    constexpr unsigned parts = 64;  // small enough to keep every worker busy to the end
    std::vector<std::pair<unsigned, unsigned>> ranges;
    for (unsigned i = 0; i < parts; ++i) ranges.emplace_back(n / parts * i, i + 1 == parts ? n : n / parts * (i + 1));

    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    std::vector<long> alone;
    mp::ProgressLine one("one process");
    one(0, parts);
    for (const auto& r : ranges) {
        alone.push_back(count_primes(r));
        one(alone.size(), parts);
    }
    const double t_alone = std::chrono::duration<double>(clock::now() - t0).count();

    mp::Pool pool(workers);
    t0 = clock::now();
    auto counts = pool.map(count_primes, ranges, 1, mp::ProgressLine("pool of " + std::to_string(workers)));
    const double t_pool = std::chrono::duration<double>(clock::now() - t0).count();

    std::cout << "primes below " << n << ": " << total(counts) << (total(counts) == total(alone) ? "" : " (MISMATCH)")
              << "\none process: " << t_alone << " s\npool of " << workers << " processes: " << t_pool
              << " s\nspeedup: " << t_alone / t_pool << "x on " << mp::cpu_count() << " cpus" << std::endl;
    return total(counts) == total(alone) ? 0 : 1;
}
