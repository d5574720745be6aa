// SPDX-License-Identifier: Apache-2.0
/// @file
/// Pool: a fixed set of worker processes that run tasks, as multiprocessing.Pool.
///
/// @code{.cpp}
/// int square(int x) { return x * x; }
/// mp::Pool pool(3);
/// std::vector<int> r = pool.map(square, std::vector<int>{31, 53, 79});   // {961, 2809, 6241}
/// mp::AsyncResult<int> a = pool.apply_async(square, 12);
/// int v = a.get();
/// @endcode
///
/// Targets are plain functions (or lambdas without captures), under every start method: a task
/// names its function as (object build-id, offset), as a spawned Process target does. Arguments and
/// results are any serializable types; the result type is deduced from the function.
///
/// Each worker has its own pipe, and a manager thread in this process knows which task each worker
/// holds. So, unlike Python's Pool:
///  - a task that throws makes get() throw RemoteError (the exception's type, message, and the
///    worker's pid), and the pool goes on;
///  - a worker that dies (SIGKILL, a segfault, the OOM killer) fails exactly the task it held, with
///    WorkerLost (which task, which worker, why), and is replaced; the other tasks complete;
///  - a task may have a timeout and retries (TaskOptions), and a running task can be cancelled
///    (cancel(mp::kill_running)): its worker is stopped and replaced.
///
/// Leaving the scope terminates the workers, like Python's `with Pool() as p:`.
#pragma once

#include "mprocess/export.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <sys/types.h>

#include "mprocess/detail/pool_task.hpp"
#include "mprocess/detail/spawn.hpp"
#include "mprocess/error.hpp"
#include "mprocess/serialize.hpp"
#include "mprocess/start_method.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

namespace detail {
struct InitializerAccess;
struct PoolAccess;
}  // namespace detail

/// What the pool does when a worker dies while it holds a task. Either way that task fails at once.
enum class OnWorkerLost {
    replace,     ///< the task fails with WorkerLost, and a new worker takes the dead one's place
    break_pool,  ///< every unfinished task fails with BrokenPool, and the pool stops
};

/// Python's initializer and initargs: a function each worker calls once, before its first task.
/// @code{.cpp}
/// mp::Pool pool(4, {.initializer = mp::Initializer(open_db, std::string("/tmp/x.db"))});
/// @endcode
/// If it throws in any worker, the pool is broken (BrokenPool) rather than restarting workers that
/// fail again forever, as Python's Pool does.
class Initializer {
public:
    /// None: the workers start with their first task.
    Initializer() = default;
    /// f(args...), f a plain function or a lambda without captures (a compile error otherwise), the
    /// arguments serializable: they travel to each worker under every start method.
    template <class F, class... A>
    explicit Initializer(F f, A&&... args) {
        using Fp = detail::function_pointer_t<F>;
        static_assert(!std::is_void_v<Fp>,
                      "mprocess: an initializer must be a plain function or a lambda without captures");
        Fp fp = f;
        invoker_ = detail::entry_point<
            &detail::invoke_task<Fp, std::invoke_result_t<Fp, std::decay_t<A>&...>, std::decay_t<A>...>>();
        fn_ = reinterpret_cast<void*>(fp);
        args_ = encode(std::tuple<std::decay_t<A>...>(std::forward<A>(args)...));
    }
    /// True if there is a function to call.
    explicit operator bool() const noexcept { return invoker_ != nullptr; }

private:
    friend struct detail::InitializerAccess;
    detail::Invoker invoker_ = nullptr;
    void* fn_ = nullptr;
    std::string args_;
};

namespace detail {
// For the cores that run initializers.
struct InitializerAccess {
    static std::string message(const Initializer& i) { return task_message_head(i.invoker_, i.fn_) + i.args_; }
};
}  // namespace detail

