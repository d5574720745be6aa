// The Pool's machinery: workers, each with its own duplex pipe, and one manager thread here that
// hands queued tasks to idle workers, collects results, runs the users' callbacks, and replaces
// workers that die. It stays off a quick task's path: submit() hands a task straight to an idle
// worker when none is queued, and a thread waiting for a result reads its worker's answer itself
// if it comes while the thread spins (try_read_answer).
//
// A task message is the length of its head, the head (invoker symbol, function symbol), then the
// encoded arguments; an answer is a status byte (0: result, 1: exception as (type, message)) and
// its payload. Arguments and results are never copied to be wrapped: a big map's chunks are
// megabytes. The manager watches every worker's connection and process: a result completes the
// worker's task; end of file or the process's end means the worker died. Its task then fails with
// WorkerLost (once the exit status is known) if the worker had taken it from the pipe, and goes
// to another worker if not.
#include "mprocess/pool.hpp"

#include <cxxabi.h>
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <utility>
#include <deque>
#include <map>
#include <optional>
#include <thread>

#include "channel.hpp"
#include "mprocess/connection.hpp"
#include "mprocess/context.hpp"
#include "mprocess/process.hpp"
#include "platform/posix.hpp"
#include "popen_internal.hpp"

namespace mprocess {

WorkerLost::WorkerLost(pid_t pid, int exitcode)
    : Error("worker " + std::to_string(pid) +
            (exitcode < 0 ? " was killed by signal " + std::to_string(-exitcode)
                          : " exited with code " + std::to_string(exitcode)) +
            " while running the task"),
      pid_(pid),
      signal_(exitcode < 0 ? -exitcode : 0),
      exitcode_(exitcode) {}

namespace detail {
namespace {

using TaskHead = std::tuple<Symbol, Symbol>;

// The message's head; the encoded arguments are appended to it.
std::string symbols_head(const Symbol& invoker, const Symbol& fn) {
    const std::string head = encode(TaskHead{invoker, fn});
    const auto n = static_cast<std::uint32_t>(head.size());
    std::string msg(reinterpret_cast<const char*>(&n), sizeof n);
    msg += head;
    return msg;
}

// The head, and a view of the arguments within msg.
std::pair<TaskHead, std::string_view> parse_task(std::string_view msg) {
    std::uint32_t n = 0;
    if (msg.size() < sizeof n) throw DecodeError("a task message too short for its head");
    std::memcpy(&n, msg.data(), sizeof n);
    if (msg.size() - sizeof n < n) throw DecodeError("a task message shorter than its head");
    return {decode<TaskHead>(msg.substr(sizeof n, n)), msg.substr(sizeof n + n)};
}
using Failure = std::tuple<std::string, std::string>;

std::string type_of_current_exception() {
    const std::type_info* t = abi::__cxa_current_exception_type();
    if (!t) return "unknown";
    int status = 0;
    char* name = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
    std::string s = status == 0 && name ? name : t->name();
    std::free(name);
    return s;
}

// The worker's main loop. A plain function, so that it starts under every method.
void pool_worker(Connection conn, unsigned maxtasks) {
    for (unsigned done = 0; maxtasks == 0 || done < maxtasks; ++done) {
        std::string msg;
        try {
            msg = conn.recv_bytes();
        } catch (const EOFError&) {
            return;  // the pool is gone
        }
        if (msg.empty()) return;  // the pool's stop
        conn.send_bytes(run_task_message(msg));
    }
}

struct Task {
    std::shared_ptr<const std::string> message;  // shared: a sender outside the lock keeps it alive
    std::shared_ptr<TaskState> st;
};

// Room in each direction of a worker's pipe: a map's chunk of a few hundred thousand numbers fits
// whole, so sender and receiver need not take turns.
constexpr std::size_t kPipeBytes = 4 << 20;
constexpr std::chrono::nanoseconds kResultSpin = std::chrono::microseconds(50);
constexpr std::chrono::nanoseconds kSpinBeforeYield = std::chrono::microseconds(5);

// The pool whose manager this thread is, if any: a wait for one of its results here would never end.
thread_local const void* t_manager_of = nullptr;

void run_hook(const std::function<void()>& hook) noexcept {
    try {
        hook();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mprocess: a Pool callback threw %s: %s\n", type_of_current_exception().c_str(), e.what());
    } catch (...) {
        std::fprintf(stderr, "mprocess: a Pool callback threw %s\n", type_of_current_exception().c_str());
    }
}

}  // namespace

std::string task_message_head(Invoker invoker, void* fn) {
    return symbols_head(code_symbol(reinterpret_cast<void*>(invoker)), code_symbol(fn));
}

std::string run_task_message(std::string_view msg) {
    // A worker runs one task at a time, each thread its own: the cache needs no lock.
    thread_local std::map<std::string, void*> resolved;
    // Keyed by role too: an address cleared as a function is not thereby cleared as an entry point.
    auto address = [](const Symbol& s, void* (*resolve)(const Symbol&)) {
        const std::string key = std::string(resolve == entry_address ? "e" : "f") + s.object + '\0' + s.build_id +
                                '\0' + std::to_string(s.offset);
        auto it = resolved.find(key);
        if (it == resolved.end()) it = resolved.emplace(key, resolve(s)).first;
        return it->second;
    };
    std::string answer(1, '\0');
    try {
        auto [head, args] = parse_task(msg);
        auto& [invoker, fn] = head;
        reinterpret_cast<Invoker>(address(invoker, entry_address))(address(fn, function_address), args, answer);
    } catch (const std::exception& e) {
        answer.assign(1, '\1');
        answer += encode(Failure{type_of_current_exception(), e.what()});
    } catch (...) {
        answer.assign(1, '\1');
        answer += encode(Failure{type_of_current_exception(), "a non-standard exception"});
    }
    return answer;
}

void cancel_unstarted(TaskState& st) {
    {
        std::lock_guard lock(st.m);
        st.cancelled = true;
    }
    finish(st, {}, std::make_exception_ptr(CancelledError("the task was cancelled before it started")));
}

std::string failure_answer(const std::string& type, const std::string& message) {
    return std::string(1, '\1') + encode(Failure{type, message});
}

bool answer_succeeded(std::string_view answer) {
    return !answer.empty() && answer[0] == '\0';  // the result follows the status byte
}

// Why a failed task's answer says it failed: "type: message".
std::string failure_of(std::string_view answer) {
    try {
        auto [type, what] = decode<Failure>(answer.substr(answer.empty() ? 0 : 1));
        return type + ": " + what;
    } catch (const Error& e) {
        return std::string("DecodeError: ") + e.what();
    }
}

std::string finish_with_answer(TaskState& st, std::string answer, int pid) {
    if (answer_succeeded(answer)) {
        finish(st, std::move(answer), nullptr);  // the result follows the status byte
        return {};
    }
    std::exception_ptr error;
    std::string failure;
    try {
        auto [type, what] = decode<Failure>(std::string_view(answer).substr(answer.empty() ? 0 : 1));
        failure = type + ": " + what;
        error = make_remote_error(type, what, "worker " + std::to_string(pid), pid);
    } catch (const Error& e) {
        failure = std::string("DecodeError: ") + e.what();
        error = make_remote_error("DecodeError", e.what(), "worker " + std::to_string(pid), pid);
    }
    finish(st, {}, error);
    return failure;
}

void mark_callback_thread(const void* core) noexcept {
    t_manager_of = core;
}

void run_callback(const std::function<void()>& fn) noexcept {
    run_hook(fn);
}

bool try_read_answer(PoolCore& core, TaskState& st);

void finish(TaskState& st, std::string result, std::exception_ptr error) {
    std::vector<std::function<void()>> hooks;
    {
        std::lock_guard lock(st.m);
        if (st.done) return;
        st.done = true;
        st.result = std::move(result);
        st.error = std::move(error);
        hooks.swap(st.on_done);
        st.finished.store(true, std::memory_order_release);
    }
    st.cv.notify_all();
    for (const auto& h : hooks) run_hook(h);
}

void when_done(const std::shared_ptr<TaskState>& st, std::function<void()> fn) {
    {
        std::lock_guard lock(st->m);
        if (!st->done) {
            st->on_done.push_back(std::move(fn));
            return;
        }
    }
    run_hook(fn);
}

std::shared_ptr<TaskState> join_parts(std::vector<std::shared_ptr<TaskState>> parts) {
    auto whole = std::make_shared<TaskState>();
    whole->joined = true;
    whole->pool = parts.empty() ? nullptr : parts.front()->pool;
    if (!parts.empty()) whole->core = parts.front()->core;
    whole->parts = parts;
    if (parts.empty()) {
        finish(*whole, {}, nullptr);
        return whole;
    }
    struct Count {
        std::mutex m;
        std::size_t left;
        std::exception_ptr first;
    };
    auto count = std::make_shared<Count>();
    count->left = parts.size();
    // Each hook holds the whole until the last part is done: a cycle that every task's end breaks.
    for (const auto& p : parts) {
        when_done(p, [count, whole, part = p.get()] {
            std::exception_ptr error;
            bool last;
            {
                std::lock_guard lock(count->m);
                if (part->error && !count->first) count->first = part->error;
                last = --count->left == 0;
                error = count->first;
            }
            if (last) finish(*whole, {}, error);
        });
    }
    return whole;
}

bool wait_task(TaskState& st, const Timeout& timeout) {
    if (!st.finished.load(std::memory_order_acquire) && st.pool && st.pool == t_manager_of)
        throw ValueError(
            "waiting for a Pool's result in one of its callbacks would never end: callbacks run "
            "in the thread that collects the results");
    // Spin a little first, reading the worker's answer here if it comes: a quick task is done
    // sooner than a sleeping thread can be woken (tens of microseconds on a virtual machine).
    if (auto core = st.core.lock()) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto spin = std::min<std::chrono::nanoseconds>(kResultSpin, timeout.duration());
        for (auto now = t0; now - t0 < spin && !st.finished.load(std::memory_order_acquire);
             now = std::chrono::steady_clock::now()) {
            if (try_read_answer(*core, st)) continue;
            for (int i = 0; i < 64 && !st.finished.load(std::memory_order_relaxed); ++i) platform::cpu_relax();
            if (now - t0 > kSpinBeforeYield) platform::yield_cpu();
        }
    }
    std::unique_lock lock(st.m);
    if (timeout.infinite()) {
        st.cv.wait(lock, [&] { return st.done; });
        return true;
    }
    return st.cv.wait_for(lock, timeout.duration(), [&] { return st.done; });
}

void report_progress(const std::vector<std::shared_ptr<TaskState>>& parts, std::size_t total, std::size_t chunksize,
                     const Progress& progress) {
    struct Count {
        std::mutex m;
        std::condition_variable cv;
        std::size_t done = 0;
    };
    auto count = std::make_shared<Count>();
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const std::size_t n = std::min(chunksize, total - i * chunksize);
        when_done(parts[i], [count, n] {
            {
                std::lock_guard lock(count->m);
                count->done += n;
            }
            count->cv.notify_all();
        });
    }
    std::size_t shown = 0;
    progress(0, total);
    while (shown < total) {
        std::unique_lock lock(count->m);
        count->cv.wait(lock, [&] { return count->done != shown; });
        shown = count->done;
        lock.unlock();
        progress(shown, total);
    }
}

