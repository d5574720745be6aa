// mpi::Pool: a PoolCore whose workers are MPI ranks.
//
// Rank 0 owns the Pool; each worker rank loops: probe for a message from rank 0, run it with the
// local Pool's task runner, send the answer back. A worker holds one task at a time, so a rank
// that answers is free and gets the next (dynamic scheduling). MPI runs with
// MPI_THREAD_SERIALIZED: in rank 0 every MPI call is made under one mutex, by the submitting
// thread (an idle rank takes a task straight from submit), a waiting thread (it reads its own
// answer when it comes), or the core's manager thread (everything else, and the callbacks).
#include "mprocess/mpi.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

#include "mprocess/context.hpp"
#include "mprocess/process.hpp"

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
    const int pid = static_cast<int>(::getpid());
    check(MPI_Send(&pid, 1, MPI_INT, 0, kTagHello, comm), "MPI_Send");
    auto last = Clock::now();
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
        std::string answer = detail::run_task_message(msg);
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

struct Task {
    std::string message;
    std::shared_ptr<detail::TaskState> st;
};

class MpiPoolCore final : public detail::PoolCore {
public:
    explicit MpiPoolCore(std::vector<Worker> workers) : slots_(workers.size()) {
        for (std::size_t i = 0; i < workers.size(); ++i) slots_[i].worker = workers[i];
    }
    ~MpiPoolCore() override { terminate(); }

    void run() {
        manager_running_ = true;
        manager_ = std::thread([this] { manage(); });
    }

    std::string head(detail::Invoker invoker, void* fn) override { return detail::task_message_head(invoker, fn); }

    std::shared_ptr<detail::TaskState> submit(std::string message) override {
        auto st = std::make_shared<detail::TaskState>();
        st->pool = this;
        st->core = weak_from_this();
        std::optional<std::size_t> slot;
        bool wake;
        {
            std::lock_guard lock(m_);
            if (closed_ || terminated_) throw ValueError("Pool not running");
            if (!broken_.empty()) throw BrokenPool(broken_);
            if (pending_.empty()) slot = idle_slot();
            if (slot) {
                slots_[*slot].current = Task{std::move(message), st};
                st->started = true;
                st->slot.store(static_cast<int>(*slot));
            } else {
                pending_.push_back(Task{std::move(message), st});
            }
            // A manager asleep with nothing to watch must now look for the answer: the waiting
            // thread reads it itself only for the first moments.
            wake = !slot || manager_idle_;
        }
        if (slot) send(*slot);
        if (wake) cv_.notify_all();
        return st;
    }

    bool try_read_answer(detail::TaskState& st) override {
        const int slot = st.slot.load(std::memory_order_acquire);
        if (slot < 0) return false;
        std::unique_lock mpi(world().m, std::try_to_lock);
        return mpi && collect(static_cast<std::size_t>(slot), mpi);
    }

    bool post(std::function<void()> fn) override {
        {
            std::lock_guard lock(m_);
            if (!manager_running_) return false;
            posted_.push_back(std::move(fn));
        }
        cv_.notify_all();
        return true;
    }

    bool cancel(const std::shared_ptr<detail::TaskState>& st) override {
        std::deque<Task> taken;
        {
            std::lock_guard lock(m_);
            if (st) {
                auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Task& t) { return t.st == st; });
                if (it == pending_.end()) return false;
                taken.push_back(std::move(*it));
                pending_.erase(it);
            } else {
                taken.swap(pending_);
            }
        }
        for (auto& t : taken) detail::cancel_unstarted(*t.st);
        return true;
    }

    void close() override {
        {
            std::lock_guard lock(m_);
            closed_ = true;
        }
        cv_.notify_all();
    }

    void join() override {
        {
            std::lock_guard lock(m_);
            if (!closed_ && !terminated_) throw ValueError("join() of a Pool that is still running: close() it first");
        }
        if (on_manager()) throw ValueError("join() of a Pool in one of its own callbacks would never end");
        std::lock_guard lock(lifecycle_m_);
        if (manager_.joinable()) manager_.join();
    }

    // Ranks cannot be interrupted: the tasks they hold fail at once, but the manager reads
    // their answers before it ends, so that the ranks are clean for the next Pool.
    void terminate() noexcept override {
        {
            std::lock_guard lock(m_);
            terminated_ = true;
        }
        cv_.notify_all();
        if (on_manager()) return;
        std::lock_guard lock(lifecycle_m_);
        if (manager_.joinable()) manager_.join();
    }

    std::vector<int> pids() const override {
        std::vector<int> out;
        for (const auto& s : slots_) out.push_back(s.worker.pid);
        return out;
    }

