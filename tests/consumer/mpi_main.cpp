// SPDX-License-Identifier: Apache-2.0
// Builds against the installed mprocess::mpi (find_package(mprocess COMPONENTS mpi)) and maps a
// few tasks over the ranks of its job.
#include <cstdio>
#include <vector>

#include <mprocess/mpi.hpp>

namespace mp = mprocess;

long square(long x) {
    return x * x;
}

int main(int argc, char** argv) {
    mp::mpi::freeze_support(argc, argv);
    mp::mpi::Pool pool;
    std::vector<long> xs{1, 2, 3, 4, 5, 6, 7, 8};
    long sum = 0;
    for (long y : pool.map(square, xs)) sum += y;
    bool ok = sum == 204;
    std::printf("consumer_mpi %s: sum of squares %ld on %u workers\n", ok ? "ok" : "FAILED", sum, pool.processes());
    return ok ? 0 : 1;
}
