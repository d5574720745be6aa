// SPDX-License-Identifier: Apache-2.0
// mp::Pool's transport: worker processes, each with its own duplex pipe. The manager thread
// (core.hpp) watches every worker's pipe and process: a result completes the worker's task; end of
// file or the process's end means the worker died. Its task then fails with WorkerLost (once the
// exit status is known) if the worker had taken it from the pipe, and goes to another worker if
// not. The manager stays off a quick task's path: submit() hands a task straight to an idle
// worker when none is queued, and a thread waiting for a result reads its worker's answer itself
// if it comes while the thread spins (read_answer).
#include "mprocess/pool.hpp"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <utility>

#include "channel/channel.hpp"
#include "mprocess/connection.hpp"
#include "default_method.hpp"
#include "mprocess/context.hpp"
#include "mprocess/process.hpp"
#include "platform/posix.hpp"
#include "pool/core.hpp"
#include "pool/tagged_output.hpp"
#include "pool/task.hpp"
#include "process_access.hpp"

namespace mprocess {

namespace detail {
namespace {

// The thread pools of the math libraries a task may call: each starts a thread per CPU unless told.
constexpr const char* kThreadVariables[] = {"OMP_NUM_THREADS",       "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                            "BLIS_NUM_THREADS",      "GOTO_NUM_THREADS",     "NUMEXPR_NUM_THREADS",
                                            "VECLIB_MAXIMUM_THREADS"};

// The worker's main loop. A plain function, so that it starts under every method. threads: the
// math libraries' threads (0: as the environment says); cpu: the one CPU it runs on (-1: any).
void pool_worker(Connection conn, unsigned maxtasks, unsigned threads, int cpu, bool tag) {
    std::optional<TaggedOutput> out, err;
    if (tag) {
        const std::string prefix = "[" + current_process().name() + "] ";
        std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);  // a line is passed on when it is written
        out.emplace(1, prefix);
        err.emplace(2, prefix);
    }
    if (threads != 0)
        for (const char* v : kThreadVariables) ::setenv(v, std::to_string(threads).c_str(), 1);
    if (cpu >= 0) platform::pin_to_cpu(cpu);
    // One buffer each way for all its tasks: a map's chunks are megabytes, and fresh pages cost
    // more to touch than the work in them.
    struct Reuse final : FrameSink {
        std::string msg;
        bool take(std::size_t length, std::string_view) override {
            msg.resize(length);
            return true;
        }
        char* room(std::size_t) override { return msg.data(); }
    } in;
    std::string answer;
    for (unsigned done = 0; maxtasks == 0 || done < maxtasks; ++done) {
        try {
            conn.recv_frame(in);
        } catch (const EOFError&) {
            return;  // the pool is gone
        }
        if (in.msg.empty()) return;  // the pool's stop
        run_task_message(in.msg, answer);
        conn.send_bytes(answer);
    }
}

// Room in each direction of a worker's pipe: a map's chunk of a few hundred thousand numbers fits
// whole, so sender and receiver need not take turns.
constexpr std::size_t kPipeBytes = 4 << 20;

class ProcessPoolCore final : public SlotCore {
public:
    ProcessPoolCore(unsigned n, StartMethod method, const PoolOptions& options)
        : SlotCore(n, true, TaskDefaults{options.task_timeout, options.retries, options.max_memory_per_child}),
          method_(method),
          maxtasks_(options.maxtasksperchild),
          break_on_loss_(options.on_worker_lost == OnWorkerLost::break_pool),
          bell_(platform::make_eventfd()),
          threads_(options.threads_per_worker),
          tag_(options.tag_output) {
        if (options.pin_workers) cpus_ = platform::allowed_cpu_ids();
        if (options.initializer)
            init_ = std::make_shared<const std::string>(InitializerAccess::message(options.initializer));
        for (unsigned i = 0; i < n; ++i) {
            workers_.push_back(std::make_unique<Worker>());
            start_worker(i);
        }
        record_pids();
    }
    ~ProcessPoolCore() override { terminate(); }
    using SlotCore::start_manager;