/// Pool's keyword arguments.
struct PoolOptions {
    std::optional<StartMethod> start_method{};            ///< default: get_start_method()
    unsigned maxtasksperchild = 0;                        ///< a worker is replaced after this many tasks; 0: never
    Initializer initializer{};                            ///< Python's initializer and initargs
    OnWorkerLost on_worker_lost = OnWorkerLost::replace;  ///< fail the lost task only, or break the pool
    /// Not in Python: how long a task may run in its worker (each item of a map), unless its
    /// TaskOptions say otherwise. Past it, the task fails with TaskTimeout and its worker is
    /// stopped (SIGTERM, then SIGKILL a second later) and replaced. None: no limit.
    std::optional<Timeout> task_timeout{};
    /// Not in Python: how many times a task whose worker died or was stopped for its timeout runs
    /// again, each time in a fresh worker (never a task that threw: that is its answer). The final
    /// error tells every attempt.
    unsigned retries = 0;
    /// Not in Python: a worker's resident memory limit in bytes (0: none). A worker past it after
    /// a task is replaced before its next one; a worker past it while it runs a task is killed at
    /// once (the pool looks every 10 ms), and that task fails with WorkerLost whose reason() is
    /// memory_limit (or runs again, with retries). Local workers only: MPI ranks are not watched.
    std::uint64_t max_memory_per_child = 0;
    /// Not in Python: the threads each worker's math libraries may start (OMP_NUM_THREADS,
    /// OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and the like, set in each worker before its first
    /// task), so that n workers do not start n times as many threads as there are CPUs. 0: as
    /// the environment says.
    unsigned threads_per_worker = 0;
    /// Not in Python: each worker runs on one CPU of those this process may use, worker i on the
    /// i-th (round the list when there are more workers than CPUs).
    bool pin_workers = false;
    /// Not in Python: each line a worker writes to its standard output or error reaches the
    /// stream it inherited whole, prefixed with the worker's name: "[ForkPoolWorker-2] ...".
    bool tag_output = false;
};

/// Per call, for apply_async, map and the rest, and ProcessPoolExecutor::submit: what differs from
/// the pool's options for these tasks.
/// @code{.cpp}
/// auto r = pool.apply_async(mp::TaskOptions{.timeout = 2.0, .retries = 1}, slow, 10);
/// auto v = pool.map(mp::TaskOptions{.timeout = 0.5}, f, items);   // 0.5 s for each item
/// @endcode
struct TaskOptions {
    /// How long the task may run in its worker; in a map, each item (a chunk of k items may run k
    /// times as long, and a map with a timeout sends one item per task unless given a chunksize).
    /// None: PoolOptions::task_timeout; mp::forever: no limit.
    std::optional<Timeout> timeout{};
    /// Runs again after a lost or timed-out worker; none: PoolOptions::retries.
    std::optional<unsigned> retries{};
};

/// What Pool::workers() tells of one worker, now.
struct WorkerInfo {
    pid_t pid = 0;                      ///< its pid
    std::string name{};                 ///< "ForkPoolWorker-3" (an MPI rank: "rank 2")
    std::optional<std::string> task{};  ///< the task it runs ("item 17 of map", "task 12"), if any
    double running_for = 0;             ///< seconds since it took that task
    std::uint64_t rss = 0;              ///< its resident memory in bytes; 0 if unknown (MPI ranks)
};

/// imap()'s and imap_unordered()'s keyword arguments: Python's chunksize, and 3.14's buffersize.
/// @code{.cpp}
/// for (auto r : pool.imap(f, std::views::iota(0, 100'000'000), {.chunksize = 1000, .buffersize = 8})) ...
/// @endcode
struct IMapOptions {
    std::size_t chunksize = 1;  ///< items per task; 0 is a ValueError
    /// At most this many tasks in flight (handed to the pool, their results not yet taken): the
    /// input is read as the results are taken, so memory stays flat however long it is, and the
    /// first result comes before the input ends. An input passed as an lvalue is read from where
    /// it is: it must outlive the iteration. None: the whole input at once, as without it in
    /// Python. 0 is a ValueError.
    std::optional<std::size_t> buffersize{};
};

/// cancel(mp::kill_running): also stop a task that a worker has begun.
struct KillRunning {
    explicit KillRunning() = default;  ///< only kill_running is one
};
/// cancel(mp::kill_running): also stop a task that a worker has begun.
inline constexpr KillRunning kill_running{};

/// Told how far a long map has come: items done out of the total. It runs in the thread that
/// called map(), between its waits (progress.hpp has a ready-made progress line).
using Progress = std::function<void(std::size_t done, std::size_t total)>;

namespace detail {

// A success callback takes the result; for a task that returns void, nothing.
template <class R>
struct result_callback {
    using type = std::function<void(const R&)>;
};
template <>
struct result_callback<void> {
    using type = std::function<void()>;
};

}  // namespace detail

template <class R>
class IMapIterator;

