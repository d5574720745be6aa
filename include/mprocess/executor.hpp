// SPDX-License-Identifier: Apache-2.0
/// @file
/// ProcessPoolExecutor and Future, as concurrent.futures has them, over the same workers as Pool.
///
/// @code{.cpp}
/// mp::ProcessPoolExecutor ex(4);
/// mp::Future<int> f = ex.submit(square, 12);
/// int v = f.result();
/// for (int r : ex.map(square, std::vector<int>{1, 2, 3})) ...
/// @endcode
///
/// The executor keeps concurrent.futures' policy for a dead worker: the pool is broken, every
/// unfinished future fails with BrokenPool, and submit() throws it. (mp::Pool instead fails only
/// the dead worker's task and replaces the worker; see OnWorkerLost.) Leaving the scope waits for
/// the submitted tasks, as `with ProcessPoolExecutor() as ex:` does.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

#include "mprocess/pool.hpp"
#include "mprocess/start_method.hpp"

namespace mprocess {

/// concurrent.futures.Future: the pending result of a task from ProcessPoolExecutor::submit().
/// It is also an AsyncResult (get(), wait(), callback(), ...).
template <class R>
class Future : public AsyncResult<R> {
public:
    /// The result; TimeoutError if it is not there in time, CancelledError if cancelled, and the
    /// task's own error (RemoteError, BrokenPool) otherwise.
    R result(Timeout timeout = forever) const { return this->get(timeout); }
    /// The task's error, or nullptr if it succeeded; TimeoutError if it is not done in time.
    std::exception_ptr exception(Timeout timeout = forever) const {
        if (!this->wait_done(timeout)) throw TimeoutError("the future is not done");
        return this->st_->error;
    }
    /// True once the task has finished, failed or been cancelled.
    bool done() const { return this->ready(); }
    /// True while a worker runs the task.
    bool running() const {
        std::lock_guard lock(this->st_->m);
        return this->st_->started && !this->st_->done;
    }
    /// True if cancel() took the task back.
    bool cancelled() const {
        std::lock_guard lock(this->st_->m);
        return this->st_->cancelled;
    }
    /// Takes the task back if no worker has begun it: true then (or if it already was cancelled).
    /// cancel(mp::kill_running) stops a running task too (see ApplyResult::cancel).
    using ApplyResult::cancel;
    /// fn(future) once it is done: at once if it is; otherwise in the pool's manager thread, one
    /// callback at a time.
    void add_done_callback(std::function<void(const Future&)> fn) const {
        this->when_done_user([self = *this, fn = std::move(fn)] { fn(self); });
    }

private:
    friend class ProcessPoolExecutor;
    explicit Future(AsyncResult<R> r) : AsyncResult<R>(r) {}
};

/// ProcessPoolExecutor's keyword arguments.
struct ExecutorOptions {
    std::optional<StartMethod> start_method{};  ///< default: get_start_method()
    unsigned max_tasks_per_child = 0;           ///< a worker is replaced after this many tasks; 0: never replaced
    Initializer initializer{};                  ///< Python's initializer and initargs (see Initializer)
    std::optional<Timeout> task_timeout{};      ///< not in Python: as PoolOptions::task_timeout
    unsigned retries = 0;                       ///< not in Python: as PoolOptions::retries
    std::uint64_t max_memory_per_child = 0;     ///< not in Python: as PoolOptions::max_memory_per_child
};

/// concurrent.futures.ProcessPoolExecutor: submit() gives a Future; a dead worker breaks it (see
/// executor.hpp).
class ProcessPoolExecutor {
public:
    /// max_workers defaults to process_cpu_count(); 0 throws ValueError.
    explicit ProcessPoolExecutor(std::optional<unsigned> max_workers = std::nullopt, ExecutorOptions options = {})
        : pool_(max_workers, PoolOptions{.start_method = options.start_method,
                                         .maxtasksperchild = options.max_tasks_per_child,
                                         .initializer = std::move(options.initializer),
                                         .on_worker_lost = OnWorkerLost::break_pool,
                                         .task_timeout = options.task_timeout,
                                         .retries = options.retries,
                                         .max_memory_per_child = options.max_memory_per_child}) {}
    /// shutdown(true): waits for the submitted tasks, as leaving Python's `with` block does.
    ~ProcessPoolExecutor() {
        try {
            shutdown(true);
        } catch (...) {
        }
    }
    ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
    ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

