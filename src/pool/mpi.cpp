// SPDX-License-Identifier: Apache-2.0
// mpi::Pool: a PoolCore whose workers are MPI ranks.
//
// Rank 0 owns the Pool; each worker rank loops: probe for a message from rank 0, run it with the
// local Pool's task runner, send the answer back. A worker holds one task at a time, so a rank
// that answers is free and gets the next (dynamic scheduling). MPI runs with
// MPI_THREAD_SERIALIZED: in rank 0 every MPI call is made under one mutex, by the submitting
// thread (an idle rank takes a task straight from submit), a waiting thread (it reads its own
// answer when it comes), or the core's manager thread (everything else, and the callbacks). The
// Pool's lifecycle is the local Pool's (pool/core.hpp); this file is only the transport.
#include "mprocess/mpi.hpp"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "mprocess/context.hpp"
#include "mprocess/process.hpp"
#include "platform/process.hpp"
#include "pool/core.hpp"
#include "pool/task.hpp"

namespace mprocess::mpi {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kTagTask = 1;
constexpr int kTagAnswer = 2;
constexpr int kTagStop = 3;
constexpr int kTagHello = 4;

// A worker as rank 0 reaches it: in MPI_COMM_WORLD, or in the intercommunicator of a spawn.
struct Worker {
    MPI_Comm comm;
    int rank;
    int pid = 0;
};

struct World {
    bool started = false;
    std::string program;          // argv[0], for MPI_Comm_spawn
    std::vector<Worker> workers;  // rank 0: every worker it can use
    std::vector<MPI_Comm> spawned;
    std::weak_ptr<detail::PoolCore> live;  // the Pool using the ranks, if any
    int rank = 0, size = 1;
    std::mutex m;  // every MPI call in rank 0 once a Pool exists
};

World& world() {
    static auto* w = new World;  // never destroyed: the exit hook uses it
    return *w;
}

std::string mpi_error(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(code, text, &n);
    return std::string(text, static_cast<std::size_t>(n));
}

void check(int code, const char* what) {
    if (code != MPI_SUCCESS) throw ProcessError(std::string(what) + " failed: " + mpi_error(code));
}

void send_bytes(MPI_Comm comm, int rank, int tag, std::string_view bytes) {
    if (bytes.size() > static_cast<std::size_t>(INT_MAX))
        throw ValueError("a task or result of " + std::to_string(bytes.size()) +
                         " bytes: one MPI message holds at most 2 GiB");
    check(MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, rank, tag, comm), "MPI_Send");
}

std::string recv_bytes(MPI_Comm comm, MPI_Status& probed) {
    int n = 0;
    MPI_Get_count(&probed, MPI_BYTE, &n);
    std::string bytes(static_cast<std::size_t>(n), '\0');
    check(MPI_Recv(bytes.data(), n, MPI_BYTE, probed.MPI_SOURCE, probed.MPI_TAG, comm, MPI_STATUS_IGNORE), "MPI_Recv");
    return bytes;
}

bool probe(MPI_Comm comm, int source, int tag, MPI_Status& st) {
    int flag = 0;
    check(MPI_Iprobe(source, tag, comm, &flag, &st), "MPI_Iprobe");
    return flag != 0;
}

// A worker rank: tasks from rank 0 until it says stop. Probes spin for a while after each task
// and then sleep a little longer each time, so an idle rank leaves its CPU to the others.
[[noreturn]] void serve(MPI_Comm comm) {
    const int pid = static_cast<int>(platform::getpid());
    check(MPI_Send(&pid, 1, MPI_INT, 0, kTagHello, comm), "MPI_Send");
    auto last = Clock::now();
    std::string answer;
    for (;;) {
        MPI_Status st;
        int flag = 0;
        check(MPI_Iprobe(0, MPI_ANY_TAG, comm, &flag, &st), "MPI_Iprobe");
        if (!flag) {
            const auto idle = Clock::now() - last;
            if (idle > std::chrono::microseconds(200))
                std::this_thread::sleep_for(std::min<Clock::duration>(idle / 8, std::chrono::milliseconds(2)));
            continue;
        }
        std::string msg = recv_bytes(comm, st);
        if (st.MPI_TAG == kTagStop) break;
        detail::run_task_message(msg, answer);
        if (answer.size() > static_cast<std::size_t>(INT_MAX))
            answer = detail::failure_answer("ValueError", "a result of " + std::to_string(answer.size()) +
                                                              " bytes: one MPI message holds at most 2 GiB");
        send_bytes(comm, 0, kTagAnswer, answer);
        last = Clock::now();
    }
    if (comm != MPI_COMM_WORLD) MPI_Comm_disconnect(&comm);
    MPI_Finalize();
    std::exit(0);
}

