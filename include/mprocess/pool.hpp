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

#include <chrono>
#include <condition_variable>
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
    std::string start_method{};      // default: get_start_method()
    unsigned maxtasksperchild = 0;   // a worker is replaced after this many tasks; 0: never
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

struct TaskState {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::string result;          // the encoded result, when it succeeded
    std::exception_ptr error;    // RemoteError, WorkerLost, or the pool's end
};

class PoolCore;

std::shared_ptr<PoolCore> make_pool(unsigned processes, const PoolOptions& options);
std::shared_ptr<TaskState> submit(PoolCore& core, Invoker invoker, void* fn, std::string args);
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
    explicit AsyncResult(std::shared_ptr<detail::TaskState> st) : st_(std::move(st)) {}
    std::shared_ptr<detail::TaskState> st_;
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
        static_assert(!std::is_void_v<Fp>, "mprocess: a Pool task must be a plain function or a lambda without captures");
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

    template <class R, class Fp, class T>
    std::vector<R> run_chunks(detail::Invoker invoker, Fp fp, const std::vector<T>& items, std::size_t chunksize) {
        if (chunksize == 0) {
            const std::size_t per = 4 * processes_;
            chunksize = items.empty() ? 1 : (items.size() + per - 1) / per;
        }
        std::vector<AsyncResult<std::vector<R>>> parts;
        for (std::size_t i = 0; i < items.size(); i += chunksize) {
            std::vector<T> chunk(items.begin() + static_cast<std::ptrdiff_t>(i),
                                 items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), i + chunksize)));
            parts.push_back(
                AsyncResult<std::vector<R>>(detail::submit(*core_, invoker, reinterpret_cast<void*>(fp), encode(chunk))));
        }
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