class ProcessPoolCore final : public PoolCore {
public:
    ProcessPoolCore(unsigned n, std::string method, const PoolOptions& options)
        : method_(std::move(method)),
          maxtasks_(options.maxtasksperchild),
          break_on_loss_(options.on_worker_lost == OnWorkerLost::break_pool),
          bell_(platform::make_eventfd()) {
        if (options.initializer)
            init_ = std::make_shared<const std::string>(InitializerAccess::message(options.initializer));
        for (unsigned i = 0; i < n; ++i) {
            workers_.push_back(std::make_unique<Worker>());
            start_worker(*workers_.back());
        }
        record_pids();
    }
    // The manager starts once the core is owned by a shared_ptr (tasks refer back to it).
    void run() {
        manager_running_ = true;
        manager_ = std::thread([this] { manage(); });
    }
    ~ProcessPoolCore() override { terminate(); }

    std::string head(Invoker invoker, void* fn) override {
        return symbols_head(symbol(reinterpret_cast<void*>(invoker)), symbol(fn));
    }

    std::shared_ptr<TaskState> submit(std::string message) override {
        auto st = std::make_shared<TaskState>();
        st->pool = this;
        st->core = weak_from_this();
        Task t{std::make_shared<const std::string>(std::move(message)), st};
        std::optional<Assignment> assignment;
        {
            std::lock_guard lock(m_);
            if (!broken_.empty()) throw BrokenPool(broken_);
            if (closed_ || terminated_) throw ValueError("Pool not running");
            // An idle worker takes it from this thread: no hop through the manager.
            if (pending_.empty()) assignment = reserve(t);
            if (!assignment) pending_.push_back(std::move(t));
        }
        if (assignment)
            send(*assignment);
        else
            platform::signal_efd(bell_);
        return st;
    }

