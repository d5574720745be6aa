// SPDX-License-Identifier: Apache-2.0
// The one Pool core: the queue of tasks, the pool's states (running, closed, terminated, broken),
// the manager thread that also runs the users' callbacks, and submit/cancel/close/join/terminate.
// What carries a task to a worker is a transport, a subclass: worker processes on this machine
// (local.cpp) or MPI ranks (mpi.cpp). A transport has a fixed set of slots, one worker each, and
// implements only what differs: whether a slot can take a task now, sending a task to a slot,
// reading a slot's answer, waiting for activity, waking that wait, and stopping its workers.
//
// Locks, in order: a transport's reading lock (one worker's pipe, or the MPI mutex), then m_, then
// a TaskState's own. A task is completed (finish(), which runs hooks) with none of them held.
//
// Stopping a task. The manager wakes at the nearest deadline of a running task; one past it is
// failed with TaskTimeout at once (or kept for a retry) and its worker is asked to stop (SIGTERM),
// then made to (SIGKILL) kStopGrace later; cancel(kill_running) stops a worker the same way. A
// slot whose worker is stopping takes no task. When its worker ends, the transport hands its task
// to lost_task(), which retries it or fails it. A task whose worker dies by itself is retried the
// same way while it has retries left.
#pragma once

#include <cstddef>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "mprocess/detail/pool_task.hpp"
#include "mprocess/error.hpp"
#include "mprocess/timeout.hpp"
#include "start/code_symbol.hpp"

namespace mprocess::detail {

struct Task {
    std::shared_ptr<const std::string> message;  // shared: a sender outside the lock keeps it alive
    std::shared_ptr<TaskState> st;
};

// What a Pool's options say of tasks that do not say otherwise.
struct TaskDefaults {
    std::optional<Timeout> timeout;
    unsigned retries = 0;
    std::uint64_t max_memory = 0;  // a worker's resident bytes; 0: no limit
};

// Why a slot's worker is being stopped: its task's timeout, its task's cancellation, its memory
// past the limit while it runs a task, or after one (then it is renewed, as after maxtasksperchild).
enum class Stopping : unsigned char { no, timeout, cancelled, memory, renewing };

// How often the manager looks at the memory of workers that run tasks, under a memory limit.
inline constexpr std::chrono::milliseconds kMemoryLook{10};

// How long a worker asked to stop (SIGTERM) has before it is made to (SIGKILL).
inline constexpr std::chrono::seconds kStopGrace{1};

class SlotCore : public PoolCore {
public:
    std::string head(Invoker invoker, void* fn) final;
    std::shared_ptr<TaskState> submit(std::string message, TaskSpec spec) final;
    bool try_read_answer(TaskState& st) final;
    bool post(std::function<void()> fn) final;
    bool cancel(const std::shared_ptr<TaskState>& st) final;
    bool cancel_running(const std::shared_ptr<TaskState>& st) final;
    std::vector<WorkerInfo> workers() const final;
    void close() final;
    void join() final;
    // From a callback (the manager thread) this only asks: the manager stops when the callback returns.
    void terminate() noexcept final;
    void kill() noexcept final;

protected:
    // manager_sees_answers: the transport's wait() wakes for a worker's answer by itself (a pipe);
    // otherwise a task sent straight from submit() wakes a manager that waits for nothing.
    SlotCore(std::size_t slots, bool manager_sees_answers, TaskDefaults defaults = {});
    // A transport's destructor calls terminate() first: the manager thread calls its functions.
    ~SlotCore() override;
    // The manager starts once the core is owned by a shared_ptr (tasks refer back to it).
    void start_manager();