/// The pending result of a task, whatever its type (Python's ApplyResult): what every AsyncResult
/// and Future is, and all of it that does not depend on the result's type.
class MPROCESS_EXPORT ApplyResult {
public:
    /// Waits until the task is done or the timeout passes; throws nothing.
    void wait(Timeout timeout = forever) const { wait_done(timeout); }
    /// True once the task has succeeded or failed.
    bool ready() const;
    /// True if the task succeeded; ValueError if not ready, as Python.
    bool successful() const;
    /// Not in Python's AsyncResult (concurrent.futures' Future has it): takes the task back if no
    /// worker has begun it, and then get() throws CancelledError; true then, or if it was
    /// cancelled before. A task that runs goes on (see cancel(kill_running)). For a map, every
    /// chunk not yet begun; true if there was no other.
    bool cancel();
    /// cancel(), and a task a worker is running is stopped too: its worker is killed (SIGTERM,
    /// then SIGKILL) and replaced, and get() throws CancelledError at once. False for a task that
    /// is done, or that runs where it cannot be stopped (an MPI rank).
    bool cancel(KillRunning);

protected:
    /// @cond INTERNAL
    explicit ApplyResult(std::shared_ptr<detail::TaskState> st) : st_(std::move(st)) {}
    // Waits for the task; true once done. Throws instead of waiting from the pool's own manager
    // thread (a callback), where the wait could never end.
    bool wait_done(const Timeout& timeout) const;
    // Runs fn once the task is done: at once in this thread if it already is, otherwise in the
    // thread that completes it (the pool's manager thread, or a thread waiting for the task that
    // read its answer itself). An exception from fn is reported on stderr; it cannot reach anyone.
    void when_done(std::function<void()> fn) const;
    // A user's callback: at once in this thread if the task is done; otherwise on the pool's
    // manager thread, one callback at a time (as Python runs them on its result thread), whichever
    // thread completes the task.
    void when_done_user(std::function<void()> fn) const;
    // A task that is done when all parts are: failed with the first error to arrive, if any.
    static ApplyResult join(const std::vector<ApplyResult>& parts);
    // For a joined map: calls progress(done, total) in this thread each time its chunks finish,
    // until all have.
    void report_progress(std::size_t total, std::size_t chunksize, const Progress& progress) const;

    std::shared_ptr<detail::TaskState> st_;
    /// @endcond

private:
    friend class Pool;
    template <class>
    friend class IMapIterator;
};

/// The pending result of a task (Python's AsyncResult), from Pool::apply_async, map_async and
/// starmap_async. Copies share the result; get() may be called again and gives the same.
template <class R>
class AsyncResult : public ApplyResult {
public:
    /// What callback() takes: `void(const R&)`, or `void()` for a task that returns void.
    using Callback = typename detail::result_callback<R>::type;
    /// What error_callback() takes: the task's error.
    using ErrorCallback = std::function<void(const std::exception&)>;

    /// Waits up to the timeout (TimeoutError), then returns the result or throws the task's error
    /// (RemoteError, WorkerLost, BrokenPool, ...).
    R get(Timeout timeout = forever) const {
        if (!wait_done(timeout)) throw TimeoutError("the task's result is not ready");
        if (st_->error) std::rethrow_exception(st_->error);  // a done task's state no longer changes
        return detail::task_value<R>(*st_);
    }

    /// Python's callback= and error_callback=: called once the task has succeeded, or failed (with
    /// RemoteError, WorkerLost, ...). They run in the pool's manager thread, one at a time, as
    /// Python runs them in its result thread, so keep them short (get() may return before its
    /// callback has run); or at once, here, if the task is already done. Returns this result, so
    /// that `pool.apply_async(f, x).callback(cb).error_callback(ecb)` reads as Python's call.
    const AsyncResult& callback(Callback f) const {
        when_done_user([st = st_, f = std::move(f)] {
            if (st->error) return;
            if constexpr (std::is_void_v<R>)
                f();
            else
                f(detail::task_value<R>(*st));
        });
        return *this;
    }
    /// f(error) if the task fails, as callback() says.
    const AsyncResult& error_callback(ErrorCallback f) const {
        when_done_user([st = st_, f = std::move(f)] {
            if (!st->error) return;
            try {
                std::rethrow_exception(st->error);
            } catch (const std::exception& e) {
                f(e);
            }
        });
        return *this;
    }

protected:
    /// @cond INTERNAL
    explicit AsyncResult(std::shared_ptr<detail::TaskState> st) : ApplyResult(std::move(st)) {}
    explicit AsyncResult(ApplyResult r) : ApplyResult(std::move(r)) {}
    /// @endcond

private:
    friend class Pool;
    template <class>
    friend class IMapIterator;
};

/// What imap() and imap_unordered() return: the results one by one, in order or as they come.
/// next(timeout) gives the next one (TimeoutError if it is not there in time; a task's error is
/// thrown when its result's turn comes) and std::nullopt after the last; it is also a range.
/// For a function that returns void, each item done gives std::monostate (Python's None).
template <class R>
class IMapIterator {
public:
    /// A result: R, or std::monostate for a function that returns void.
    using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

