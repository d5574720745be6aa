// SPDX-License-Identifier: Apache-2.0
#include "pool/core.hpp"

#include <algorithm>
#include <utility>

#include "mprocess/pool.hpp"
#include "pool/task.hpp"

namespace mprocess::detail {

namespace {

double seconds_of(const TaskState& st) {
    return std::chrono::duration<double>(st.timeout.value_or(std::chrono::nanoseconds(0))).count();
}

// An attempt's timeout: the task's, or the pool's, for each of a chunk's items.
std::optional<std::chrono::nanoseconds> attempt_timeout(const std::optional<Timeout>& t, std::size_t items) {
    if (!t || t->infinite()) return std::nullopt;
    const auto each = t->duration();
    const auto n = static_cast<std::chrono::nanoseconds::rep>(std::max<std::size_t>(items, 1));
    if (each.count() > std::chrono::nanoseconds::max().count() / n) return std::nullopt;  // longer than forever
    return each * n;
}

}  // namespace

SlotCore::SlotCore(std::size_t slots, bool manager_sees_answers, TaskDefaults defaults)
    : slots_(slots), manager_sees_answers_(manager_sees_answers), defaults_(defaults) {}

SlotCore::~SlotCore() = default;

void SlotCore::start_manager() {
    manager_running_ = true;
    manager_ = std::thread([this] { manage(); });
}

std::string SlotCore::head(Invoker invoker, void* fn) {
    auto symbol = [this](void* addr) {
        std::lock_guard lock(symbols_m_);
        auto it = symbols_.find(addr);
        if (it == symbols_.end()) it = symbols_.emplace(addr, code_symbol(addr)).first;
        return it->second;
    };
    return symbols_head(symbol(reinterpret_cast<void*>(invoker)), symbol(fn));
}

std::shared_ptr<TaskState> SlotCore::submit(std::string message, TaskSpec spec) {
    auto st = std::make_shared<TaskState>();
    st->pool = this;
    st->core = weak_from_this();
    st->label = spec.label.empty() ? "task " + std::to_string(++submitted_) : std::move(spec.label);
    st->timeout = attempt_timeout(spec.timeout ? spec.timeout : defaults_.timeout, spec.items);
    st->retries = spec.retries.value_or(defaults_.retries);
    Task t{std::make_shared<const std::string>(std::move(message)), st};
    std::optional<std::pair<std::size_t, std::uint64_t>> slot;
    bool wake_manager;
    {
        std::lock_guard lock(m_);
        if (!broken_.empty()) throw BrokenPool(broken_);
        if (closed_ || terminated_) throw ValueError("Pool not running");
        // An idle worker takes it from this thread: no hop through the manager.
        if (pending_.empty()) slot = reserve(t);
        if (!slot) pending_.push_back(t);
        // The manager sleeps until the nearest deadline it knew of: a watched task is news to it.
        wake_manager = !slot || (manager_idle_ && !manager_sees_answers_) || watched(*st);
    }
    if (slot) send(slot->first, t, slot->second);
    if (wake_manager) wake();
    return st;
}

bool SlotCore::try_read_answer(TaskState& st) {
    const int slot = st.slot.load(std::memory_order_acquire);
    if (slot < 0 || static_cast<std::size_t>(slot) >= slots_.size()) return false;
    return read_answer(static_cast<std::size_t>(slot));
}

// User callbacks run on the manager thread, one at a time, as in Python.
bool SlotCore::post(std::function<void()> fn) {
    {
        std::lock_guard lock(m_);
        if (!manager_running_) return false;
        posted_.push_back(std::move(fn));
    }
    wake();
    return true;
}

bool SlotCore::cancel(const std::shared_ptr<TaskState>& st) {
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

bool SlotCore::cancel_running(const std::shared_ptr<TaskState>& st) {
    std::exception_ptr error;
    {
        std::lock_guard lock(m_);
        for (std::size_t i = 0; i < slots_.size() && !error; ++i) {
            Slot& s = slots_[i];
            if (!s.current || s.current->st != st || s.stopping == Stopping::cancelled) continue;
            if (!stop_worker(i, false)) return false;
            s.stopping = Stopping::cancelled;
            s.deadline.reset();
            s.kill_at = Timeout::clock::now() + kStopGrace;
            const TaskReport r = report_of(i, *st);
            error = std::make_exception_ptr(CancelledError(r.task + " was cancelled while it ran: worker " + r.worker +
                                                           " (pid " + std::to_string(r.pid) + ") was stopped"));
        }
    }
    if (!error) return false;
    {
        std::lock_guard lock(st->m);
        if (st->done) return false;  // it answered first
        st->cancelled = true;
    }
    finish(*st, {}, error);
    wake();  // the manager's next deadline: the stop's grace
    return true;
}

std::vector<WorkerInfo> SlotCore::workers() const {
    std::vector<WorkerInfo> out;
    std::lock_guard lock(m_);
    const auto now = Timeout::clock::now();
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        const Slot& s = slots_[i];
        const TaskReport r = worker_report(i);
        WorkerInfo w{.pid = r.pid, .name = r.worker, .rss = worker_rss(i)};
        if (s.current && !s.initializing && s.stopping == Stopping::no) {
            w.task = s.current->st->label;
            w.running_for = std::chrono::duration<double>(now - s.since).count();
        }
        out.push_back(std::move(w));
    }
    return out;
}

void SlotCore::close() {
    {
        std::lock_guard lock(m_);
        closed_ = true;
    }
    wake();
}

void SlotCore::join() {
    {
        std::lock_guard lock(m_);
        if (!closed_ && !terminated_) throw ValueError("join() of a Pool that is still running: close() it first");
    }
    if (on_callback_thread(this)) throw ValueError("join() of a Pool in one of its own callbacks would never end");
    std::lock_guard lock(lifecycle_m_);
    if (manager_.joinable()) manager_.join();
}

void SlotCore::terminate() noexcept {
    {
        std::lock_guard lock(m_);
        terminated_ = true;
    }
    wake();
    if (on_callback_thread(this)) return;
    std::lock_guard lock(lifecycle_m_);
    if (manager_.joinable()) manager_.join();
    shut_down();  // for a pool whose manager had already ended after close(), or never started
}

void SlotCore::kill() noexcept {
    halt_hard_.store(true, std::memory_order_release);
    terminate();
}

std::optional<std::pair<std::size_t, std::uint64_t>> SlotCore::reserve(const Task& t) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        Slot& s = slots_[i];
        if (s.current || s.stopping != Stopping::no || !can_take(i)) continue;
        {
            std::lock_guard lock(t.st->m);
            t.st->started = true;
        }
        t.st->slot.store(static_cast<int>(i), std::memory_order_release);
        s.current = t;
        s.since = Timeout::clock::now();
        s.deadline.reset();
        if (t.st->timeout) s.deadline = s.since + *t.st->timeout;
        return std::pair{i, reserved(i)};
    }
    return std::nullopt;
}

