// SPDX-License-Identifier: Apache-2.0
// A Pool task's shared state, and the functions a worker runs to decode, call and encode.
#pragma once

#include "mprocess/export.hpp"

#include <atomic>
#include <chrono>
#include <cstring>
#include <cstddef>
#include <exception>
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

#include "mprocess/serialize.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess::detail {

template <class T>
inline constexpr bool is_vector_v = false;
template <class T, class A>
inline constexpr bool is_vector_v<std::vector<T, A>> = true;

// What a map's chunk gives back: its results in order, or nothing for a function that returns void.
template <class R>
struct chunk_result {
    using type = std::vector<R>;
};
template <>
struct chunk_result<void> {
    using type = void;
};
template <class R>
using chunk_result_t = typename chunk_result<R>::type;

// Runs one task in a worker: decodes the arguments, calls the function, and appends the encoded
// result to `out`.
using Invoker = void (*)(void* fn, std::string_view args, std::string& out);

template <class Fn, class R, class... Args>
void invoke_task(void* fn, std::string_view args, std::string& out) {
    auto tuple = decode<std::tuple<Args...>>(args);
    auto f = reinterpret_cast<Fn>(fn);
    if constexpr (std::is_void_v<R>)
        std::apply(f, tuple);
    else
        encode_into(out, std::apply(f, tuple));
}

// A chunk of a map: a vector of arguments in, a vector of results out. A starmap's items are
// tuples, unpacked into the call.
template <class Fn, class R, class T, bool Star>
void invoke_chunk(void* fn, std::string_view args, std::string& out) {
    auto f = reinterpret_cast<Fn>(fn);
    if constexpr (std::is_void_v<R>) {
        // Nothing to answer but success: the caller knows how many items the chunk had.
        for (auto& item : decode<std::vector<T>>(args)) {
            if constexpr (Star)
                std::apply(f, item);
            else
                f(item);
        }
    } else if constexpr (!Star && flat_item_v<T> && flat_item_v<R>) {
        // Numbers in and out: each read from the message and its result written into the answer.
        const auto [in, n] = flat_items<T>(args);
        char* to = append_flat_items<R>(out, n);
        for (std::size_t i = 0; i < n; ++i) {
            T x;
            std::memcpy(&x, in + i * sizeof(T), sizeof(T));
            const R r = f(x);
            std::memcpy(to + i * sizeof(R), &r, sizeof(R));
        }
    } else {
        auto items = decode<std::vector<T>>(args);
        std::vector<R> results;
        results.reserve(items.size());
        for (auto& item : items) {
            if constexpr (Star)
                results.push_back(std::apply(f, item));
            else
                results.push_back(f(item));
        }
        encode_into(out, results);
    }
}

// Folds items from the left: f(f(f(a, b), c), d), as functools.reduce does. items is not empty.
template <class F, class T>
T fold_left(F f, std::vector<T> items) {
    T acc = std::move(items.front());
    for (std::size_t i = 1; i < items.size(); ++i) acc = f(std::move(acc), std::move(items[i]));
    return acc;
}

// A chunk of a reduce: its items folded into one value.
template <class Fn, class T>
void invoke_fold(void* fn, std::string_view args, std::string& out) {
    auto items = decode<std::vector<T>>(args);
    if (items.empty()) throw DecodeError("a reduce chunk without items");
    encode_into(out, fold_left(reinterpret_cast<Fn>(fn), std::move(items)));
}

struct TaskState;
}  // namespace mprocess::detail

namespace mprocess {
struct WorkerInfo;
}  // namespace mprocess

