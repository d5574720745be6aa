// A Pool task's shared state, and the functions a worker runs to decode, call and encode.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mprocess/serialize.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess::detail {

template <class T>
inline constexpr bool is_vector_v = false;
template <class T, class A>
inline constexpr bool is_vector_v<std::vector<T, A>> = true;

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

// A chunk of a map: a vector of arguments in, a vector of results out. A starmap's items are
// tuples, unpacked into the call.
template <class Fn, class R, class T, bool Star>
void invoke_chunk(void* fn, std::string_view args, std::string& result) {
    auto items = decode<std::vector<T>>(args);
    auto f = reinterpret_cast<Fn>(fn);
    std::vector<R> out;
    out.reserve(items.size());
    for (auto& item : items) {
        if constexpr (Star)
            out.push_back(std::apply(f, item));
        else
            out.push_back(f(item));
    }
    result = encode(out);
}

// A chunk of a reduce: folds the chunk's items from the left into one value.
template <class Fn, class T>
void invoke_fold(void* fn, std::string_view args, std::string& result) {
    auto items = decode<std::vector<T>>(args);
    auto f = reinterpret_cast<Fn>(fn);
    T acc = std::move(items.at(0));
    for (std::size_t i = 1; i < items.size(); ++i) acc = f(std::move(acc), std::move(items[i]));
    result = encode(acc);
}

struct TaskState {
    std::mutex m;
    std::condition_variable cv;
    const void* pool = nullptr;  // the pool whose manager thread completes it
    bool done = false;
    bool started = false;  // handed to a worker
    bool cancelled = false;
    std::string result;        // the encoded result, when it succeeded
    std::exception_ptr error;  // RemoteError, WorkerLost, BrokenPool, the pool's end, cancellation
    std::vector<std::function<void()>> on_done;
    // A map's result: its chunks, each a vector of results, joined in order.
    bool joined = false;
    std::vector<std::shared_ptr<TaskState>> parts;
};

// Runs fn once the task is done: at once in this thread if it already is, otherwise in the thread
// that completes it (the pool's manager thread, as Python runs callbacks in its result thread).
// An exception from fn is reported on stderr; it cannot reach anyone else.
void when_done(const std::shared_ptr<TaskState>& st, std::function<void()> fn);
// Completes a task (the first call wins) and runs its hooks.
void finish(TaskState& st, std::string result, std::exception_ptr error);
// A task that is done when all parts are: failed with the first error to arrive, if any.
std::shared_ptr<TaskState> join_parts(std::vector<std::shared_ptr<TaskState>> parts);
// Waits for the task; true once done. Throws instead of waiting from the pool's own manager
// thread (a callback), where the wait could never end.
bool wait_task(TaskState& st, const Timeout& timeout);

// The encoded result of a done, successful task, decoded; a joined map's chunks are concatenated.
template <class R>
R task_value(const TaskState& st) {
    if constexpr (std::is_void_v<R>) {
        return;
    } else {
        if constexpr (is_vector_v<R>) {
            if (st.joined) {
                R out;
                for (const auto& p : st.parts) {
                    auto part = decode<R>(p->result);
                    if (out.empty())
                        out = std::move(part);
                    else
                        out.insert(out.end(), std::make_move_iterator(part.begin()),
                                   std::make_move_iterator(part.end()));
                }
                return out;
            }
        }
        return decode<R>(st.result);
    }
}

}  // namespace mprocess::detail