    std::vector<pid_t> pids() const override {
        std::lock_guard lock(m_);
        return pids_;
    }

private:
    struct Worker {
        // Held by whoever reads its answers (the manager, or a waiting thread), and by the manager
        // while it replaces the worker or stops it.
        std::mutex reader;
        // Written with both `reader` and m_ held; read with either.
        std::optional<Process> proc;
        Connection conn;
        bool stopped = false;  // dead or shut down: nobody reads, sends or hands it tasks
        // Under m_.
        std::uint64_t generation = 0;   // processes started in the slot
        std::uint64_t handed = 0;       // messages handed to this process, the initializer's too
        std::uint64_t current_msg = 0;  // which of them the slot's current task is
    };

    // Starts a process for slot i (which nobody else touches meanwhile).
    void start_worker(std::size_t i) {
        Worker& w = *workers_[i];
        auto [here, there] = Pipe(true, {.capacity = kPipeBytes});
        // Workers die with this process where the kernel can arrange it (not under forkserver, whose
        // server is their parent); otherwise they see their pipe close and exit.
        // Named as Python names them: ForkPoolWorker-1, SpawnPoolWorker-2, ForkServerPoolWorker-3.
        const std::string kind = method_ == StartMethod::fork    ? "Fork"
                                 : method_ == StartMethod::spawn ? "Spawn"
                                                                 : "ForkServer";
        const unsigned messages = maxtasks_ == 0 ? 0 : maxtasks_ + (init_ ? 1 : 0);
        Process proc(pool_worker,
                     ProcessOptions{.name = kind + "PoolWorker-" + std::to_string(++started_),
                                    .daemon = true,
                                    .die_with_parent = method_ != StartMethod::forkserver,
                                    .start_method = method_},
                     there, messages, threads_, cpus_.empty() ? -1 : cpus_[i % cpus_.size()], tag_);
        proc.start();
        there.close();
        std::lock_guard lock(m_);
        w.proc.emplace(std::move(proc));
        w.conn = here;
        Slot& s = slots_[i];
        s = Slot{};
        ++w.generation;
        w.handed = 0;
        if (init_) {
            // Its first message: the worker answers it before it takes any task.
            s.current = Task{init_, std::make_shared<TaskState>()};
            w.current_msg = ++w.handed;
            s.initializing = true;
            try {
                w.conn.send_bytes(*init_);
            } catch (const Error&) {
                // It died already; the manager sees it.
            }
        }
    }

    void record_pids() {
        std::lock_guard lock(m_);
        pids_.clear();
        for (auto& w : workers_)
            if (!w->stopped) pids_.push_back(w->proc ? w->proc->pid() : 0);
    }

    bool can_take(std::size_t i) override {
        Worker& w = *workers_[i];
        // A worker that has run its maxtasksperchild tasks gets no more: it is exiting. An idle
        // worker whose pipe is readable has ended: the manager is about to replace it.
        return !w.stopped && !(maxtasks_ != 0 && slots_[i].done >= maxtasks_) && !w.conn.poll(0.0);
    }

    std::uint64_t reserved(std::size_t i) override {
        Worker& w = *workers_[i];
        w.current_msg = ++w.handed;
        return w.generation;
    }

    // If sending fails, the task goes back to the queue, unless the worker's death was handled
    // first (then the task is queued again or failed already).
    void send(std::size_t i, const Task& task, std::uint64_t generation) override {
        Worker& w = *workers_[i];
        Connection conn;
        {
            std::lock_guard lock(m_);
            // The generation tells this hand-over from a later one of the same task to the slot's
            // next process: a process that died since was handled with its task.
            if (w.generation != generation) return;
            conn = w.conn;
        }
        try {
            conn.send_bytes(*task.message);
            return;
        } catch (const Error&) {
        }
        {
            std::lock_guard lock(m_);
            const Slot& s = slots_[i];
            if (w.generation != generation || !s.current || s.current->st != task.st) return;
            if (!hand_back_untaken(i)) return;
        }
        wake();
    }

    // Under m_: whether slot i's process has received its current message whole. A fact kept in
    // the pipe's shared memory, so it holds after the worker's death; a transport that cannot tell
    // counts as taken.
    bool took_current(std::size_t i) const {
        if (!slots_[i].current) return false;
        const auto received = ConnectionAccess::channel(workers_[i]->conn).delivered();
        return !received || *received >= workers_[i]->current_msg;
    }

