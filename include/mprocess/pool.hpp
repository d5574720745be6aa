// Pool: a fixed set of worker processes that run tasks, as multiprocessing.Pool.
//
//     int square(int x) { return x * x; }
//     mp::Pool pool(3);
//     std::vector<int> r = pool.map(square, std::vector<int>{31, 53, 79});   // {961, 2809, 6241}
//     mp::AsyncResult<int> a = pool.apply_async(square, 12);
//     int v = a.get();
//
// Targets are plain functions (or lambdas without captures), under every start method: a task
// names its function as (object build-id, offset), as a spawned Process target does. Arguments and
// results are any serializable types; the result type is deduced from the function.
//
// Each worker has its own pipe, and a manager thread in this process knows which task each worker
// holds. So, unlike Python's Pool:
//  - a task that throws makes get() throw RemoteError (the exception's type, message, and the
//    worker's pid), and the pool goes on;
//  - a worker that dies (SIGKILL, a segfault, the OOM killer) fails exactly the task it held, with
//    WorkerLost (its pid and signal), and is replaced; the other tasks complete.
// Leaving the scope terminates the workers, like Python's `with Pool() as p:`.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "mprocess/detail/spawn.hpp"
#include "mprocess/error.hpp"
#include "mprocess/serialize.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

// A task raised an exception in a worker.
class RemoteError : public Error {
public:
    RemoteError(std::string type, std::string message, pid_t pid);
    const std::string& type_name() const noexcept { return type_; }
    const std::string& message() const noexcept { return message_; }
    pid_t pid() const noexcept { return pid_; }

private:
    std::string type_, message_;
    pid_t pid_;
};

// The worker running a task died before it could answer.
class WorkerLost : public Error {
public:
    WorkerLost(pid_t pid, int exitcode);
    pid_t pid() const noexcept { return pid_; }
    // The signal that killed it (SIGKILL, SIGSEGV, ...), or 0 if it exited.
    int signal() const noexcept { return signal_; }
    // As Process::exitcode(): -signal, or the code it exited with.
    int exitcode() const noexcept { return exitcode_; }

private:
    pid_t pid_;
    int signal_;
    int exitcode_;
};

struct PoolOptions {
    std::string start_method{};     // default: get_start_method()
    unsigned maxtasksperchild = 0;  // a worker is replaced after this many tasks; 0: never
};

namespace detail {

// Runs one task in a worker: decodes the arguments, calls the function, encodes the result.
using Invoker = void (*)(void* fn, std::string_view args, std::string& result);

template <class Fn, class R, class... Args>
void invoke_task(void* fn, std::string_view args, std::string& result) {
    auto tuple = decode<std::tuple<Args...>>(args);
    auto f = reinterpret_cast<Fn>(fn);
    if constexpr (std::is_void_v<R>) {
        std::apply(f, tuple);
        result.clear();
    } else {
        result = encode(std::apply(f, tuple));
    }
}

// A chunk of a map: a vector of arguments in, a vector of results out.
template <class Fn, class R, class T>
void invoke_chunk(void* fn, std::string_view args, std::string& result) {
    auto items = decode<std::vector<T>>(args);
    auto f = reinterpret_cast<Fn>(fn);
    std::vector<R> out;
    out.reserve(items.size());
    for (auto& item : items) out.push_back(f(item));
    result = encode(out);
}

// A chunk of a starmap: each item is a tuple of arguments.
template <class Fn, class R, class Tuple>
void invoke_star_chunk(void* fn, std::string_view args, std::string& result) {
    auto items = decode<std::vector<Tuple>>(args);
    auto f = reinterpret_cast<Fn>(fn);
    std::vector<R> out;
    out.reserve(items.size());
    for (auto& item : items) out.push_back(std::apply(f, item));
    result = encode(out);
}

// Told when any of several tasks finishes (imap_unordered waits on it).
struct Notifier {
    std::mutex m;
    std::condition_variable cv;
};

struct TaskState {
    std::mutex m;
    std::condition_variable cv;
    std::shared_ptr<Notifier> notifier;  // set before the task is submitted
    bool done = false;
    std::string result;        // the encoded result, when it succeeded
    std::exception_ptr error;  // RemoteError, WorkerLost, or the pool's end
};

class PoolCore;

std::shared_ptr<PoolCore> make_pool(unsigned processes, const PoolOptions& options);
std::shared_ptr<TaskState> submit(PoolCore& core, Invoker invoker, void* fn, std::string args,
                                  std::shared_ptr<Notifier> notifier = nullptr);
void pool_close(PoolCore& core);
void pool_terminate(PoolCore& core) noexcept;
void pool_join(PoolCore& core);
std::vector<pid_t> pool_pids(const PoolCore& core);

// Waits for the task; true once done.
bool wait_task(TaskState& st, const Timeout& timeout);

}  // namespace detail