    // A thread waiting for st reads its worker's answer itself, if it is there: the manager may be
    // asleep, and waking it costs more than the task. True if an answer was read.
    bool try_read_answer(TaskState& st) override {
        const int slot = st.slot.load(std::memory_order_acquire);
        if (slot < 0 || static_cast<std::size_t>(slot) >= workers_.size()) return false;
        Worker& w = *workers_[static_cast<std::size_t>(slot)];
        std::unique_lock reading(w.reader, std::try_to_lock);
        return reading && collect(w, reading, false);
    }

    // Runs fn on the manager thread (user callbacks run there, one at a time, as in Python);
    // false if the manager has ended.
    bool post(std::function<void()> fn) override {
        {
            std::lock_guard lock(m_);
            if (!manager_running_) return false;
            posted_.push_back(std::move(fn));
        }
        platform::signal_efd(bell_);
        return true;
    }

    // The tasks no worker has begun, taken back: st, or all of them if st is null.
    bool cancel(const std::shared_ptr<TaskState>& st) override {
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
        for (auto& t : taken) cancel_unstarted(*t.st);
        return true;
    }

    void close() override {
        {
            std::lock_guard lock(m_);
            closed_ = true;
        }
        platform::signal_efd(bell_);
    }

    void join() override {
        {
            std::lock_guard lock(m_);
            if (!closed_ && !terminated_) throw ValueError("join() of a Pool that is still running: close() it first");
        }
        if (t_manager_of == this) throw ValueError("join() of a Pool in one of its own callbacks would never end");
        std::lock_guard lock(lifecycle_m_);
        if (manager_.joinable()) manager_.join();
    }