    /// Runs f(args...) in a worker and returns its `Future<R>`. f is a plain function or a lambda
    /// without captures. BrokenPool if a worker has died; Error after shutdown().
    template <class F, class... A>
    requires(!std::is_same_v<std::decay_t<F>, TaskOptions>) auto submit(F f, A&&... args) {
        return submit(TaskOptions{}, f, std::forward<A>(args)...);
    }
    /// submit() with its own timeout or retries (see TaskOptions). Unlike a dead worker, a task
    /// stopped for its timeout does not break the executor.
    template <class F, class... A>
    auto submit(const TaskOptions& options, F f, A&&... args) {
        check_open();
        auto r = pool_.apply_async(options, f, std::forward<A>(args)...);
        using R = decltype(r.get());
        return Future<R>(std::move(r));
    }

    /// Results in the order of the items, each as soon as it and those before it are ready: an
    /// IMapIterator, as Pool::imap gives. Error after shutdown().
    template <class F, class T>
    auto map(F f, const std::vector<T>& items, std::size_t chunksize = 1) {
        check_open();
        return pool_.imap(f, items, chunksize);
    }
    /// map() of any input range (see Pool::imap).
    template <class F, std::ranges::input_range Rg>
    requires(!detail::is_vector_v<std::remove_cvref_t<Rg>>) auto map(F f, Rg&& items, std::size_t chunksize = 1) {
        check_open();
        return pool_.imap(f, std::forward<Rg>(items), chunksize);
    }
    /// map() with Python 3.14's buffersize: at most that many tasks in flight (see IMapOptions).
    template <class F, std::ranges::input_range Rg>
    auto map(F f, Rg&& items, const IMapOptions& how) {
        check_open();
        return pool_.imap(f, std::forward<Rg>(items), how);
    }
    /// map() with a timeout for each item, or retries (see TaskOptions).
    template <class F, std::ranges::input_range Rg>
    auto map(const TaskOptions& options, F f, Rg&& items, const IMapOptions& how = {}) {
        check_open();
        return pool_.imap(options, f, std::forward<Rg>(items), how);
    }

    /// No more submits. wait: return once the submitted tasks are done and the workers are gone.
    /// cancel_futures: first cancel every task no worker has begun.
    void shutdown(bool wait = true, bool cancel_futures = false) {
        {
            std::lock_guard lock(m_);
            shut_ = true;
        }
        if (cancel_futures) pool_.core_->cancel(nullptr);
        pool_.close();
        if (wait) pool_.join();
    }

    /// Python 3.14's terminate_workers(): no more submits, the tasks no worker has begun are
    /// cancelled, and every worker is stopped now (SIGTERM, then SIGKILL a second later); the
    /// futures of the tasks they ran fail. Returns once the workers are gone.
    void terminate_workers() { stop_workers(false); }
    /// Python 3.14's kill_workers(): terminate_workers() with SIGKILL at once.
    void kill_workers() { stop_workers(true); }

private:
    void stop_workers(bool kill) {
        {
            std::lock_guard lock(m_);
            shut_ = true;
        }
        pool_.core_->cancel(nullptr);
        if (kill)
            pool_.core_->kill();
        else
            pool_.core_->terminate();
    }

    void check_open() {
        std::lock_guard lock(m_);
        if (shut_) throw Error("cannot schedule new futures after shutdown");
    }

    Pool pool_;
    std::mutex m_;
    bool shut_ = false;
};

}  // namespace mprocess
