// SPDX-License-Identifier: Apache-2.0
// Monte-Carlo pi on mpi::Pool: the same tasks as pool_pi, on MPI ranks, here or across hosts.
//     mpirun -np 4 mpi_pi [samples]                   3 workers
//     mpirun -np 16 --hostfile hosts mpi_pi           15, on the hosts the file lists
//     mpi_pi [samples]                                alone: it spawns cpu_count() workers
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <vector>

#include <mprocess/mpi.hpp>

#include "pi_hits.hpp"

namespace mp = mprocess;

int main(int argc, char** argv) {
    mp::mpi::freeze_support(argc, argv);  // the worker ranks serve the tasks from here
    const long samples = argc > 1 ? std::atol(argv[1]) : 200'000'000;
    const long tasks = 64;
    std::vector<std::tuple<std::uint64_t, long>> jobs;
    for (long t = 0; t < tasks; ++t) jobs.emplace_back(t, samples / tasks);
    mp::mpi::Pool pool;
    const auto t0 = std::chrono::steady_clock::now();
    long hits = 0;
    for (long h : pool.starmap(pi_hits, jobs, 1)) hits += h;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("pi ~ %.6f from %ld samples on %u MPI workers in %.2f s\n",
                4.0 * static_cast<double>(hits) / static_cast<double>(tasks * (samples / tasks)),
                tasks * (samples / tasks), pool.processes(), s);
}