    // From a callback (the manager thread) this only asks: the manager stops when the callback returns.
    void terminate() noexcept override {
        {
            std::lock_guard lock(m_);
            terminated_ = true;
        }
        platform::signal_efd(bell_);
        if (t_manager_of == this) return;
        std::lock_guard lock(lifecycle_m_);
        if (manager_.joinable()) manager_.join();
        shut_down();  // for a pool whose manager had already ended after close(), or never started
    }

    std::vector<int> pids() const override {
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
        std::optional<Task> current;
        bool initializing = false;      // current is the initializer
        unsigned done = 0;              // tasks answered
        std::uint64_t generation = 0;   // processes started in the slot
        std::uint64_t handed = 0;       // messages handed to this process, the initializer's too
        std::uint64_t current_msg = 0;  // which of them `current` is
    };

    // A task given to a worker, to be sent outside the lock.
    struct Assignment {
        Connection conn;
        Task task;
        std::size_t slot;
        std::uint64_t generation;  // of the worker it was given to
    };

    // Starts a process for the slot (which nobody else touches meanwhile).
    void start_worker(Worker& w) {
        auto [here, there] = Pipe(true, {.capacity = kPipeBytes});
        // Workers die with this process where the kernel can arrange it (not under forkserver, whose
        // server is their parent); otherwise they see their pipe close and exit.
        // Named as Python names them: ForkPoolWorker-1, SpawnPoolWorker-2, ForkServerPoolWorker-3.
        const std::string kind = method_ == "fork" ? "Fork" : method_ == "spawn" ? "Spawn" : "ForkServer";
        const unsigned messages = maxtasks_ == 0 ? 0 : maxtasks_ + (init_ ? 1 : 0);
        Process proc(pool_worker,
                     ProcessOptions{.name = kind + "PoolWorker-" + std::to_string(++started_),
                                    .daemon = true,
                                    .die_with_parent = method_ != "forkserver",
                                    .start_method = method_},
                     there, messages);
        proc.start();
        there.close();
        std::lock_guard lock(m_);
        w.proc.emplace(std::move(proc));
        w.conn = here;
        w.current.reset();
        w.initializing = false;
        w.done = 0;
        ++w.generation;
        w.handed = 0;
        if (init_) {
            // Its first message: the worker answers it before it takes any task.
            w.current = Task{init_, std::make_shared<TaskState>()};
            w.current_msg = ++w.handed;
            w.initializing = true;
            try {
                w.conn.send_bytes(*init_);
            } catch (const Error&) {
                // It died already; the manager sees it.
            }
        }
    }