    /// The next result, or std::nullopt after the last; TimeoutError if it is not there in time
    /// (ask again: nothing is lost), a task's error when its result's turn comes.
    std::optional<value_type> next(Timeout timeout = forever) {
        while (pos_ == buf_.size()) {
            if (!fill(timeout)) return std::nullopt;
        }
        return std::move(buf_[pos_++]);
    }

    /// An input iterator over the results, for range-for: each step is a next() without a
    /// timeout, and throws what next() throws.
    class iterator {
    public:
        using value_type = IMapIterator::value_type;  ///< a result
        using difference_type = std::ptrdiff_t;       ///< as input iterators have
        /// The end.
        iterator() = default;
        /// At the first result of `it` (waiting for it).
        explicit iterator(IMapIterator* it) : it_(it) { ++*this; }
        /// The current result.
        const value_type& operator*() const { return *cur_; }
        /// Waits for the next result; the end after the last.
        iterator& operator++() {
            cur_ = it_->next();
            if (!cur_) it_ = nullptr;
            return *this;
        }
        /// As ++it (an input iterator has no old value to give).
        void operator++(int) { ++*this; }
        /// Equal at the end, or on the same IMapIterator.
        friend bool operator==(const iterator& a, const iterator& b) { return a.it_ == b.it_; }

    private:
        IMapIterator* it_ = nullptr;
        std::optional<value_type> cur_;
    };
    /// Iteration from the next result (it waits for it).
    iterator begin() { return iterator(this); }
    /// After the last result.
    iterator end() { return iterator(); }

private:
    friend class Pool;
    using Chunk = detail::chunk_result_t<R>;
    // A chunk handed to the pool: how many items it holds, and its result.
    struct Part {
        std::size_t items;
        AsyncResult<Chunk> result;
    };
    // Hands the next chunk of the input to the pool, or says there is none left.
    using Feed = std::function<std::optional<Part>()>;

    // buffersize: at most this many chunks in flight (submitted, their results not yet taken);
    // none: the whole input at once, as Python's imap without buffersize.
    IMapIterator(Feed feed, std::optional<std::size_t> buffersize, bool ordered)
        : feed_(std::move(feed)), buffersize_(buffersize), ordered_(ordered) {
        top_up();
    }

    // Hands chunks to the pool until buffersize are in flight or the input is done.
    void top_up() {
        while (feed_ && (!buffersize_ || inflight_.size() < *buffersize_)) {
            std::optional<Part> part = feed_();
            if (!part) {
                feed_ = nullptr;
                return;
            }
            if (!ordered_) {
                part->result.when_done([n = notifier_] {
                    std::lock_guard lock(n->m);  // so that a waiter between its check and its wait sees it
                    n->cv.notify_all();
                });
            }
            inflight_.push_back(std::move(*part));
        }
    }

    // Loads the next chunk's results into buf_; false when none is left.
    bool fill(const Timeout& timeout) {
        top_up();
        if (inflight_.empty()) return false;
        std::size_t pick = 0;
        if (!ordered_) {
            auto ready = [&] {
                for (std::size_t i = 0; i < inflight_.size(); ++i)
                    if (inflight_[i].result.ready()) return pick = i, true;
                return false;
            };
            std::unique_lock lock(notifier_->m);
            if (timeout.infinite()) {
                notifier_->cv.wait(lock, ready);
            } else if (!notifier_->cv.wait_for(lock, timeout.duration(), ready)) {
                throw TimeoutError("no result ready in time");
            }
        }
        Part part = inflight_[pick];
        part.result.wait(timeout);
        // Not there yet: ask again later. (A task's own TaskTimeout is its result, below.)
        if (!part.result.ready()) throw TimeoutError("the next result is not ready");
        // Its result, or its error, is taken: the next call moves on, as Python's.
        inflight_.erase(inflight_.begin() + static_cast<std::ptrdiff_t>(pick));
        if constexpr (std::is_void_v<R>) {
            part.result.get();
            buf_.assign(part.items, std::monostate{});
        } else {
            buf_ = part.result.get();
        }
        pos_ = 0;
        top_up();
        return true;
    }

    Feed feed_;  // null once the input is done
    std::optional<std::size_t> buffersize_;
    bool ordered_;
    std::deque<Part> inflight_;
    struct Notifier {
        std::mutex m;
        std::condition_variable cv;
    };
    std::shared_ptr<Notifier> notifier_ = std::make_shared<Notifier>();
    std::vector<value_type> buf_;
    std::size_t pos_ = 0;
};