    // Under m_, once slot i's current task can no longer reach its process (it is dead, or the
    // send failed): the task goes back to the head of the queue if the worker never took it, so
    // that it runs once, elsewhere. True if it went back.
    bool hand_back_untaken(std::size_t i) {
        Slot& s = slots_[i];
        if (!s.current || took_current(i)) return false;
        Task t = std::move(*s.current);
        s.current.reset();
        {
            std::lock_guard st_lock(t.st->m);
            t.st->started = false;
        }
        t.st->slot.store(-1, std::memory_order_release);
        pending_.push_front(std::move(t));
        return true;
    }

    bool read_answer(std::size_t i) override {
        std::unique_lock reading(workers_[i]->reader, std::try_to_lock);
        return reading && take_answer(i, reading, false);
    }

    // With the worker's reader held (`reading`): reads one answer if there is one and completes
    // its task. The end of the worker is for the manager to handle (it replaces the worker); a
    // waiting thread leaves it. True if something was done.
    bool take_answer(std::size_t i, std::unique_lock<std::mutex>& reading, bool manager) {
        Worker& w = *workers_[i];
        if (w.stopped || (!manager && !ConnectionAccess::channel(w.conn).has_data()) || !w.conn.poll(0.0)) return false;
        std::string answer;
        try {
            answer = w.conn.recv_bytes();
        } catch (const Error&) {
            // End of file, or a ring that a worker dying mid-answer left broken.
            if (manager) lost(i);
            return manager;
        }
        answered(i, reading, std::move(answer), w.proc->pid());
        return true;
    }

    // With the worker's reader held, in the manager: a worker's pipe ended, or its process did. It
    // died, it was stopped (a timeout, a cancellation), or it exited after its maxtasksperchild tasks.
    void lost(std::size_t i) {
        Worker& w = *workers_[i];
        const pid_t pid = w.proc->pid();
        if (!w.proc->join(1.0)) {  // its pipe broke but it lives on: it is of no use
            w.proc->kill();
            w.proc->join();
        }
        const int code = w.proc->exitcode().value_or(-SIGKILL);
        std::optional<Task> held;
        bool initializing, breaking;
        Stopping why;
        TaskReport report;
        {
            std::lock_guard lock(m_);
            Slot& s = slots_[i];
            why = s.stopping;
            initializing = std::exchange(s.initializing, false);
            // Renewed, not lost: after its maxtasksperchild tasks, or past the memory limit between tasks.
            const bool renewal =
                !s.current && ((code == 0 && maxtasks_ != 0 && s.done >= maxtasks_) || why == Stopping::renewing);
            // A worker the pool stopped breaks nothing; nor does the loss of a task with retries left.
            const bool retrying = s.current && s.current->st->retries > 0;
            breaking = !renewal && why == Stopping::no && (initializing || (break_on_loss_ && !retrying));
            // It is dead: what it took is final. A task stopped on purpose is not handed on.
            if (!breaking && why == Stopping::no) hand_back_untaken(i);
            held = std::move(s.current);
            s.current.reset();
            report = worker_report(i);
            // The kernel's high-water mark is updated lazily: what the memory watcher saw counts too
            // (a worker stopped for its memory was seen past the limit).
            report.peak_rss = std::max(report.peak_rss, s.rss_seen);
            w.stopped = true;  // no task may be handed to the dead slot
        }
        w.conn.close();
        if (breaking) {
            if (held) report.task = held->st->label;
            const std::string how =
                WorkerLost(code, code < 0 ? WorkerLost::Reason::signal : WorkerLost::Reason::exit, report).what();
            const std::string why_broken =
                initializing ? "the Pool's initializer ended worker " + std::to_string(pid) + ": " + how
                             : "the Pool is broken: " + how;
            break_pool(why_broken);
            if (held) finish(*held->st, {}, std::make_exception_ptr(BrokenPool(why_broken)));
            return;
        }
        if (held) lost_task(std::move(*held), why, code, std::move(report));
        try {
            start_worker(i);  // the slot is stopped: no other thread touches it meanwhile
        } catch (const std::exception& e) {
            break_pool("the Pool could not replace worker " + std::to_string(pid) + ": " + e.what());
            return;
        }
        {
            std::lock_guard lock(m_);
            w.stopped = false;
        }
        record_pids();
        dispatch();
    }

    bool stop_worker(std::size_t i, bool hard) override {
        Worker& w = *workers_[i];
        if (w.stopped || !w.proc) return true;
        try {
            if (hard)
                w.proc->kill();
            else
                w.proc->terminate();
        } catch (const Error&) {
            // It has ended already: the manager sees it.
        }
        return true;
    }