// Rank 0 at exit: every worker is told to stop, then MPI ends.
void finish() {
    auto& w = world();
    if (auto core = w.live.lock()) core->terminate();  // a Pool still alive: its manager stops first
    std::lock_guard lock(w.m);
    for (auto& worker : w.workers) MPI_Send(nullptr, 0, MPI_BYTE, worker.rank, kTagStop, worker.comm);
    for (auto& c : w.spawned) MPI_Comm_disconnect(&c);
    MPI_Finalize();
}

// The pids the workers sent when they started.
void greet(std::vector<Worker>& workers) {
    for (auto& worker : workers)
        check(MPI_Recv(&worker.pid, 1, MPI_INT, worker.rank, kTagHello, worker.comm, MPI_STATUS_IGNORE), "MPI_Recv");
}

void spawn_workers(unsigned n) {
    auto& w = world();
    MPI_Comm inter;
    std::vector<int> codes(n);
    std::vector<char> program(w.program.begin(), w.program.end());
    program.push_back('\0');
    const int rc = MPI_Comm_spawn(program.data(), MPI_ARGV_NULL, static_cast<int>(n), MPI_INFO_NULL, 0, MPI_COMM_SELF,
                                  &inter, codes.data());
    if (rc != MPI_SUCCESS)
        throw ProcessError("MPI_Comm_spawn of " + std::to_string(n) + " workers failed (" + mpi_error(rc) +
                           "): this MPI cannot start processes from a program run alone; start it with mpirun -np " +
                           std::to_string(n + 1) + " instead");
    MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
    std::vector<Worker> fresh;
    for (unsigned i = 0; i < n; ++i) fresh.push_back(Worker{inter, static_cast<int>(i)});
    greet(fresh);
    w.spawned.push_back(inter);
    w.workers.insert(w.workers.end(), fresh.begin(), fresh.end());
}

// The transport: a slot per rank. Every MPI call here is made under world().m (the slot's reading
// lock too: one lock for all ranks).
class MpiPoolCore final : public detail::SlotCore {
public:
    explicit MpiPoolCore(std::vector<Worker> workers) : SlotCore(workers.size(), false), workers_(std::move(workers)) {}
    ~MpiPoolCore() override { terminate(); }
    using SlotCore::start_manager;

    std::vector<pid_t> pids() const override {
        std::vector<pid_t> out;
        for (const auto& w : workers_) out.push_back(w.pid);
        return out;
    }

private:
    bool can_take(std::size_t) override { return true; }
    std::uint64_t reserved(std::size_t) override { return 0; }

    void send(std::size_t i, const detail::Task& task, std::uint64_t) override {
        try {
            std::lock_guard mpi(world().m);
            send_bytes(workers_[i].comm, workers_[i].rank, kTagTask, *task.message);
        } catch (const std::exception&) {
            {
                std::lock_guard lock(m_);
                if (!slots_[i].current || slots_[i].current->st != task.st) return;
                slots_[i].current.reset();
            }
            detail::finish(*task.st, {}, std::current_exception());
        }
    }

    bool read_answer(std::size_t i) override {
        std::unique_lock mpi(world().m, std::try_to_lock);
        return mpi && take_answer(i, mpi);
    }

    // With the MPI mutex held: reads slot i's answer if it is there, and completes its task.
    bool take_answer(std::size_t i, std::unique_lock<std::mutex>& mpi) {
        MPI_Status st;
        if (!probe(workers_[i].comm, workers_[i].rank, kTagAnswer, st)) return false;
        std::string answer = recv_bytes(workers_[i].comm, st);
        answered(i, mpi, std::move(answer), workers_[i].pid);
        return true;
    }

    // Answers to look for: look again soon, then a little later each time, up to 1 ms. No
    // spinning: a thread waiting for a result spins and reads its own answer, and the ranks need
    // the CPUs more than this thread does. With nothing held, sleep until woken.
    void wait(bool holding, const Deadline& until) override {
        std::unique_lock lock(wake_m_);
        if (!holding) {
            woken_cv_.wait(lock, [&] { return woken_; });
        } else if (!got_) {
            const auto idle = Clock::now() - last_;
            auto nap =
                std::clamp<Clock::duration>(idle / 8, std::chrono::microseconds(20), std::chrono::milliseconds(1));
            if (until) nap = std::min<Clock::duration>(nap, std::max<Clock::duration>(*until - Clock::now(), {}));
            woken_cv_.wait_for(lock, nap, [&] { return woken_; });
        }
        woken_ = false;
        if (!holding) last_ = Clock::now();
    }