/// multiprocessing.Pool: worker processes that run tasks (see pool.hpp).
class MPROCESS_EXPORT Pool {
public:
    /// Python's Pool(processes=None): process_cpu_count() workers by default (as Python 3.13's); Pool(0) throws
    /// ValueError.
    explicit Pool(std::optional<unsigned> processes = std::nullopt, const PoolOptions& options = {});
    /// Terminates the workers, as leaving Python's `with Pool() as p:` does; unfinished tasks fail.
    virtual ~Pool() { core_->terminate(); }
    Pool(const Pool&) = delete;             ///< the pool owns its workers
    Pool& operator=(const Pool&) = delete;  ///< the pool owns its workers

    /// Python's apply_async(f, args): runs f(args...) in a worker and returns its
    /// `AsyncResult<R>`. f is a plain function or a lambda without captures, the arguments and
    /// the result serializable (compile errors say so). ValueError once the pool is closed.
    template <class F, class... A>
    requires(!std::is_same_v<std::decay_t<F>, TaskOptions>) auto apply_async(F f, A&&... args) {
        return apply_async(TaskOptions{}, f, std::forward<A>(args)...);
    }
    /// apply_async(f, args...) with its own timeout or retries.
    template <class F, class... A>
    auto apply_async(const TaskOptions& options, F f, A&&... args) {
        using Fp = target_t<F>;
        using R = std::invoke_result_t<Fp, std::decay_t<A>&...>;
        (detail::require_serializable<std::decay_t<A>>(), ...);
        if constexpr (!std::is_void_v<R>) detail::require_serializable<R>();
        Fp fp = f;
        std::string msg = core_->head(detail::entry_point<&detail::invoke_task<Fp, R, std::decay_t<A>...>>(),
                                      reinterpret_cast<void*>(fp));
        encode_into(msg, std::tuple<std::decay_t<A>...>(std::forward<A>(args)...));
        return AsyncResult<R>(core_->submit(std::move(msg), detail::TaskSpec{{}, options.timeout, options.retries, 1}));
    }

    /// Python's apply(f, args): apply_async(f, args...).get(), so it throws what get() throws.
    template <class F, class... A>
    auto apply(F f, A&&... args) {
        return apply_async(f, std::forward<A>(args)...).get();
    }

    /// Python's map(func, iterable, chunksize): results in order; chunksize 0 means
    /// ceil(n / (4 * workers)), as Python. A progress function hears how many items are done.
    /// It returns once every chunk is done, even when one has failed (then it throws the first
    /// error to arrive), as Python's: the pool is not left busy with the rest of the map. A
    /// function that returns void gives a map that returns void.
    template <class F, class T>
    auto map(F f, const std::vector<T>& items, std::size_t chunksize = 0, const Progress& progress = {}) {
        return map(TaskOptions{}, f, items, chunksize, progress);
    }
    /// map() with a timeout for each item, or retries (see TaskOptions).
    template <class F, class T>
    auto map(const TaskOptions& options, F f, const std::vector<T>& items, std::size_t chunksize = 0,
             const Progress& progress = {}) {
        using Fp = target_t<F>;
        using R = std::invoke_result_t<Fp, T&>;
        const std::size_t cs = default_chunksize(items.size(), chunksize, options);
        return gather(chunks<R, Fp, T, false>(f, items, cs, options, "map"), items.size(), cs, progress);
    }
    /// map() of any input range (a view, a generator, a file's lines): read whole first, as
    /// Python's map reads its iterable into a list. imap() reads as it goes.
    template <class F, std::ranges::input_range Rg>
    requires(!detail::is_vector_v<std::remove_cvref_t<Rg>>) auto map(F f, Rg&& items, std::size_t chunksize = 0,
                                                                     const Progress& progress = {}) {
        return map(TaskOptions{}, f, to_vector(std::forward<Rg>(items)), chunksize, progress);
    }
    /// map() of any input range, with a timeout for each item, or retries.
    template <class F, std::ranges::input_range Rg>
    requires(!detail::is_vector_v<std::remove_cvref_t<Rg>>) auto map(const TaskOptions& options, F f, Rg&& items,
                                                                     std::size_t chunksize = 0,
                                                                     const Progress& progress = {}) {
        return map(options, f, to_vector(std::forward<Rg>(items)), chunksize, progress);
    }
    /// Python's map_async: one AsyncResult for the whole list (`AsyncResult<void>` for a function
    /// that returns void), ready once every chunk is.
    template <class F, class T>
    auto map_async(F f, const std::vector<T>& items, std::size_t chunksize = 0) {
        return map_async(TaskOptions{}, f, items, chunksize);
    }
    /// map_async() with a timeout for each item, or retries (see TaskOptions).
    template <class F, class T>
    auto map_async(const TaskOptions& options, F f, const std::vector<T>& items, std::size_t chunksize = 0) {
        using Fp = target_t<F>;
        using R = std::invoke_result_t<Fp, T&>;
        return joined(
            chunks<R, Fp, T, false>(f, items, default_chunksize(items.size(), chunksize, options), options, "map"));
    }