template <class R>
class AsyncResult {
public:
    // Waits up to the timeout (TimeoutError), then returns the result or throws the task's error.
    R get(Timeout timeout = forever) const {
        if (!detail::wait_task(*st_, timeout)) throw TimeoutError("the task's result is not ready");
        std::lock_guard lock(st_->m);
        if (st_->error) std::rethrow_exception(st_->error);
        if constexpr (!std::is_void_v<R>) return decode<R>(st_->result);
    }
    void wait(Timeout timeout = forever) const { detail::wait_task(*st_, timeout); }
    bool ready() const {
        std::lock_guard lock(st_->m);
        return st_->done;
    }
    // ValueError if not ready, as Python.
    bool successful() const {
        std::lock_guard lock(st_->m);
        if (!st_->done) throw ValueError("the task is not ready");
        return !st_->error;
    }

private:
    friend class Pool;
    template <class>
    friend class IMapIterator;
    explicit AsyncResult(std::shared_ptr<detail::TaskState> st) : st_(std::move(st)) {}
    std::shared_ptr<detail::TaskState> st_;
};

// What imap() and imap_unordered() return: the results one by one, in order or as they come.
// next(timeout) gives the next one (TimeoutError if it is not there in time; a task's error is
// thrown when its result's turn comes) and std::nullopt after the last; it is also a range.
template <class R>
class IMapIterator {
public:
    std::optional<R> next(Timeout timeout = forever) {
        while (pos_ == buf_.size()) {
            if (!fill(timeout)) return std::nullopt;
        }
        return std::move(buf_[pos_++]);
    }

    class iterator {
    public:
        using value_type = R;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(IMapIterator* it) : it_(it) { ++*this; }
        const R& operator*() const { return *cur_; }
        iterator& operator++() {
            cur_ = it_->next();
            if (!cur_) it_ = nullptr;
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& a, const iterator& b) { return a.it_ == b.it_; }

    private:
        IMapIterator* it_ = nullptr;
        std::optional<R> cur_;
    };
    iterator begin() { return iterator(this); }
    iterator end() { return iterator(); }

private:
    friend class Pool;
    IMapIterator(std::vector<AsyncResult<std::vector<R>>> parts, bool ordered,
                 std::shared_ptr<detail::Notifier> notifier)
        : parts_(std::move(parts)), taken_(parts_.size(), false), ordered_(ordered), notifier_(std::move(notifier)) {}

    // Loads the next chunk's results into buf_; false when none is left.
    bool fill(const Timeout& timeout) {
        std::size_t pick = parts_.size();
        if (ordered_) {
            while (next_ < parts_.size() && taken_[next_]) ++next_;
            pick = next_;
        } else {
            auto ready = [&] {
                for (std::size_t i = 0; i < parts_.size(); ++i)
                    if (!taken_[i] && parts_[i].ready()) return pick = i, true;
                return false;
            };
            bool left = std::find(taken_.begin(), taken_.end(), false) != taken_.end();
            if (!left) return false;
            std::unique_lock lock(notifier_->m);
            if (timeout.infinite()) {
                notifier_->cv.wait(lock, ready);
            } else if (!notifier_->cv.wait_for(lock, timeout.duration(), ready)) {
                throw TimeoutError("no result ready in time");
            }
        }
        if (pick == parts_.size()) return false;
        try {
            buf_ = parts_[pick].get(timeout);
        } catch (const TimeoutError&) {
            throw;  // not there yet: ask again later
        } catch (...) {
            taken_[pick] = true;  // the task's error is its result: the next call moves on, as Python's
            throw;
        }
        taken_[pick] = true;
        pos_ = 0;
        return true;
    }

    std::vector<AsyncResult<std::vector<R>>> parts_;
    std::vector<bool> taken_;
    bool ordered_;
    std::shared_ptr<detail::Notifier> notifier_;
    std::size_t next_ = 0;
    std::vector<R> buf_;
    std::size_t pos_ = 0;
};

class Pool {
public:
    // Python's Pool(processes=None): cpu_count() workers by default; Pool(0) throws ValueError.
    explicit Pool(std::optional<unsigned> processes = std::nullopt, PoolOptions options = {});
    ~Pool() { detail::pool_terminate(*core_); }
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    template <class F, class... A>
    auto apply_async(F f, A&&... args) {
        using Fp = detail::function_pointer_t<F>;
        static_assert(!std::is_void_v<Fp>,
                      "mprocess: a Pool task must be a plain function or a lambda without captures");
        using R = std::invoke_result_t<Fp, std::decay_t<A>&...>;
        Fp fp = f;
        auto st = detail::submit(*core_, &detail::invoke_task<Fp, R, std::decay_t<A>...>, reinterpret_cast<void*>(fp),
                                 encode(std::tuple<std::decay_t<A>...>(std::forward<A>(args)...)));
        return AsyncResult<R>(std::move(st));
    }