private:
    bool on_manager() const { return manager_id_.load() == std::this_thread::get_id(); }

    struct Slot {
        Worker worker;
        std::optional<Task> current;  // under m_
    };

    // Under m_.
    std::optional<std::size_t> idle_slot() const {
        for (std::size_t i = 0; i < slots_.size(); ++i)
            if (!slots_[i].current) return i;
        return std::nullopt;
    }

    void send(std::size_t i) {
        Slot& s = slots_[i];
        std::string_view msg;
        {
            std::lock_guard lock(m_);
            if (!s.current) return;
            msg = s.current->message;  // stays put until the answer comes: only this slot's answer clears it
        }
        try {
            std::lock_guard mpi(world().m);
            send_bytes(s.worker.comm, s.worker.rank, kTagTask, msg);
        } catch (const std::exception&) {
            fail_slot(i, std::current_exception());
        }
    }

    void fail_slot(std::size_t i, std::exception_ptr error) {
        std::optional<Task> t;
        {
            std::lock_guard lock(m_);
            t = std::move(slots_[i].current);
            slots_[i].current.reset();
        }
        if (t) detail::finish(*t->st, {}, error);
    }

    // With the MPI mutex held: reads slot i's answer if it is there, and completes its task.
    bool collect(std::size_t i, std::unique_lock<std::mutex>& mpi) {
        Slot& s = slots_[i];
        MPI_Status st;
        if (!probe(s.worker.comm, s.worker.rank, kTagAnswer, st)) return false;
        std::string answer = recv_bytes(s.worker.comm, st);
        mpi.unlock();
        std::optional<Task> t;
        bool next = false;
        {
            std::lock_guard lock(m_);
            t = std::move(s.current);
            s.current.reset();
            if (!t) return true;
            t->st->slot.store(-1);  // a late reader must not read this rank's next answer
            // The rank is free: the next pending task goes to it. (If none does, a submit may
            // take the rank and send to it itself: only who assigns a task sends it.)
            if (!pending_.empty() && !terminated_) {
                s.current = std::move(pending_.front());
                pending_.pop_front();
                s.current->st->started = true;
                s.current->st->slot.store(static_cast<int>(i));
                next = true;
            }
        }
        detail::finish_with_answer(*t->st, std::move(answer), s.worker.pid);
        if (next) send(i);
        return true;
    }

    // Tasks waiting while ranks are idle (submitted while all were busy, then freed): sent now.
    void dispatch() {
        std::vector<std::size_t> to_send;
        {
            std::lock_guard lock(m_);
            while (!pending_.empty() && !terminated_) {
                auto slot = idle_slot();
                if (!slot) break;
                slots_[*slot].current = std::move(pending_.front());
                pending_.pop_front();
                slots_[*slot].current->st->started = true;
                slots_[*slot].current->st->slot.store(static_cast<int>(*slot));
                to_send.push_back(*slot);
            }
        }
        for (auto i : to_send) send(i);
    }

    void run_posted() {
        std::deque<std::function<void()>> todo;
        {
            std::lock_guard lock(m_);
            todo.swap(posted_);
        }
        for (const auto& fn : todo) detail::run_callback(fn);
    }

    bool busy() {
        std::lock_guard lock(m_);
        return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return bool(s.current); });
    }

    void manage() {
        detail::mark_callback_thread(this);
        manager_id_ = std::this_thread::get_id();
        try {
            serve();
        } catch (const std::exception& e) {
            // MPI failed here (a rank's end is not survivable: see mpi.hpp): every task fails.
            {
                std::lock_guard lock(m_);
                broken_ = std::string("the MPI Pool broke: ") + e.what();
                terminated_ = true;
            }
            abandon(std::make_exception_ptr(BrokenPool(broken_)));
            for (auto& s : slots_) {
                std::lock_guard lock(m_);
                s.current.reset();
            }
        }
        std::deque<std::function<void()>> left;
        {
            std::lock_guard lock(m_);
            manager_running_ = false;
            left.swap(posted_);
        }
        for (const auto& fn : left) detail::run_callback(fn);
    }

    void serve() {
        auto last = Clock::now();
        for (;;) {
            run_posted();
            bool stop, terminated;
            {
                std::lock_guard lock(m_);
                terminated = terminated_;
                stop = terminated_ || (closed_ && pending_.empty());
            }
            if (terminated)
                abandon(std::make_exception_ptr(ValueError("the Pool was terminated before the task finished")));
            dispatch();
            bool got = false;
            for (std::size_t i = 0; i < slots_.size(); ++i) {
                std::unique_lock mpi(world().m);
                got = collect(i, mpi) || got;
            }
            if (got) last = Clock::now();
            const bool working = busy();
            if (stop && !working) break;
            std::unique_lock lock(m_);
            const bool held = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return bool(s.current); });
            if (!held && pending_.empty() && posted_.empty() && !closed_ && !terminated_) {
                manager_idle_ = true;  // nothing to look for until someone submits
                cv_.wait(lock);
                manager_idle_ = false;
                last = Clock::now();
            } else if (!got && posted_.empty()) {
                // Answers to look for: look again soon, then a little later each time, up to
                // 1 ms. No spinning: a thread waiting for a result spins and reads its own
                // answer, and the ranks need the CPUs more than this thread does.
                const auto idle = Clock::now() - last;
                cv_.wait_for(lock, std::clamp<Clock::duration>(idle / 8, std::chrono::microseconds(20),
                                                               std::chrono::milliseconds(1)));
            }
        }
    }

    // After terminate(): what is pending and what the ranks hold fails now; the ranks' answers
    // are still read (and dropped) by collect(), whose tasks are already done.
    void abandon(const std::exception_ptr& why) {
        std::deque<Task> left;
        std::vector<std::shared_ptr<detail::TaskState>> held;
        {
            std::lock_guard lock(m_);
            left.swap(pending_);
            for (auto& s : slots_)
                if (s.current) held.push_back(s.current->st);
        }
        for (auto& t : left) detail::finish(*t.st, {}, why);
        for (auto& st : held) detail::finish(*st, {}, why);
    }

    std::vector<Slot> slots_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<Task> pending_;
    std::deque<std::function<void()>> posted_;
    bool manager_running_ = false;
    bool manager_idle_ = false;  // in its untimed wait
    bool closed_ = false;
    bool terminated_ = false;
    std::string broken_;
    std::atomic<std::thread::id> manager_id_{};
    std::mutex lifecycle_m_;
    std::thread manager_;
};