    // What a transport implements.
    // Under m_, for a slot without a task: may it take one now?
    virtual bool can_take(std::size_t slot) = 0;
    // Under m_, once a task is given to the slot: a number the transport gets back in send()
    // (which process of the slot it went to, say).
    virtual std::uint64_t reserved(std::size_t slot) = 0;
    // Outside m_: sends a reserved task. On failure the transport puts the task right itself.
    virtual void send(std::size_t slot, const Task& task, std::uint64_t ticket) = 0;
    // For a thread waiting for a task the slot holds: reads the slot's answer if it is there and
    // no one else is reading (then calls answered()). True if it read one.
    virtual bool read_answer(std::size_t slot) = 0;
    // In the manager: sleeps until wake(), something from a worker, or `until`. holding: some
    // slot holds a task (else nothing but wake() is worth waking for).
    virtual void wait(bool holding, const Deadline& until) = 0;
    // In the manager, after wait(): reads the answers that came and handles workers that ended.
    virtual void collect() = 0;
    virtual void wake() = 0;
    // In the manager once the pool is closed and its work done: the workers end (or are freed).
    virtual void stop_workers() = 0;
    // In the manager after terminate() (or a broken pool), once the unfinished tasks have failed:
    // the workers end now, or as soon as they can; at once (SIGKILL) after kill(), see halt_hard().
    virtual void halt_workers() noexcept = 0;
    // Under m_: asks slot i's worker to stop (SIGTERM), or makes it (hard: SIGKILL); its end then
    // comes as a worker's end does. False if this transport cannot stop a worker.
    virtual bool stop_worker(std::size_t slot, bool hard) = 0;
    // Under m_: who slot i's worker is, for the errors of its task.
    virtual TaskReport worker_report(std::size_t slot) const = 0;
    // Under m_: slot i's worker's resident bytes now; 0 if unknown.
    virtual std::uint64_t worker_rss(std::size_t /*slot*/) const { return 0; }

    // For transports.
    // With the slot's reading lock held (`reading`, the lock read_answer() takes): completes the
    // task the slot holds with its answer, letting go of that lock first (completing runs hooks),
    // and gives the slot the next pending task. The slot's state changes before the lock is let
    // go: whoever holds it next (the manager, seeing the worker end) sees the task answered.
    void answered(std::size_t slot, std::unique_lock<std::mutex>& reading, std::string answer, pid_t pid);
    // The pool is broken for good: why, for BrokenPool; the manager stops.
    void break_pool(std::string why);
    // With no lock held, once the worker that held t has ended (exitcode as Process gives it) and
    // its slot no longer holds t: runs t again if it has retries left, else fails it (unless it
    // failed already: a timeout without retries, a cancellation). `why` is the slot's stopping.
    void lost_task(Task t, Stopping why, int exitcode, TaskReport report);
    // Gives idle slots the oldest pending tasks.
    void dispatch();
    // Under m_: whether some slot holds a task.
    bool holding_locked() const;
    bool busy() const;
    // Whether halt_workers() is to kill the workers (kill()) rather than ask them to end.
    bool halt_hard() const noexcept { return halt_hard_.load(std::memory_order_acquire); }

    struct Slot {  // under m_
        std::optional<Task> current;
        bool initializing = false;         // current is the worker's initializer, not a user's task
        unsigned done = 0;                 // tasks its worker has answered
        Deadline deadline;                 // when current's attempt times out
        Stopping stopping = Stopping::no;  // its worker is being stopped: it takes no task
        Deadline kill_at;                  // when a worker asked to stop is made to
        std::uint64_t rss_seen = 0;        // the most resident memory seen of its worker
        Timeout::clock::time_point since;  // when it took current
    };

    mutable std::mutex m_;
    std::vector<Slot> slots_;
    std::deque<Task> pending_;
    bool terminated_ = false;

private:
    void manage();
    void serve();
    void run_posted();
    // Fails what is left and halts the workers: the end of a terminate() or of a broken pool.
    void shut_down() noexcept;
    // Under m_: gives t to an idle slot, to be sent after the lock is let go.
    std::optional<std::pair<std::size_t, std::uint64_t>> reserve(const Task& t);
    // In the manager: acts on the deadlines that have passed (timeouts, stops past their grace).
    void expire();
    // Under m_: the nearest deadline of a running task or a stopping worker.
    Deadline next_deadline() const;
    // Under m_: slot i's report, with its task's name and earlier attempts.
    TaskReport report_of(std::size_t i, const TaskState& st) const;
    // Under m_, under a memory limit: whether slot i's worker is past it now.
    bool over_memory(std::size_t i);
    // Whether the manager keeps time for st once a slot takes it: a timeout, or a memory limit.
    bool watched(const TaskState& st) const;

    const bool manager_sees_answers_;
    const TaskDefaults defaults_;
    std::atomic<bool> halt_hard_{false};
    Deadline memory_look_;                      // under m_: the manager's next look at the workers' memory
    std::atomic<std::uint64_t> submitted_{0};   // numbers the tasks without a label
    std::deque<std::function<void()>> posted_;  // for the manager thread to run
    bool manager_running_ = false;
    bool manager_idle_ = false;  // waiting with no slot holding a task
    bool closed_ = false;
    std::string broken_;  // why the pool is broken, or empty
    std::mutex symbols_m_;
    std::map<void*, Symbol> symbols_;
    std::mutex lifecycle_m_;
    std::thread manager_;
};

}  // namespace mprocess::detail
