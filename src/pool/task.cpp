// SPDX-License-Identifier: Apache-2.0
#include "pool/task.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>

#include "mprocess/pool.hpp"
#include "platform/posix.hpp"
#include "wait/wait.hpp"

namespace mprocess::detail {
namespace {

using TaskHead = std::tuple<Symbol, Symbol>;
using Failure = std::tuple<std::string, std::string>;

// A thread waiting for a result spins longer than the shared tuning (wait/spin.hpp): it reads
// the worker's answer itself meanwhile, so a quick task is done without a wake-up, of this thread
// or of the manager (tens of microseconds each on a virtual machine).
constexpr std::chrono::nanoseconds kResultSpin = std::chrono::microseconds(50);
constexpr std::chrono::nanoseconds kResultYieldAfter = std::chrono::microseconds(5);
// Of its looks at `finished`, one in this many reads the worker's pipe (a try-lock and a look at
// shared memory, more than a look at one word).
constexpr unsigned kLooksPerRead = 64;

// The head, and a view of the arguments within msg.
std::pair<TaskHead, std::string_view> parse_task(std::string_view msg) {
    std::uint32_t n = 0;
    if (msg.size() < sizeof n) throw DecodeError("a task message too short for its head");
    std::memcpy(&n, msg.data(), sizeof n);
    if (msg.size() - sizeof n < n) throw DecodeError("a task message shorter than its head");
    return {decode<TaskHead>(msg.substr(sizeof n, n)), msg.substr(sizeof n + n)};
}

std::string type_of_current_exception() {
    const std::type_info* t = abi::__cxa_current_exception_type();
    if (!t) return "unknown";
    int status = 0;
    char* name = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
    std::string s = status == 0 && name ? name : t->name();
    std::free(name);
    return s;
}

// The pool whose manager this thread is, if any.
thread_local const void* t_manager_of = nullptr;

}  // namespace

std::string symbols_head(const Symbol& invoker, const Symbol& fn) {
    const std::string head = encode(TaskHead{invoker, fn});
    const auto n = static_cast<std::uint32_t>(head.size());
    std::string msg(reinterpret_cast<const char*>(&n), sizeof n);
    msg += head;
    return msg;
}

std::string task_message_head(Invoker invoker, void* fn) {
    return symbols_head(code_symbol(reinterpret_cast<void*>(invoker)), code_symbol(fn));
}

void run_task_message(std::string_view msg, std::string& answer) {
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
    answer.assign(1, '\0');  // a worker's answers reuse one buffer: its pages are touched once
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
}

std::string failure_answer(const std::string& type, const std::string& message) {
    return std::string(1, '\1') + encode(Failure{type, message});
}

bool answer_succeeded(std::string_view answer) {
    return !answer.empty() && answer[0] == '\0';  // the result follows the status byte
}

std::string failure_of(std::string_view answer) {
    try {
        auto [type, what] = decode<Failure>(answer.substr(answer.empty() ? 0 : 1));
        return type + ": " + what;
    } catch (const Error& e) {
        return std::string("DecodeError: ") + e.what();
    }
}

void finish_with_answer(TaskState& st, std::string answer, pid_t pid) {
    if (answer_succeeded(answer)) {
        finish(st, std::move(answer), nullptr);  // the result follows the status byte
        return;
    }
    std::exception_ptr error;
    try {
        auto [type, what] = decode<Failure>(std::string_view(answer).substr(answer.empty() ? 0 : 1));
        error = make_remote_error(type, what, "worker " + std::to_string(pid), pid);
    } catch (const Error& e) {
        error = make_remote_error("DecodeError", e.what(), "worker " + std::to_string(pid), pid);
    }
    finish(st, {}, error);
}

void cancel_unstarted(TaskState& st) {
    {
        std::lock_guard lock(st.m);
        st.cancelled = true;
    }
    finish(st, {}, std::make_exception_ptr(CancelledError("the task was cancelled before it started")));
}

void mark_callback_thread(const void* core) noexcept {
    t_manager_of = core;
}

bool on_callback_thread(const void* core) noexcept {
    return core && core == t_manager_of;
}

void run_callback(const std::function<void()>& fn) noexcept {
    try {
        fn();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mprocess: a Pool callback threw %s: %s\n", type_of_current_exception().c_str(), e.what());
    } catch (...) {
        std::fprintf(stderr, "mprocess: a Pool callback threw %s\n", type_of_current_exception().c_str());
    }
}

void finish(TaskState& st, std::string result, std::exception_ptr error) {
    std::vector<std::function<void()>> hooks;
    {
        std::lock_guard lock(st.m);
        if (st.done) return;
        st.done = true;
        st.result = std::move(result);
        st.error = std::move(error);
        hooks.swap(st.on_done);
        st.finished.store(1, std::memory_order_release);
    }
    FutexSleeper(st.finished, st.sleepers).wake(INT_MAX);
    for (const auto& h : hooks) run_callback(h);
}

}  // namespace mprocess::detail