    /// Python's starmap(func, iterable_of_tuples, chunksize): f(args...) for each tuple. Otherwise
    /// as map().
    template <class F, class... T>
    auto starmap(F f, const std::vector<std::tuple<T...>>& items, std::size_t chunksize = 0,
                 const Progress& progress = {}) {
        return starmap(TaskOptions{}, f, items, chunksize, progress);
    }
    /// starmap() with a timeout for each item, or retries (see TaskOptions).
    template <class F, class... T>
    auto starmap(const TaskOptions& options, F f, const std::vector<std::tuple<T...>>& items, std::size_t chunksize = 0,
                 const Progress& progress = {}) {
        using Fp = target_t<F>;
        using R = std::invoke_result_t<Fp, T&...>;
        const std::size_t cs = default_chunksize(items.size(), chunksize, options);
        return gather(chunks<R, Fp, std::tuple<T...>, true>(f, items, cs, options, "starmap"), items.size(), cs,
                      progress);
    }
    /// starmap() of any input range of tuples, read whole first.
    template <class F, std::ranges::input_range Rg>
    requires(!detail::is_vector_v<std::remove_cvref_t<Rg>>) auto starmap(F f, Rg&& items, std::size_t chunksize = 0,
                                                                         const Progress& progress = {}) {
        return starmap(TaskOptions{}, f, to_vector(std::forward<Rg>(items)), chunksize, progress);
    }
    /// Python's starmap_async: starmap() as map_async() is map().
    template <class F, class... T>
    auto starmap_async(F f, const std::vector<std::tuple<T...>>& items, std::size_t chunksize = 0) {
        return starmap_async(TaskOptions{}, f, items, chunksize);
    }
    /// starmap_async() with a timeout for each item, or retries (see TaskOptions).
    template <class F, class... T>
    auto starmap_async(const TaskOptions& options, F f, const std::vector<std::tuple<T...>>& items,
                       std::size_t chunksize = 0) {
        using Fp = target_t<F>;
        using R = std::invoke_result_t<Fp, T&...>;
        return joined(chunks<R, Fp, std::tuple<T...>, true>(
            f, items, default_chunksize(items.size(), chunksize, options), options, "starmap"));
    }

    /// Python's imap(func, iterable, chunksize=1): results in order, each as soon as it and those
    /// before it are ready. The items: a std::vector, or any input range (a view, a generator, a
    /// file's lines). ValueError for a chunksize of 0.
    template <class F, class T>
    auto imap(F f, const std::vector<T>& items, std::size_t chunksize = 1) {
        return make_imap(f, items, {.chunksize = chunksize}, true, TaskOptions{});
    }
    /// imap() of any input range.
    template <class F, std::ranges::input_range Rg>
    requires(!detail::is_vector_v<std::remove_cvref_t<Rg>>) auto imap(F f, Rg&& items, std::size_t chunksize = 1) {
        return make_imap(f, std::forward<Rg>(items), {.chunksize = chunksize}, true, TaskOptions{});
    }
    /// imap() with Python 3.14's buffersize: `pool.imap(f, items, {.buffersize = 8})`.
    template <class F, std::ranges::input_range Rg>
    auto imap(F f, Rg&& items, const IMapOptions& how) {
        return make_imap(f, std::forward<Rg>(items), how, true, TaskOptions{});
    }
    /// imap() with a timeout for each item, or retries (see TaskOptions).
    template <class F, std::ranges::input_range Rg>
    auto imap(const TaskOptions& options, F f, Rg&& items, const IMapOptions& how = {}) {
        return make_imap(f, std::forward<Rg>(items), how, true, options);
    }
    /// Python's imap_unordered: results as they are ready. The same shapes as imap().
    template <class F, class T>
    auto imap_unordered(F f, const std::vector<T>& items, std::size_t chunksize = 1) {
        return make_imap(f, items, {.chunksize = chunksize}, false, TaskOptions{});
    }
    /// imap_unordered() of any input range.
    template <class F, std::ranges::input_range Rg>
    requires(!detail::is_vector_v<std::remove_cvref_t<Rg>>) auto imap_unordered(F f, Rg&& items,
                                                                                std::size_t chunksize = 1) {
        return make_imap(f, std::forward<Rg>(items), {.chunksize = chunksize}, false, TaskOptions{});
    }
    /// imap_unordered() with Python 3.14's buffersize.
    template <class F, std::ranges::input_range Rg>
    auto imap_unordered(F f, Rg&& items, const IMapOptions& how) {
        return make_imap(f, std::forward<Rg>(items), how, false, TaskOptions{});
    }
    /// imap_unordered() with a timeout for each item, or retries (see TaskOptions).
    template <class F, std::ranges::input_range Rg>
    auto imap_unordered(const TaskOptions& options, F f, Rg&& items, const IMapOptions& how = {}) {
        return make_imap(f, std::forward<Rg>(items), how, false, options);
    }