void SlotCore::dispatch() {
    for (;;) {
        std::optional<std::pair<std::size_t, std::uint64_t>> slot;
        Task t;
        {
            std::lock_guard lock(m_);
            if (pending_.empty() || terminated_) return;
            slot = reserve(pending_.front());
            if (!slot) return;
            t = std::move(pending_.front());
            pending_.pop_front();
        }
        send(slot->first, t, slot->second);
        if (watched(*t.st) && !on_callback_thread(this)) wake();  // a deadline the manager must wake for
    }
}

void SlotCore::answered(std::size_t i, std::unique_lock<std::mutex>& reading, std::string answer, pid_t pid) {
    std::shared_ptr<TaskState> st;
    bool init_failed = false;
    {
        std::lock_guard lock(m_);
        Slot& s = slots_[i];
        if (!s.current) return;
        st = s.current->st;
        s.current.reset();
        s.deadline.reset();
        st->slot.store(-1, std::memory_order_release);  // a late reader must not read the slot's next answer
        const bool init = std::exchange(s.initializing, false);
        if (!init) ++s.done;
        // Past the memory limit after its task: renewed before it takes another.
        if (!init && defaults_.max_memory && s.stopping == Stopping::no && over_memory(i) && stop_worker(i, false)) {
            s.stopping = Stopping::renewing;
            s.kill_at = Timeout::clock::now() + kStopGrace;
        }
        // The pool breaks before this worker looks idle: a task handed to it now would run in a
        // worker whose initializer failed, and succeed. An initializer that leaves a worker past
        // the memory limit fails too: every worker would be renewed, forever.
        init_failed = init && !answer_succeeded(answer);
        const bool init_too_big = init && !init_failed && defaults_.max_memory && over_memory(i);
        if (init_failed && broken_.empty())
            broken_ = "the Pool's initializer failed in worker " + std::to_string(pid) + ": " + failure_of(answer);
        if (init_too_big && broken_.empty())
            broken_ = "the Pool's initializer left worker " + std::to_string(pid) + " at " +
                      std::to_string(slots_[i].rss_seen >> 20) + " MiB, past the memory limit of " +
                      std::to_string(defaults_.max_memory >> 20) + " MiB per worker";
        init_failed = init_failed || init_too_big;
        if (init_failed) terminated_ = true;
    }
    reading.unlock();  // completing runs hooks: they must not hold up this worker's reader
    finish_with_answer(*st, std::move(answer), pid);
    if (init_failed) wake();
    dispatch();  // the worker is free for the next pending task
}