    Symbol symbol(void* addr) {
        std::lock_guard lock(symbols_m_);
        auto it = symbols_.find(addr);
        if (it == symbols_.end()) it = symbols_.emplace(addr, code_symbol(addr)).first;
        return it->second;
    }

    void record_pids() {
        std::lock_guard lock(m_);
        pids_.clear();
        for (auto& w : workers_)
            if (!w->stopped) pids_.push_back(w->proc ? w->proc->pid() : 0);
    }

    // Under m_: gives the task to an idle worker (it is sent after the lock is let go), or nullopt.
    std::optional<Assignment> reserve(Task& t) {
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            Worker& w = *workers_[i];
            // A worker that has run its maxtasksperchild tasks gets no more: it is exiting. An idle
            // worker whose pipe is readable has ended: the manager is about to replace it.
            if (w.stopped || w.current || (maxtasks_ != 0 && w.done >= maxtasks_) || w.conn.poll(0.0)) continue;
            {
                std::lock_guard lock(t.st->m);
                t.st->started = true;
            }
            t.st->slot.store(static_cast<int>(i), std::memory_order_release);
            w.current = t;
            w.current_msg = ++w.handed;
            return Assignment{w.conn, std::move(t), i, w.generation};
        }
        return std::nullopt;
    }

    // Under m_: whether w's process has received its current message whole. A fact kept in the
    // pipe's shared memory, so it holds after the worker's death; a transport that cannot tell
    // counts as taken.
    bool took_current(const Worker& w) const {
        if (!w.current) return false;
        const auto received = ConnectionAccess::channel(w.conn).delivered();
        return !received || *received >= w.current_msg;
    }

    // Under m_, once w's current task can no longer reach its process (it is dead, or the send
    // failed): the task goes back to the head of the queue if the worker never took it, so that
    // it runs once, elsewhere. True if it went back.
    bool hand_back_untaken(Worker& w) {
        if (!w.current || took_current(w)) return false;
        Task t = std::move(*w.current);
        w.current.reset();
        {
            std::lock_guard st_lock(t.st->m);
            t.st->started = false;
        }
        t.st->slot.store(-1, std::memory_order_release);
        pending_.push_front(std::move(t));
        return true;
    }

    // Sends a reserved task. If that fails, the task goes back to the queue, unless the worker's
    // death was handled first (then the task is queued again or failed already).
    void send(Assignment& a) {
        try {
            a.conn.send_bytes(*a.task.message);
            return;
        } catch (const Error&) {
        }
        {
            std::lock_guard lock(m_);
            Worker& w = *workers_[a.slot];
            // The generation tells this hand-over from a later one of the same task to the
            // slot's next process.
            if (w.generation != a.generation || !w.current || w.current->st != a.task.st) return;
            if (!hand_back_untaken(w)) return;
        }
        platform::signal_efd(bell_);
    }

    // Gives idle workers the oldest pending tasks.
    void dispatch() {
        for (;;) {
            std::optional<Assignment> assignment;
            {
                std::lock_guard lock(m_);
                if (pending_.empty() || terminated_) return;
                assignment = reserve(pending_.front());
                if (!assignment) return;
                pending_.pop_front();
            }
            send(*assignment);
        }
    }

    void break_pool(std::string why) {
        {
            std::lock_guard lock(m_);
            if (broken_.empty()) broken_ = std::move(why);
            terminated_ = true;
        }
        platform::signal_efd(bell_);
    }

    // With w.reader held (`reading`): reads one answer if there is one, lets go of the reader lock
    // and completes the answered task. The end of the worker is for the manager to handle (it
    // replaces the worker); a waiting thread leaves it. True if something was done.
    bool collect(Worker& w, std::unique_lock<std::mutex>& reading, bool manager) {
        if (w.stopped || (!manager && !ConnectionAccess::channel(w.conn).has_data()) || !w.conn.poll(0.0)) return false;
        std::string answer;
        try {
            answer = w.conn.recv_bytes();
        } catch (const Error&) {
            // End of file, or a ring that a worker dying mid-answer left broken.
            if (manager) lost(w);
            return manager;
        }
        std::shared_ptr<TaskState> st;
        bool init_failed = false;
        const pid_t pid = w.proc->pid();
        {
            std::lock_guard lock(m_);
            if (!w.current) return true;
            st = w.current->st;
            w.current.reset();
            const bool init = std::exchange(w.initializing, false);
            if (!init) ++w.done;
            // The pool breaks before this worker looks idle: a task handed to it now would run in
            // a worker whose initializer failed, and succeed.
            init_failed = init && !answer_succeeded(answer);
            if (init_failed && broken_.empty())
                broken_ = "the Pool's initializer failed in worker " + std::to_string(pid) + ": " + failure_of(answer);
            if (init_failed) terminated_ = true;
        }
        reading.unlock();  // completing runs hooks: they must not hold up this worker's reader
        finish_with_answer(*st, std::move(answer), pid);
        if (init_failed) platform::signal_efd(bell_);
        dispatch();  // the worker is free for the next pending task
        return true;
    }

    // With w.reader held, in the manager: a worker's pipe ended, or its process did. It died, or
    // it exited after its maxtasksperchild tasks.
    void lost(Worker& w) {
        const pid_t pid = w.proc->pid();
        if (!w.proc->join(1.0)) {  // its pipe broke but it lives on: it is of no use
            w.proc->kill();
            w.proc->join();
        }
        const int code = w.proc->exitcode().value_or(-SIGKILL);
        std::optional<Task> held;
        bool initializing, breaking;
        {
            std::lock_guard lock(m_);
            initializing = std::exchange(w.initializing, false);
            const bool renewal = code == 0 && maxtasks_ != 0 && w.done >= maxtasks_ && !w.current;
            breaking = !renewal && (break_on_loss_ || initializing);
            if (!breaking) hand_back_untaken(w);  // it is dead: what it took is final
            held = std::move(w.current);
            w.current.reset();
            w.stopped = true;  // no task may be handed to the dead slot
        }
        w.conn.close();
        if (breaking) {
            const std::string how = WorkerLost(pid, code).what();
            const std::string why = initializing
                                        ? "the Pool's initializer ended worker " + std::to_string(pid) + ": " + how
                                        : "the Pool is broken: " + how;
            break_pool(why);
            if (held) finish(*held->st, {}, std::make_exception_ptr(BrokenPool(why)));
            return;
        }
        if (held) finish(*held->st, {}, std::make_exception_ptr(WorkerLost(pid, code)));
        try {
            start_worker(w);  // the slot is stopped: no other thread touches it meanwhile
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

    // Fails what is left and stops the workers: the end of a terminate() or of a broken pool.
    void shut_down() noexcept {
        std::deque<Task> left;
        std::vector<std::optional<Task>> held;
        std::string broken;
        {
            std::lock_guard lock(m_);
            left.swap(pending_);
            broken = broken_;
            for (auto& w : workers_) {
                held.push_back(std::move(w->current));
                w->current.reset();
            }
        }
        const auto why = broken.empty()
                             ? std::make_exception_ptr(ValueError("the Pool was terminated before the task finished"))
                             : std::make_exception_ptr(BrokenPool(broken));
        for (auto& t : left) finish(*t.st, {}, why);
        for (auto& t : held)
            if (t) finish(*t->st, {}, why);
        for (auto& w : workers_) {
            std::lock_guard reading(w->reader);
            if (w->stopped) continue;
            try {
                w->conn.close();
                if (w->proc && w->proc->is_alive()) w->proc->terminate();
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

    bool busy() {
        std::lock_guard lock(m_);
        return std::any_of(workers_.begin(), workers_.end(), [](const auto& w) { return bool(w->current); });
    }

    void run_posted() {
        std::deque<std::function<void()>> todo;
        {
            std::lock_guard lock(m_);
            todo.swap(posted_);
        }
        for (const auto& fn : todo) run_hook(fn);
    }

    // Returns when the pool is closed and its work done (the workers are told to stop), or when it
    // is terminated or broken.
    void serve() {
        for (;;) {
            bool closing;
            {
                std::lock_guard lock(m_);
                if (terminated_) return;
                closing = closed_ && pending_.empty();
            }
            dispatch();
            if (closing && !busy()) {
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
                return;
            }
            // Each worker's pipe, and its process: a pipe whose other end some other process
            // inherited by chance would never show the worker's death.
            std::vector<Waitable> objs{Waitable(bell_.get())};
            for (auto& w : workers_) {
                if (w->stopped) continue;
                objs.emplace_back(w->conn);
                objs.emplace_back(*w->proc);
            }
            auto ready = wait(objs);
            platform::drain_efd(bell_);
            run_posted();
            auto is_ready = [&](const Waitable& o) { return std::find(ready.begin(), ready.end(), o) != ready.end(); };
            for (auto& w : workers_) {
                if (w->stopped) continue;
                const bool answered = is_ready(Waitable(w->conn));
                if (!answered && !is_ready(Waitable(*w->proc))) continue;
                std::unique_lock reading(w->reader);  // a waiting thread may be reading it: then it is ours next
                if (answered) {
                    collect(*w, reading, true);
                } else if (!w->conn.poll(0.0) && !w->proc->is_alive()) {
                    lost(*w);  // dead, and its pipe shows nothing: it will not
                }
            }
        }
    }

    void manage() {
        t_manager_of = this;
        try {
            serve();
        } catch (const std::exception& e) {
            break_pool(std::string("the Pool's manager failed: ") + e.what());
        }
        bool stopped;
        {
            std::lock_guard lock(m_);
            stopped = terminated_;
        }
        if (stopped) shut_down();
        std::deque<std::function<void()>> left;
        {
            std::lock_guard lock(m_);
            manager_running_ = false;
            left.swap(posted_);
        }
        for (const auto& fn : left) run_hook(fn);
    }

    const std::string method_;
    const unsigned maxtasks_;
    const bool break_on_loss_;
    std::shared_ptr<const std::string> init_;  // the initializer's task message, or null
    unsigned started_ = 0;
    platform::Fd bell_;
    mutable std::mutex m_;
    std::deque<Task> pending_;
    std::deque<std::function<void()>> posted_;  // for the manager thread to run
    bool manager_running_ = false;
    bool closed_ = false;
    bool terminated_ = false;
    std::string broken_;  // why the pool is broken, or empty
    std::vector<int> pids_;
    std::vector<std::unique_ptr<Worker>> workers_;  // a fixed set of slots
    std::mutex symbols_m_;
    std::map<void*, Symbol> symbols_;
    std::mutex lifecycle_m_;
    std::thread manager_;
};

std::shared_ptr<PoolCore> make_pool(unsigned processes, const PoolOptions& options) {
    if (processes == 0) throw ValueError("Number of processes must be at least 1");
    const std::string method = options.start_method.empty() ? get_start_method() : options.start_method;
    auto core = std::make_shared<ProcessPoolCore>(processes, method, options);
    core->run();
    return core;
}

bool try_read_answer(PoolCore& core, TaskState& st) {
    return core.try_read_answer(st);
}

void when_done_user(const std::shared_ptr<TaskState>& st, std::function<void()> fn) {
    {
        std::lock_guard lock(st->m);
        if (!st->done) {
            st->on_done.push_back([st = st.get(), fn = std::move(fn)] {
                if (st->pool && st->pool == t_manager_of) return run_hook(fn);
                if (auto core = st->core.lock())
                    if (core->post(fn)) return;
                run_hook(fn);  // the pool has ended: nothing else runs callbacks any more
            });
            return;
        }
    }
    run_hook(fn);
}

std::shared_ptr<TaskState> submit(PoolCore& core, Invoker invoker, void* fn, std::string_view args) {
    std::string msg = core.head(invoker, fn);
    msg += args;
    return core.submit(std::move(msg));
}
std::string task_head(PoolCore& core, Invoker invoker, void* fn) {
    return core.head(invoker, fn);
}
std::shared_ptr<TaskState> submit_message(PoolCore& core, std::string message) {
    return core.submit(std::move(message));
}
bool cancel_task(PoolCore& core, const std::shared_ptr<TaskState>& st) {
    return st && core.cancel(st);
}
void cancel_pending(PoolCore& core) {
    core.cancel(nullptr);
}
void pool_close(PoolCore& core) {
    core.close();
}
void pool_terminate(PoolCore& core) noexcept {
    core.terminate();
}
void pool_join(PoolCore& core) {
    core.join();
}
std::vector<pid_t> pool_pids(const PoolCore& core) {
    auto p = core.pids();
    return std::vector<pid_t>(p.begin(), p.end());
}

}  // namespace detail

Pool::Pool(std::optional<unsigned> processes, PoolOptions options)
    : core_(detail::make_pool(processes.value_or(static_cast<unsigned>(cpu_count())), options)),
      processes_(processes.value_or(static_cast<unsigned>(cpu_count()))) {}

}  // namespace mprocess