    /// No more tasks; join() then waits for the workers to finish the queued ones and exit.
    void close() { core_->close(); }
    /// Stops the workers now; unfinished tasks fail with ValueError.
    void terminate() { core_->terminate(); }
    /// Waits for the workers to exit, after close() or terminate() (ValueError before either, as
    /// Python's).
    void join() { core_->join(); }
    /// Not in Python's API: the workers' pids now.
    std::vector<pid_t> pids() const { return core_->pids(); }
    /// Not in Python's API: each worker now, what it runs and for how long, and its memory.
    std::vector<WorkerInfo> workers() const { return core_->workers(); }
    /// Not in Python's API: how many workers there are.
    unsigned processes() const noexcept { return processes_; }

protected:
    /// @cond INTERNAL
    // A Pool over other workers (mpi::Pool): the same calls, carried by another core.
    Pool(std::shared_ptr<detail::PoolCore> core, unsigned processes) : core_(std::move(core)), processes_(processes) {}
    /// @endcond

private:
    friend class ProcessPoolExecutor;
    friend struct detail::PoolAccess;
    template <class F>
    using target_t = detail::function_pointer_t<F>;
    template <class F>
    static constexpr bool is_target = !std::is_void_v<target_t<F>>;

    // A map whose items have a timeout sends one item per task (each then has its own deadline).
    std::size_t default_chunksize(std::size_t n, std::size_t chunksize, const TaskOptions& options) const {
        if (chunksize != 0) return chunksize;
        if (options.timeout && !options.timeout->infinite()) return 1;
        const std::size_t per = 4 * std::size_t{processes_};
        return n == 0 ? 1 : (n + per - 1) / per;
    }

    // The input's next chunks as the iterator asks for them: a view of the items (owning an rvalue
    // range, referring to an lvalue one) read from where the last chunk ended.
    template <class F, class Rg>
    auto make_imap(F f, Rg&& items, const IMapOptions& how, bool ordered, const TaskOptions& options) {
        using T = std::ranges::range_value_t<Rg>;
        using Fp = target_t<F>;
        using R = std::invoke_result_t<Fp, T&>;
        using V = std::views::all_t<Rg>;
        check_target<F, T, R>();
        if (how.chunksize == 0) throw ValueError("chunksize must be at least 1");
        if (how.buffersize && *how.buffersize == 0) throw ValueError("buffersize must be at least 1");
        struct Source {
            V view;
            std::optional<std::ranges::iterator_t<V>> at;
            std::size_t next = 0;  // the index of the next item
        };
        auto src = std::make_shared<Source>(Source{std::views::all(std::forward<Rg>(items)), std::nullopt, 0});
        const char* what = ordered ? "imap" : "imap_unordered";
        typename IMapIterator<R>::Feed feed = [core = core_, src, fp = Fp(f), n = how.chunksize, options,
                                               what]() -> std::optional<typename IMapIterator<R>::Part> {
            if (!src->at) src->at.emplace(std::ranges::begin(src->view));
            auto& at = *src->at;
            std::vector<T> chunk;
            for (; chunk.size() < n && at != std::ranges::end(src->view); ++at) chunk.push_back(static_cast<T>(*at));
            if (chunk.empty()) return std::nullopt;
            const std::size_t first = std::exchange(src->next, src->next + chunk.size());
            return typename IMapIterator<R>::Part{
                chunk.size(), submit_chunk<R, Fp, T, false>(core, fp, chunk, 0, chunk.size(), first, options, what)};
        };
        return IMapIterator<R>(std::move(feed), how.buffersize, ordered);
    }