void SlotCore::break_pool(std::string why) {
    {
        std::lock_guard lock(m_);
        if (broken_.empty()) broken_ = std::move(why);
        terminated_ = true;
    }
    wake();
}

void SlotCore::lost_task(Task t, Stopping why, int exitcode, TaskReport report) {
    if (why == Stopping::cancelled) return;  // it failed when it was cancelled
    TaskState& st = *t.st;
    std::exception_ptr error;
    {
        std::lock_guard lock(m_);
        report.task = st.label;
        report.earlier = st.attempts;
        // Each attempt's own story, without the task's name the final error begins with.
        TaskReport alone = report;
        alone.task.clear();
        alone.earlier.clear();
        std::string what;
        if (why == Stopping::timeout) {
            what = TaskTimeout(seconds_of(st), alone).what();
            error = std::make_exception_ptr(TaskTimeout(seconds_of(st), report));
        } else {
            const auto reason = why == Stopping::memory ? WorkerLost::Reason::memory_limit
                                : exitcode < 0          ? WorkerLost::Reason::signal
                                                        : WorkerLost::Reason::exit;
            what = WorkerLost(exitcode, reason, alone).what();
            error = std::make_exception_ptr(WorkerLost(exitcode, reason, report));
        }
        if (st.retries > 0 && !terminated_ && broken_.empty()) {
            --st.retries;
            st.attempts.push_back(std::move(what));
            {
                std::lock_guard st_lock(st.m);
                st.started = false;
            }
            st.slot.store(-1, std::memory_order_release);
            pending_.push_front(std::move(t));  // the next worker free takes it: a fresh one
            return;
        }
    }
    finish(st, {}, error);  // a timed-out task without retries has failed already: nothing happens
}

TaskReport SlotCore::report_of(std::size_t i, const TaskState& st) const {
    TaskReport r = worker_report(i);
    r.task = st.label;
    r.earlier = st.attempts;
    r.peak_rss = std::max(r.peak_rss, slots_[i].rss_seen);
    return r;
}

bool SlotCore::watched(const TaskState& st) const {
    return st.timeout.has_value() || defaults_.max_memory != 0;
}

bool SlotCore::over_memory(std::size_t i) {
    const std::uint64_t rss = worker_rss(i);
    slots_[i].rss_seen = std::max(slots_[i].rss_seen, rss);
    return rss > defaults_.max_memory;
}

Deadline SlotCore::next_deadline() const {
    Deadline next;
    bool running = false;
    for (const Slot& s : slots_) {
        const Deadline& d = s.stopping == Stopping::no ? s.deadline : s.kill_at;
        if (d && (!next || *d < *next)) next = d;
        running = running || (s.current && !s.initializing && s.stopping == Stopping::no);
    }
    if (defaults_.max_memory && running) {
        const auto look = memory_look_.value_or(Timeout::clock::now());
        if (!next || look < *next) next = look;
    }
    return next;
}