    TaskReport worker_report(std::size_t i) const override {
        const Worker& w = *workers_[i];
        TaskReport r;
        if (w.proc) {
            r.worker = w.proc->name();
            r.pid = w.proc->pid();
            r.peak_rss = ProcessAccess::peak_rss(*w.proc);  // once it has ended
        }
        return r;
    }

    std::uint64_t worker_rss(std::size_t i) const override {
        const Worker& w = *workers_[i];
        return w.stopped || !w.proc ? 0 : platform::resident_bytes(w.proc->pid());
    }

    // Each worker's pipe, and its process: a pipe whose other end some other process inherited by
    // chance would never show the worker's death.
    void wait(bool /*holding*/, const Deadline& until) override {
        std::vector<Waitable> objs{Waitable(bell_.get())};
        for (auto& w : workers_) {
            if (w->stopped) continue;
            objs.emplace_back(w->conn);
            objs.emplace_back(*w->proc);
        }
        ready_ = mprocess::wait(objs, until ? Timeout(*until - Timeout::clock::now()) : forever);
        platform::drain_efd(bell_);
    }

    void collect() override {
        auto is_ready = [&](const Waitable& o) { return std::find(ready_.begin(), ready_.end(), o) != ready_.end(); };
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            Worker& w = *workers_[i];
            if (w.stopped) continue;
            const bool spoke = is_ready(Waitable(w.conn));
            if (!spoke && !is_ready(Waitable(*w.proc))) continue;
            std::unique_lock reading(w.reader);  // a waiting thread may be reading it: then it is ours next
            if (spoke) {
                take_answer(i, reading, true);
            } else if (!w.conn.poll(0.0) && !w.proc->is_alive()) {
                lost(i);  // dead, and its pipe shows nothing: it will not
            }
        }
    }

    void wake() override { platform::signal_efd(bell_); }

    void stop_workers() override {
        for (auto& w : workers_) {
            std::lock_guard reading(w->reader);
            if (w->stopped) continue;
            try {
                w->conn.send_bytes("");  // stop
            } catch (const Error&) {
            }
        }
        for (auto& w : workers_)
            if (!w->stopped) w->proc->join();
    }

    void halt_workers() noexcept override {
        for (auto& w : workers_) {
            std::lock_guard reading(w->reader);
            if (w->stopped) continue;
            try {
                w->conn.close();
                if (w->proc && w->proc->is_alive()) {
                    if (halt_hard())
                        w->proc->kill();
                    else
                        w->proc->terminate();
                }
            } catch (...) {
            }
        }
        for (auto& w : workers_) {
            std::lock_guard reading(w->reader);
            if (w->stopped) continue;
            try {
                if (w->proc && !w->proc->join(1.0)) {
                    w->proc->kill();
                    w->proc->join();
                }
            } catch (...) {
            }
            std::lock_guard lock(m_);
            w->stopped = true;
        }
        record_pids();
    }

    const StartMethod method_;
    const unsigned maxtasks_;
    const bool break_on_loss_;
    std::shared_ptr<const std::string> init_;  // the initializer's task message, or null
    unsigned started_ = 0;
    platform::Fd bell_;
    const unsigned threads_;                        // per worker, for the math libraries; 0: as the environment says
    const bool tag_;                                // each worker's output lines prefixed with its name
    std::vector<int> cpus_;                         // with pin_workers: slot i's worker runs on cpus_[i % size] alone
    std::vector<pid_t> pids_;                       // under m_
    std::vector<std::unique_ptr<Worker>> workers_;  // one per slot
    std::vector<Waitable> ready_;                   // the manager's, from wait() to collect()
};

}  // namespace

std::shared_ptr<PoolCore> make_pool(unsigned processes, const PoolOptions& options) {
    if (processes == 0) throw ValueError("Number of processes must be at least 1");
    auto core = std::make_shared<ProcessPoolCore>(processes, start_method_or_default(options.start_method), options);
    core->start_manager();
    return core;
}

}  // namespace detail

Pool::Pool(std::optional<unsigned> processes, const PoolOptions& options)
    : core_(detail::make_pool(processes.value_or(static_cast<unsigned>(process_cpu_count())), options)),
      processes_(processes.value_or(static_cast<unsigned>(process_cpu_count()))) {}

}  // namespace mprocess