std::shared_ptr<detail::PoolCore> make_core(std::optional<unsigned> n) {
    auto& w = world();
    if (!w.started) throw ValueError("call mp::mpi::freeze_support(argc, argv) first in main");
    // Held throughout: no Pool uses MPI now, and a second one made meanwhile must wait and fail.
    std::lock_guard lock(w.m);
    if (!w.live.expired()) throw ValueError("an mpi::Pool is alive already: the ranks serve one Pool at a time");
    const unsigned want =
        n.value_or(w.size > 1 ? static_cast<unsigned>(w.size - 1) : static_cast<unsigned>(cpu_count()));
    if (want == 0) throw ValueError("Number of processes must be at least 1");
    if (w.size > 1 && want > w.workers.size())
        throw ValueError("an mpi::Pool of " + std::to_string(want) + " workers, but this job has " +
                         std::to_string(w.workers.size()) + " other ranks: start it with mpirun -np " +
                         std::to_string(want + 1));
    if (w.size == 1 && want > w.workers.size()) spawn_workers(want - static_cast<unsigned>(w.workers.size()));
    auto core = std::make_shared<MpiPoolCore>(std::vector<Worker>(w.workers.begin(), w.workers.begin() + want));
    core->run();
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

Pool::Pool(std::shared_ptr<detail::PoolCore> core) : mprocess::Pool(core, workers_of(core)) {}

Pool::~Pool() = default;  // the base terminates; the ranks are free once the core is gone

}  // namespace mprocess::mpi
