// SPDX-License-Identifier: Apache-2.0
/// @file
/// Start methods and contexts, as Python's multiprocessing.context.
///
/// - **fork**: the child is a copy of the parent (any callable, no serialization). Default on
///   Linux, as in Python before 3.14. Unsafe after the parent started threads: see
///   process.hpp.
/// - **spawn**: the child is a fresh run of this program's binary: it inherits only the
///   descriptors it is given, and runs a plain function with serialized arguments.
/// - **forkserver**: children are forked from a server process that is itself spawned (so it never
///   has the parent's threads), on request over a private socket.
///
/// spawn and forkserver need the entry guard at the top of main(), the lecture's
/// `if __name__ == "__main__":` and freeze_support():
///
/// @code{.cpp}
/// int main(int argc, char** argv) {
///     mp::freeze_support(argc, argv);  // in a spawned child: runs its target and exits
///     ...
/// @endcode
///
/// Without it, starting a process with spawn or forkserver fails within seconds with an error
/// that names the fix, and the child can start no processes of its own.
#pragma once

#include "mprocess/export.hpp"

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mprocess/connection.hpp"
#include "mprocess/executor.hpp"
#include "mprocess/manager.hpp"
#include "mprocess/pool.hpp"
#include "mprocess/process.hpp"
#include "mprocess/queue.hpp"
#include "mprocess/shared_value.hpp"
#include "mprocess/synchronize.hpp"

namespace mprocess {

/// Sets the default start method, once; again throws unless force (ProcessError, as Python's
/// RuntimeError). An empty name unsets it, as Python's None. ValueError for a name that is not a
/// start method.
MPROCESS_EXPORT void set_start_method(std::string_view method, bool force = false);
/// set_start_method() by the enum.
MPROCESS_EXPORT void set_start_method(StartMethod method, bool force = false);
/// The default start method ("fork" unless set), by Python's name.
MPROCESS_EXPORT std::string get_start_method();
/// The methods this platform supports, default first.
MPROCESS_EXPORT std::vector<std::string> get_all_start_methods();

/// The entry guard: a no-op in a normal run; in a child started by spawn or forkserver it runs
/// the child's target and never returns. Call it first in main(), with main's arguments.
MPROCESS_EXPORT void freeze_support(int argc, char** argv);

/// A start method bound to the objects it creates, as Python's get_context(method): it has every
/// factory the module has. The method matters where processes are made (Process, Pool,
/// ProcessPoolExecutor, Manager); the other objects work alike under every method and are made
/// here so that code written against a context reads as Python's does:
///
/// @code{.cpp}
/// auto ctx = mp::get_context("spawn");
/// auto q = ctx.Queue<int>();
/// auto p = ctx.Process(worker, q);
/// auto pool = ctx.Pool(4);
/// @endcode
class MPROCESS_EXPORT Context {
public:
    /// A context for `method`; get_context() is the usual way to make one.
    explicit Context(StartMethod method) : method_(method) {}
    /// The context's method, by Python's name.
    std::string get_start_method() const { return std::string(to_string(method_)); }
    /// The context's method.
    StartMethod start_method() const noexcept { return method_; }

    /// A Process(target, args...) started by this context's method.
    template <class F, class... Args>
    requires std::invocable < std::decay_t<F>
    &, std::decay_t<Args>&... > mprocess::Process Process(F&& target, Args&&... args) const {
        return mprocess::Process(std::forward<F>(target), ProcessOptions{.start_method = method_},
                                 std::forward<Args>(args)...);
    }
    /// A Process with these options, its start_method replaced by this context's.
    template <class F, class... Args>
    requires std::invocable < std::decay_t<F>
    &, std::decay_t<Args>&... > mprocess::Process Process(F&& target, ProcessOptions options, Args&&... args) const {
        options.start_method = method_;
        return mprocess::Process(std::forward<F>(target), std::move(options), std::forward<Args>(args)...);
    }