void SlotCore::expire() {
    std::vector<std::pair<std::shared_ptr<TaskState>, std::exception_ptr>> failed;
    {
        std::lock_guard lock(m_);
        const auto now = Timeout::clock::now();
        // Under a memory limit, every kMemoryLook: a worker past it while it runs a task is killed
        // at once (memory is the emergency: no grace), and its task fails, or runs again.
        if (defaults_.max_memory && (!memory_look_ || now >= *memory_look_)) {
            memory_look_ = now + kMemoryLook;
            for (std::size_t i = 0; i < slots_.size(); ++i) {
                Slot& s = slots_[i];
                if (!s.current || s.initializing || s.stopping != Stopping::no || !over_memory(i)) continue;
                if (!stop_worker(i, true)) continue;
                s.stopping = Stopping::memory;
                s.deadline.reset();
            }
        }
        for (std::size_t i = 0; i < slots_.size(); ++i) {
            Slot& s = slots_[i];
            if (s.stopping != Stopping::no) {
                if (s.kill_at && now >= *s.kill_at) {
                    stop_worker(i, true);
                    s.kill_at.reset();
                }
                continue;
            }
            if (!s.current || !s.deadline || now < *s.deadline) continue;
            s.deadline.reset();
            const auto& st = s.current->st;
            // A worker that cannot be stopped (an MPI rank) finishes the task in its own time:
            // its slot stays busy until it answers, and the answer is dropped.
            const bool stopping = stop_worker(i, false);
            if (stopping) {
                s.stopping = Stopping::timeout;
                s.kill_at = now + kStopGrace;
            }
            // With retries left, the task waits for its worker's end (lost_task), not to run twice at once.
            if (!stopping || st->retries == 0)
                failed.emplace_back(st, std::make_exception_ptr(TaskTimeout(seconds_of(*st), report_of(i, *st))));
        }
    }
    for (auto& [st, e] : failed) finish(*st, {}, e);
}

bool SlotCore::holding_locked() const {
    return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return bool(s.current); });
}

bool SlotCore::busy() const {
    std::lock_guard lock(m_);
    return holding_locked();
}

void SlotCore::run_posted() {
    std::deque<std::function<void()>> todo;
    {
        std::lock_guard lock(m_);
        todo.swap(posted_);
    }
    for (const auto& fn : todo) run_callback(fn);
}

// Returns when the pool is closed and its work done (the workers are told to stop), or when it is
// terminated or broken.
void SlotCore::serve() {
    for (;;) {
        bool closing;
        {
            std::lock_guard lock(m_);
            if (terminated_) return;
            closing = closed_ && pending_.empty();
        }
        dispatch();
        if (closing && !busy()) {
            stop_workers();
            return;
        }
        // Pending tasks count as held: a thread that has just read an answer may be handing the
        // next one to its slot, and a transport whose wait does not see answers must look for it.
        bool holding;
        Deadline until;
        {
            std::lock_guard lock(m_);
            holding = holding_locked() || !pending_.empty();
            manager_idle_ = !holding;
            until = next_deadline();
        }
        wait(holding, until);
        {
            std::lock_guard lock(m_);
            manager_idle_ = false;
        }
        run_posted();
        collect();
        expire();
    }
}

void SlotCore::manage() {
    mark_callback_thread(this);
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
    for (const auto& fn : left) run_callback(fn);
}

void SlotCore::shut_down() noexcept {
    std::deque<Task> left;
    std::vector<std::shared_ptr<TaskState>> held;
    std::string broken;
    {
        std::lock_guard lock(m_);
        left.swap(pending_);
        broken = broken_;
        for (auto& s : slots_)
            if (s.current) held.push_back(s.current->st);
    }
    const auto why = broken.empty()
                         ? std::make_exception_ptr(ValueError("the Pool was terminated before the task finished"))
                         : std::make_exception_ptr(BrokenPool(broken));
    for (auto& t : left) finish(*t.st, {}, why);
    for (auto& st : held) finish(*st, {}, why);
    halt_workers();
    std::lock_guard lock(m_);
    for (auto& s : slots_) s.current.reset();
}

}  // namespace mprocess::detail