    template <class F, class... A>
    auto apply(F f, A&&... args) {
        return apply_async(f, std::forward<A>(args)...).get();
    }

    // Python's map(func, iterable, chunksize): results in order; chunksize 0 means
    // ceil(n / (4 * workers)), as Python.
    template <class F, class T>
    auto map(F f, const std::vector<T>& items, std::size_t chunksize = 0) {
        static_assert(is_target<F>, "mprocess: a Pool task must be a plain function or a lambda without captures");
        using Fp = detail::function_pointer_t<F>;
        using R = std::invoke_result_t<Fp, T&>;
        return run_chunks<R>(&detail::invoke_chunk<Fp, R, T>, Fp(f), items, chunksize);
    }

    // Python's starmap(func, iterable_of_tuples, chunksize): f(args...) for each tuple.
    template <class F, class... T>
    auto starmap(F f, const std::vector<std::tuple<T...>>& items, std::size_t chunksize = 0) {
        static_assert(is_target<F>, "mprocess: a Pool task must be a plain function or a lambda without captures");
        using Fp = detail::function_pointer_t<F>;
        using R = std::invoke_result_t<Fp, T&...>;
        return run_chunks<R>(&detail::invoke_star_chunk<Fp, R, std::tuple<T...>>, Fp(f), items, chunksize);
    }

    // Python's imap(func, iterable, chunksize=1): results in order, each as soon as it and those
    // before it are ready.
    template <class F, class T>
    auto imap(F f, const std::vector<T>& items, std::size_t chunksize = 1) {
        return make_imap<F, T>(f, items, chunksize, true);
    }
    // Python's imap_unordered: results as they are ready.
    template <class F, class T>
    auto imap_unordered(F f, const std::vector<T>& items, std::size_t chunksize = 1) {
        return make_imap<F, T>(f, items, chunksize, false);
    }

    // No more tasks; join() then waits for the workers to finish the queued ones and exit.
    void close() { detail::pool_close(*core_); }
    // Stops the workers now; unfinished tasks fail with ValueError.
    void terminate() { detail::pool_terminate(*core_); }
    void join() { detail::pool_join(*core_); }
    // Not in Python's API: the workers' pids now.
    std::vector<pid_t> pids() const { return detail::pool_pids(*core_); }

private:
    template <class F>
    static constexpr bool is_target = !std::is_void_v<detail::function_pointer_t<F>>;

    template <class F, class T>
    auto make_imap(F f, const std::vector<T>& items, std::size_t chunksize, bool ordered) {
        static_assert(is_target<F>, "mprocess: a Pool task must be a plain function or a lambda without captures");
        using Fp = detail::function_pointer_t<F>;
        using R = std::invoke_result_t<Fp, T&>;
        if (chunksize == 0) throw ValueError("chunksize must be at least 1");
        auto notifier = std::make_shared<detail::Notifier>();
        auto parts = submit_chunks<R>(&detail::invoke_chunk<Fp, R, T>, Fp(f), items, chunksize, notifier);
        return IMapIterator<R>(std::move(parts), ordered, std::move(notifier));
    }

    // One task per chunk of `chunksize` items.
    template <class R, class Fp, class T>
    std::vector<AsyncResult<std::vector<R>>> submit_chunks(detail::Invoker invoker, Fp fp, const std::vector<T>& items,
                                                           std::size_t chunksize,
                                                           const std::shared_ptr<detail::Notifier>& notifier) {
        std::vector<AsyncResult<std::vector<R>>> parts;
        for (std::size_t i = 0; i < items.size(); i += chunksize) {
            std::vector<T> chunk(items.begin() + static_cast<std::ptrdiff_t>(i),
                                 items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), i + chunksize)));
            parts.push_back(AsyncResult<std::vector<R>>(
                detail::submit(*core_, invoker, reinterpret_cast<void*>(fp), encode(chunk), notifier)));
        }
        return parts;
    }

    template <class R, class Fp, class T>
    std::vector<R> run_chunks(detail::Invoker invoker, Fp fp, const std::vector<T>& items, std::size_t chunksize) {
        if (chunksize == 0) {
            const std::size_t per = 4 * processes_;
            chunksize = items.empty() ? 1 : (items.size() + per - 1) / per;
        }
        auto parts = submit_chunks<R>(invoker, fp, items, chunksize, nullptr);
        std::vector<R> out;
        out.reserve(items.size());
        for (auto& p : parts)
            for (auto& r : p.get()) out.push_back(std::move(r));
        return out;
    }

    std::shared_ptr<detail::PoolCore> core_;
    unsigned processes_;
};

}  // namespace mprocess