    /// A Pool whose workers start by this context's method (options.start_method is replaced).
    mprocess::Pool Pool(std::optional<unsigned> processes = std::nullopt, PoolOptions options = {}) const {
        options.start_method = method_;
        return mprocess::Pool(processes, options);
    }
    /// A ProcessPoolExecutor whose workers start by this context's method.
    mprocess::ProcessPoolExecutor ProcessPoolExecutor(std::optional<unsigned> max_workers = std::nullopt,
                                                      ExecutorOptions options = {}) const {
        options.start_method = method_;
        return mprocess::ProcessPoolExecutor(max_workers, std::move(options));
    }
    /// A Manager whose server process starts by this context's method.
    mprocess::Manager Manager(ManagerOptions options = {}) const {
        options.start_method = method_;
        return mprocess::Manager(std::move(options));
    }

    /// `mp::Queue<T>(a...)`.
    template <class T, class... A>
    mprocess::Queue<T> Queue(A&&... a) const {
        return mprocess::Queue<T>(std::forward<A>(a)...);
    }
    /// `mp::JoinableQueue<T>(a...)`.
    template <class T, class... A>
    mprocess::JoinableQueue<T> JoinableQueue(A&&... a) const {
        return mprocess::JoinableQueue<T>(std::forward<A>(a)...);
    }
    /// `mp::SimpleQueue<T>()`.
    template <class T>
    mprocess::SimpleQueue<T> SimpleQueue() const {
        return mprocess::SimpleQueue<T>();
    }
    /// mp::Pipe(duplex, options).
    std::pair<Connection, Connection> Pipe(bool duplex = true, PipeOptions options = {}) const {
        return mprocess::Pipe(duplex, options);
    }

    /// A new mp::Lock.
    mprocess::Lock Lock() const { return {}; }
    /// A new mp::RLock.
    mprocess::RLock RLock() const { return {}; }
    /// mp::Semaphore(value).
    mprocess::Semaphore Semaphore(unsigned value = 1) const { return mprocess::Semaphore(value); }
    /// mp::BoundedSemaphore(value).
    mprocess::BoundedSemaphore BoundedSemaphore(unsigned value = 1) const { return mprocess::BoundedSemaphore(value); }
    /// mp::Condition over `lock` (a Lock or an RLock), or over a new RLock.
    template <class... A>
    mprocess::Condition Condition(A&&... lock) const {
        return mprocess::Condition(std::forward<A>(lock)...);
    }
    /// A new mp::Event.
    mprocess::Event Event() const { return {}; }
    /// mp::Barrier(parties, action, timeout).
    mprocess::Barrier Barrier(unsigned parties, BarrierAction action = {}, Timeout timeout = forever) const {
        return mprocess::Barrier(parties, std::move(action), timeout);
    }

    /// `mp::Value<T>(a...)`.
    template <class T, class... A>
    mprocess::Value<T> Value(A&&... a) const {
        return mprocess::Value<T>(std::forward<A>(a)...);
    }
    /// `mp::RawValue<T>(a...)`.
    template <class T, class... A>
    mprocess::RawValue<T> RawValue(A&&... a) const {
        return mprocess::RawValue<T>(std::forward<A>(a)...);
    }
    /// `mp::Array<T>(a...)`.
    template <class T, class... A>
    mprocess::Array<T> Array(A&&... a) const {
        return mprocess::Array<T>(std::forward<A>(a)...);
    }
    /// `mp::Array<T>{init...}`.
    template <class T>
    mprocess::Array<T> Array(std::initializer_list<T> init) const {
        return mprocess::Array<T>(init);
    }
    /// `mp::RawArray<T>(a...)`.
    template <class T, class... A>
    mprocess::RawArray<T> RawArray(A&&... a) const {
        return mprocess::RawArray<T>(std::forward<A>(a)...);
    }
    /// `mp::RawArray<T>{init...}`.
    template <class T>
    mprocess::RawArray<T> RawArray(std::initializer_list<T> init) const {
        return mprocess::RawArray<T>(init);
    }

private:
    StartMethod method_;
};

/// A context for `method`, or for the default method when empty. Unknown names throw ValueError.
MPROCESS_EXPORT Context get_context(std::string_view method = {});
/// A context for `method`.
MPROCESS_EXPORT Context get_context(StartMethod method);

}  // namespace mprocess
