// SPDX-License-Identifier: Apache-2.0
#include "pool/core.hpp"

#include <algorithm>
#include <utility>

#include "mprocess/pool.hpp"
#include "pool/task.hpp"

namespace mprocess::detail {

SlotCore::SlotCore(std::size_t slots, bool manager_sees_answers)
    : slots_(slots), manager_sees_answers_(manager_sees_answers) {}

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

std::shared_ptr<TaskState> SlotCore::submit(std::string message) {
    auto st = std::make_shared<TaskState>();
    st->pool = this;
    st->core = weak_from_this();
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
        wake_manager = !slot || (manager_idle_ && !manager_sees_answers_);
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

std::optional<std::pair<std::size_t, std::uint64_t>> SlotCore::reserve(const Task& t) {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].current || !can_take(i)) continue;
        {
            std::lock_guard lock(t.st->m);
            t.st->started = true;
        }
        t.st->slot.store(static_cast<int>(i), std::memory_order_release);
        slots_[i].current = t;
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
        st->slot.store(-1, std::memory_order_release);  // a late reader must not read the slot's next answer
        const bool init = std::exchange(s.initializing, false);
        if (!init) ++s.done;
        // The pool breaks before this worker looks idle: a task handed to it now would run in a
        // worker whose initializer failed, and succeed.
        init_failed = init && !answer_succeeded(answer);
        if (init_failed && broken_.empty())
            broken_ = "the Pool's initializer failed in worker " + std::to_string(pid) + ": " + failure_of(answer);
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
        {
            std::lock_guard lock(m_);
            holding = holding_locked() || !pending_.empty();
            manager_idle_ = !holding;
        }
        wait(holding);
        {
            std::lock_guard lock(m_);
            manager_idle_ = false;
        }
        run_posted();
        collect();
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
