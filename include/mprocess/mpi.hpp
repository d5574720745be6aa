// SPDX-License-Identifier: Apache-2.0
/// @file
/// mprocess::mpi: the Pool's API over MPI ranks, for programs that outgrow one machine, as
/// mpi4py.futures does for Python. Built when CMake finds MPI (MPROCESS_WITH_MPI=AUTO|ON|OFF);
/// link mprocess::mpi.
///
/// @code{.cpp}
/// int main(int argc, char** argv) {
///     mp::mpi::freeze_support(argc, argv);  // first in main: the worker ranks serve here
///     mp::mpi::Pool pool;                   // every other rank of the job
///     auto squares = pool.map(square, xs);  // map, imap, imap_unordered, starmap, apply_async...
/// }
/// @endcode
///
/// @verbatim
/// mpirun -np 4 ./prog                        three workers on this machine
/// mpirun -np 16 --hostfile hosts ./prog     fifteen, across the hosts
/// ./prog                                     one process: mpi::Pool(n) spawns n workers
/// @endverbatim
///
/// Every rank runs the same binary, so tasks are plain functions (or lambdas without captures)
/// found again in each rank as under spawn; arguments and results use the same encoding as the
/// local Pool, sent in one message each, straight from and into their buffers. A task's exception
/// comes back as RemoteError. A rank is free once it answers, and takes the next task then (dynamic
/// scheduling); maps are cut into chunks as by Pool.
///
/// What survives: an exception in a task (RemoteError; the rank serves on). What does not: a rank
/// that dies (a crash, a kill, exit() in a task). Open MPI's runtime then ends the whole job, rank 0
/// included, with its own message: the caller never hangs, but it cannot carry on either. A Pool
/// that must survive lost workers belongs on one machine (mp::Pool replaces them).
#pragma once

#include "mprocess/export.hpp"

#include <optional>

#include "mprocess/pool.hpp"

/// The Pool over MPI ranks (mpi.hpp), and what a program needs to serve as one of them.
namespace mprocess::mpi {

/// Starts MPI, after mp::freeze_support's guard for spawn. In a worker rank (a rank other than 0
/// under mpirun, or a worker spawned by a Pool) it serves tasks until rank 0 finishes, then ends
/// the process: it never returns there. In rank 0 it returns; MPI is finalized when it exits.
MPROCESS_EXPORT void freeze_support(int argc, char** argv);

/// This process's rank in MPI_COMM_WORLD; 0 before freeze_support().
MPROCESS_EXPORT int rank();
/// The job's size (MPI_COMM_WORLD); 1 before freeze_support().
MPROCESS_EXPORT int size();

/// The local Pool's API (map, imap, starmap, apply_async, ...) with MPI ranks as its workers.
class MPROCESS_EXPORT Pool : public mprocess::Pool {
public:
    /// workers: how many ranks serve it. Default: every other rank of the job; in a job of one
    /// process, process_cpu_count() workers started with MPI_Comm_spawn. Under mpirun, more than the job's
    /// other ranks is a ValueError; where MPI_Comm_spawn fails, ProcessError says so.
    /// One mpi::Pool at a time (a second one while the first lives is a ValueError).
    /// terminate() and the destructor fail unfinished tasks at once, but a rank cannot be
    /// interrupted: they return when the tasks the ranks hold have ended.
    explicit Pool(std::optional<unsigned> workers = std::nullopt);
    /// Fails the unfinished tasks and returns once the ranks have ended the ones they hold.
    ~Pool() override;
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

private:
    MPROCESS_NO_EXPORT explicit Pool(const std::shared_ptr<detail::PoolCore>& core);
};

}  // namespace mprocess::mpi