namespace mprocess {

using detail::finish;
using detail::FutexSleeper;
using detail::kLooksPerRead;
using detail::kResultSpin;
using detail::kResultYieldAfter;
using detail::on_callback_thread;
using detail::Pace;
using detail::run_callback;
using detail::TaskState;
using detail::wait_until;

namespace {

void on_done(const std::shared_ptr<TaskState>& st, std::function<void()> fn) {
    {
        std::lock_guard lock(st->m);
        if (!st->done) {
            st->on_done.push_back(std::move(fn));
            return;
        }
    }
    run_callback(fn);
}

}  // namespace

void ApplyResult::when_done_user(std::function<void()> fn) const {
    const auto& st = st_;
    {
        std::lock_guard lock(st->m);
        if (!st->done) {
            st->on_done.push_back([st = st.get(), fn = std::move(fn)] {
                if (on_callback_thread(st->pool)) return run_callback(fn);
                if (auto core = st->core.lock())
                    if (core->post(fn)) return;
                run_callback(fn);  // the pool has ended: nothing else runs callbacks any more
            });
            return;
        }
    }
    run_callback(fn);
}

void ApplyResult::when_done(std::function<void()> fn) const {
    on_done(st_, std::move(fn));
}

bool ApplyResult::cancel() {
    if (st_->joined) {
        bool all = true;
        for (const auto& p : st_->parts) all = ApplyResult(p).cancel() && all;
        return all;
    }
    {
        std::lock_guard lock(st_->m);
        if (st_->cancelled) return true;
        if (st_->done) return false;
    }
    auto core = st_->core.lock();
    return core && core->cancel(st_);
}

bool ApplyResult::cancel(KillRunning) {
    if (st_->joined) {
        bool all = true;
        for (const auto& p : st_->parts) all = ApplyResult(p).cancel(kill_running) && all;
        return all;
    }
    if (cancel()) return true;
    auto core = st_->core.lock();
    // Running, or queued again meanwhile (its worker lost, with retries left).
    return core && (core->cancel_running(st_) || cancel());
}

bool ApplyResult::ready() const {
    std::lock_guard lock(st_->m);
    return st_->done;
}

bool ApplyResult::successful() const {
    std::lock_guard lock(st_->m);
    if (!st_->done) throw ValueError("the task is not ready");
    return !st_->error;
}

ApplyResult ApplyResult::join(const std::vector<ApplyResult>& results) {
    std::vector<std::shared_ptr<TaskState>> parts;
    parts.reserve(results.size());
    for (const auto& r : results) parts.push_back(r.st_);
    auto whole = std::make_shared<TaskState>();
    whole->joined = true;
    whole->pool = parts.empty() ? nullptr : parts.front()->pool;
    if (!parts.empty()) whole->core = parts.front()->core;
    whole->parts = parts;
    if (parts.empty()) {
        finish(*whole, {}, nullptr);
        return ApplyResult(whole);
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
        on_done(p, [count, whole, part = p.get()] {
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
    return ApplyResult(whole);
}

bool ApplyResult::wait_done(const Timeout& timeout) const {
    TaskState& st = *st_;
    if (!st.finished.load(std::memory_order_acquire) && on_callback_thread(st.pool))
        throw ValueError(
            "waiting for a Pool's result in one of its callbacks would never end: callbacks run "
            "in the thread that collects the results");
    // Asleep, it waits for whoever completes the task: the manager, or another waiting thread.
    unsigned looks = 0;
    auto done = [&](bool asleep) {
        if (st.finished.load(std::memory_order_acquire)) return true;
        if (asleep || looks++ % kLooksPerRead != 0) return false;
        if (auto core = st.core.lock()) core->try_read_answer(st);
        return st.finished.load(std::memory_order_acquire) != 0;
    };
    return wait_until(done, FutexSleeper(st.finished, st.sleepers), timeout.deadline(),
                      Pace{.spin = kResultSpin, .yield_after = kResultYieldAfter});
}

void ApplyResult::report_progress(std::size_t total, std::size_t chunksize, const Progress& progress) const {
    const auto& parts = st_->parts;
    struct Count {
        std::mutex m;
        std::condition_variable cv;
        std::size_t done = 0;
    };
    auto count = std::make_shared<Count>();
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const std::size_t n = std::min(chunksize, total - i * chunksize);
        on_done(parts[i], [count, n] {
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

}  // namespace mprocess