namespace mprocess::detail {

// How a task is to run, as submit() hears it: TaskOptions (pool.hpp) with what the Pool knows.
struct TaskSpec {
    std::string label{};                // "item 17 of map"; empty: the core numbers it, "task 12"
    std::optional<Timeout> timeout{};   // per item; none: the pool's default
    std::optional<unsigned> retries{};  // none: the pool's default
    std::size_t items = 1;              // a map's chunk: its timeout is the items' sum
};

// What a Pool runs on: worker processes on this machine (src/pool/local.cpp), or MPI ranks
// (src/pool/mpi.cpp), both over the one core in src/pool/core.hpp. The Pool's templates build task
// messages and AsyncResults; a core carries them to workers, completes the tasks with their
// answers, and runs user callbacks on one thread of its own.
class PoolCore : public std::enable_shared_from_this<PoolCore> {
public:
    virtual ~PoolCore() = default;
    // A task message's head: the invoker and the function, as symbols any worker can resolve. The
    // caller appends the encoded arguments (straight into the message: a map's chunk is big).
    virtual std::string head(Invoker invoker, void* fn) = 0;
    virtual std::shared_ptr<TaskState> submit(std::string message, TaskSpec spec) = 0;
    // A thread waiting for st may read its answer itself: true if it read one.
    virtual bool try_read_answer(TaskState& st) = 0;
    // Runs fn on the core's callback thread; false if that thread has ended.
    virtual bool post(std::function<void()> fn) = 0;
    // Takes back st (or every pending task, if null) if no worker has begun it.
    virtual bool cancel(const std::shared_ptr<TaskState>& st) = 0;
    // Stops st's worker if one is running it (the task fails with CancelledError); false if none
    // is, or if the workers cannot be stopped (MPI ranks).
    virtual bool cancel_running(const std::shared_ptr<TaskState>& st) = 0;
    virtual void close() = 0;
    virtual void join() = 0;
    virtual void terminate() noexcept = 0;
    // terminate(), with the workers killed (SIGKILL) rather than asked to end (SIGTERM).
    virtual void kill() noexcept = 0;
    virtual std::vector<pid_t> pids() const = 0;
    virtual std::vector<WorkerInfo> workers() const = 0;
};

// A task message for `invoker` and `fn`, to which the encoded arguments are appended (for the
// initializer, which is sent before any core exists). The library's own: only its cores call it.
std::string task_message_head(Invoker invoker, void* fn);

struct TaskState {
    std::mutex m;
    const void* pool = nullptr;    // the pool whose manager thread runs its callbacks
    std::weak_ptr<PoolCore> core;  // a thread waiting for the result may read it from the worker
    std::atomic<int> slot{-1};     // the worker that holds it, once one does
    bool done = false;
    // Done, readable without the mutex: the word waiters spin on, then sleep on (a futex, counted
    // by `sleepers`).
    std::atomic<std::uint32_t> finished{0};
    std::atomic<std::uint32_t> sleepers{0};
    bool started = false;  // handed to a worker
    bool cancelled = false;
    // Set once at submit(); then the core's, under its lock.
    std::string label;                                // "task 12", "items 0..124 of map"
    std::optional<std::chrono::nanoseconds> timeout;  // how long one attempt may run in a worker
    unsigned retries = 0;                             // attempts left after a worker lost or stopped
    std::vector<std::string> attempts;                // why each earlier attempt failed
    std::string result;        // the worker's answer, when it succeeded: a status byte, then the encoded result
    std::exception_ptr error;  // RemoteError, WorkerLost, BrokenPool, the pool's end, cancellation
    std::vector<std::function<void()>> on_done;
    // A map's result: its chunks, each a vector of results, joined in order.
    bool joined = false;
    std::vector<std::shared_ptr<TaskState>> parts;
};

inline std::string_view encoded_result(const TaskState& st) {
    return std::string_view(st.result).substr(st.result.empty() ? 0 : 1);
}

// The result of a done, successful task, decoded; a joined map's chunks are concatenated.
template <class R>
R task_value(const TaskState& st) {
    if constexpr (std::is_void_v<R>) {
        return;
    } else {
        if constexpr (is_vector_v<R>) {
            if (st.joined) {
                R out;
                for (const auto& p : st.parts) decode_append(out, encoded_result(*p));
                return out;
            }
        }
        return decode<R>(encoded_result(st));
    }
}

}  // namespace mprocess::detail