    template <class Rg>
    static auto to_vector(Rg&& items) {
        std::vector<std::ranges::range_value_t<Rg>> v;
        if constexpr (std::ranges::sized_range<Rg>) v.reserve(static_cast<std::size_t>(std::ranges::size(items)));
        for (auto&& x : items) v.push_back(static_cast<std::ranges::range_value_t<Rg>>(x));
        return v;
    }

    // Compile errors that say what a task needs.
    template <class F, class T, class R>
    static void check_target() {
        static_assert(is_target<F>, "mprocess: a Pool task must be a plain function or a lambda without captures");
        detail::require_serializable<T>();
        if constexpr (!std::is_void_v<R>) detail::require_serializable<R>();
    }

    // Hands items[begin, end) to the pool as one task; `first` is the index of items[begin] in the
    // whole input, and `what` names the call, for the task's errors.
    template <class R, class Fp, class T, bool Star>
    static AsyncResult<detail::chunk_result_t<R>> submit_chunk(const std::shared_ptr<detail::PoolCore>& core, Fp fp,
                                                               const std::vector<T>& items, std::size_t begin,
                                                               std::size_t end, std::size_t first,
                                                               const TaskOptions& options, const char* what) {
        std::string msg =
            core->head(detail::entry_point<&detail::invoke_chunk<Fp, R, T, Star>>(), reinterpret_cast<void*>(fp));
        detail::encode_slice_into(msg, items, begin, end);
        const std::size_t n = end - begin;
        std::string label = n == 1 ? "item " + std::to_string(first)
                                   : "items " + std::to_string(first) + ".." + std::to_string(first + n - 1);
        return AsyncResult<detail::chunk_result_t<R>>(
            core->submit(std::move(msg), detail::TaskSpec{label + " of " + what, options.timeout, options.retries, n}));
    }

    // One task per chunk of `chunksize` items.
    template <class R, class Fp, class T, bool Star, class F>
    std::vector<AsyncResult<detail::chunk_result_t<R>>> chunks(F f, const std::vector<T>& items, std::size_t chunksize,
                                                               const TaskOptions& options, const char* what) {
        check_target<F, T, R>();
        std::vector<AsyncResult<detail::chunk_result_t<R>>> parts;
        for (std::size_t i = 0; i < items.size(); i += chunksize)
            parts.push_back(submit_chunk<R, Fp, T, Star>(core_, f, items, i, std::min(items.size(), i + chunksize), i,
                                                         options, what));
        return parts;
    }

    // C is a chunk's result: std::vector<R>, or void.
    template <class C>
    static AsyncResult<C> joined(const std::vector<AsyncResult<C>>& parts) {
        return AsyncResult<C>(ApplyResult::join(std::vector<ApplyResult>(parts.begin(), parts.end())));
    }

    // Waits for every chunk, telling `progress` as they finish, then gives their results in order
    // or the first error, as map_async's result does.
    template <class C>
    static C gather(const std::vector<AsyncResult<C>>& parts, std::size_t total, std::size_t chunksize,
                    const Progress& progress) {
        const AsyncResult<C> whole = joined(parts);
        if (progress) whole.report_progress(total, chunksize, progress);
        // Each chunk's own wait may read its worker's answer here, sooner than the manager would.
        for (const auto& p : parts) p.wait();
        whole.wait();  // its last chunk's hook may still be completing it
        if (whole.st_->error) std::rethrow_exception(whole.st_->error);
        if constexpr (!std::is_void_v<C>) {
            C out;
            out.reserve(total);
            for (const auto& p : parts) detail::decode_append(out, detail::encoded_result(*p.st_));
            return out;
        }
    }

    // One task that folds items[begin, end) (parallel_reduce's tree).
    template <class Fp, class T>
    AsyncResult<T> fold_async(Fp fp, const std::vector<T>& items, std::size_t begin, std::size_t end) {
        std::string msg = core_->head(detail::entry_point<&detail::invoke_fold<Fp, T>>(), reinterpret_cast<void*>(fp));
        detail::encode_slice_into(msg, items, begin, end);
        return AsyncResult<T>(core_->submit(std::move(msg), detail::TaskSpec{"items " + std::to_string(begin) + ".." +
                                                                                 std::to_string(end - 1) + " of reduce",
                                                                             {},
                                                                             {},
                                                                             end - begin}));
    }

    std::shared_ptr<detail::PoolCore> core_;
    unsigned processes_;
};

namespace detail {
struct PoolAccess {
    template <class Fp, class T>
    static AsyncResult<T> fold_async(Pool& pool, Fp fp, const std::vector<T>& items, std::size_t begin,
                                     std::size_t end) {
        return pool.fold_async(fp, items, begin, end);
    }
};
}  // namespace detail

}  // namespace mprocess