    void collect() override {
        got_ = false;
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            std::unique_lock mpi(world().m);
            got_ = take_answer(i, mpi) || got_;
        }
        if (got_) last_ = Clock::now();
    }

    void wake() override {
        {
            std::lock_guard lock(wake_m_);
            woken_ = true;
        }
        woken_cv_.notify_all();
    }

    void stop_workers() override {}  // the ranks serve the next Pool

    // Ranks cannot be interrupted: their tasks have failed, but their answers are read before
    // the manager ends, so that the ranks are clean for the next Pool.
    void halt_workers() noexcept override {
        try {
            while (busy()) {
                collect();
                if (!got_) std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
        } catch (const std::exception&) {
            // MPI failed (a rank's end is not survivable: see mpi.hpp): nothing more to read.
        }
    }

    // A rank cannot be stopped: a task past its timeout fails, and the rank answers it in its own time.
    bool stop_worker(std::size_t, bool) override { return false; }

    TaskReport worker_report(std::size_t i) const override {
        return TaskReport{.worker = "rank " + std::to_string(workers_[i].rank), .pid = workers_[i].pid};
    }

    const std::vector<Worker> workers_;
    // The manager's.
    Clock::time_point last_ = Clock::now();  // when an answer last came
    bool got_ = false;                       // the last collect() read an answer
    std::mutex wake_m_;
    std::condition_variable woken_cv_;
    bool woken_ = false;
};

std::shared_ptr<detail::PoolCore> make_core(std::optional<unsigned> n) {
    auto& w = world();
    if (!w.started) throw ValueError("call mp::mpi::freeze_support(argc, argv) first in main");
    // Held throughout: no Pool uses MPI now, and a second one made meanwhile must wait and fail.
    std::lock_guard lock(w.m);
    if (!w.live.expired()) throw ValueError("an mpi::Pool is alive already: the ranks serve one Pool at a time");
    const unsigned want =
        n.value_or(w.size > 1 ? static_cast<unsigned>(w.size - 1) : static_cast<unsigned>(process_cpu_count()));
    if (want == 0) throw ValueError("Number of processes must be at least 1");
    if (w.size > 1 && want > w.workers.size())
        throw ValueError("an mpi::Pool of " + std::to_string(want) + " workers, but this job has " +
                         std::to_string(w.workers.size()) + " other ranks: start it with mpirun -np " +
                         std::to_string(want + 1));
    if (w.size == 1 && want > w.workers.size()) spawn_workers(want - static_cast<unsigned>(w.workers.size()));
    auto core = std::make_shared<MpiPoolCore>(std::vector<Worker>(w.workers.begin(), w.workers.begin() + want));
    core->start_manager();
    w.live = core;
    return core;
}

unsigned workers_of(const std::shared_ptr<detail::PoolCore>& core) {
    return static_cast<unsigned>(core->pids().size());
}

}  // namespace

void freeze_support(int argc, char** argv) {
    mprocess::freeze_support(argc, argv);  // a spawned child runs its target and never returns here
    auto& w = world();
    if (w.started) return;
    // A program run alone (not by mpirun) may spawn more workers than there are cores, as a
    // local Pool may: Open MPI refuses that unless told.
    if (!std::getenv("OMPI_COMM_WORLD_SIZE")) ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);  // a failed spawn: an exception
    if (provided < MPI_THREAD_SERIALIZED)
        throw ProcessError("this MPI does not allow calls from more than one thread (MPI_THREAD_SERIALIZED)");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm parent = MPI_COMM_NULL;
    MPI_Comm_get_parent(&parent);
    if (parent != MPI_COMM_NULL) serve(parent);
    int me = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (me != 0) serve(MPI_COMM_WORLD);
    w.started = true;
    w.rank = me;
    w.size = size;
    w.program = argc > 0 && argv && argv[0] ? argv[0] : "";
    for (int r = 1; r < size; ++r) w.workers.push_back(Worker{MPI_COMM_WORLD, r});
    greet(w.workers);
    std::atexit(finish);
}

int rank() {
    return world().rank;
}

int size() {
    return world().size;
}

Pool::Pool(std::optional<unsigned> workers) : Pool(make_core(workers)) {}

Pool::Pool(const std::shared_ptr<detail::PoolCore>& core) : mprocess::Pool(core, workers_of(core)) {}

Pool::~Pool() = default;  // the base terminates; the ranks are free once the core is gone

}  // namespace mprocess::mpi
