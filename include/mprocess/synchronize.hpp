// SPDX-License-Identifier: Apache-2.0
/// @file
/// Process-shared synchronization, as multiprocessing.synchronize: Lock, RLock, Semaphore,
/// BoundedSemaphore, Condition, Event, Barrier.
///
/// @code{.cpp}
/// mp::Lock lock;
/// mp::Process p([](mp::Lock l) { std::lock_guard g(l); /* ... */ }, lock);
/// @endcode
///
/// Each object is a handle on a small piece of anonymous shared memory: copies are the same lock,
/// and it passes to a child as a Process argument under every start method. Every wait takes a
/// timeout (seconds, a std::chrono duration, or mp::forever). Lock, RLock and the others meet the
/// standard Lockable requirements (lock/try_lock/unlock, try_lock_for), so std::lock_guard,
/// std::unique_lock and std::scoped_lock work.
///
/// Better than Python's: a process that dies holding a Lock or RLock (also the one inside a
/// Condition, a Value or an Array) does not block the others forever. The next acquirer gets the
/// lock within about 50 ms, and owner_died() tells it that the data the lock guarded may be half
/// updated; mark_consistent() clears the mark once it has checked or repaired them. (Semaphores
/// have no owner, as in Python: a process that dies between acquire and release takes its unit
/// with it.)
#pragma once

#include "mprocess/export.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>

#include "mprocess/detail/spawn.hpp"
#include "mprocess/detail/spawn_archive.hpp"  // a Barrier action with captures travels encoded
#include "mprocess/error.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

class Barrier;

template <class>
class Value;
template <class>
class Array;

namespace detail {
class SyncSegment;
}

/// The shared memory behind a Lock, RLock, Semaphore, Condition, Event, Barrier, Value or Array:
/// the one thing each of them holds, and what crosses to a child with it. Programs use those
/// classes; this one is the part they share.
class MPROCESS_EXPORT SharedState {
public:
    /// No state.
    SharedState() = default;
    /// `bytes` of zeroed shared memory, which every child started later sees.
    explicit SharedState(std::size_t bytes);
    /// Where the state begins.
    void* state() const noexcept { return state_; }
    /// Writes the state into a spawned child's arguments.
    std::string export_to(SpawnArgs& args) const;
    /// In the child: the state written by export_to(), which must be `bytes` long.
    static SharedState import(const SpawnArgs& args, const std::string& blob, std::size_t bytes);
    /// Whether two handles share the same state.
    friend bool operator==(const SharedState& a, const SharedState& b) noexcept { return a.state_ == b.state_; }

private:
    std::shared_ptr<detail::SyncSegment> seg_;
    void* state_ = nullptr;
};

namespace detail {

template <class T>
struct SyncSpawnArg {
    static constexpr bool handle = true, nestable = true;
    static std::string write(SpawnArgs& args, const T& v) { return v.h_.export_to(args); }
    static T read(const SpawnArgs& args, const std::string& blob) {
        return T(SharedState::import(args, blob, T::state_bytes()));
    }
};
}  // namespace detail

/// A non-recursive lock. As in Python, any process or thread may release it, and releasing it
/// when it is not held throws ValueError.
class MPROCESS_EXPORT Lock {
public:
    /// A new lock, not held, in its own shared memory.
    Lock();

    /// Python's acquire(block=True, timeout=None): true once held, false on timeout.
    bool acquire(bool block = true, Timeout timeout = forever);
    /// Releases it; ValueError if it is not held.
    void release();

    /// acquire(), for std::lock_guard and the other standard locks.
    void lock() { acquire(); }
    /// acquire(false): true if it took the lock.
    bool try_lock() { return acquire(false); }
    /// acquire(true, d): true if it took the lock within `d`.
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> d) {
        return acquire(true, d);
    }
    /// release(), for the standard locks.
    void unlock() { release(); }

    /// True from an acquire that took the lock over from a dead owner until mark_consistent().
    bool owner_died() const noexcept;
    /// Clears owner_died(), once the data the lock guards have been checked or repaired.
    void mark_consistent() noexcept;

    /// Whether two handles are the same lock.
    friend bool operator==(const Lock&, const Lock&) = default;
    /// @cond INTERNAL
    static std::size_t state_bytes() noexcept;
    /// @endcond

private:
    template <class>
    friend struct detail::SyncSpawnArg;
    friend class Condition;
    explicit Lock(SharedState h) : h_(std::move(h)) {}
    SharedState h_;
};

/// A recursive lock: the thread that holds it may acquire it again, and must release it as many
/// times. Releasing it from another thread, or when not held, throws AssertionError.
class MPROCESS_EXPORT RLock {
public:
    /// A new lock, not held, in its own shared memory.
    RLock();

    /// Python's acquire(block=True, timeout=None): true once held (again, by its holder), false
    /// on timeout.
    bool acquire(bool block = true, Timeout timeout = forever);
    /// Releases one acquire; the lock is free after the last.
    void release();

    /// acquire(), for std::lock_guard and the other standard locks.
    void lock() { acquire(); }
    /// acquire(false): true if it took the lock.
    bool try_lock() { return acquire(false); }
    /// acquire(true, d): true if it took the lock within `d`.
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> d) {
        return acquire(true, d);
    }
    /// release(), for the standard locks.
    void unlock() { release(); }

    /// True from an acquire that took the lock over from a dead owner until mark_consistent().
    bool owner_died() const noexcept;
    /// Clears owner_died(), once the data the lock guards have been checked or repaired.
    void mark_consistent() noexcept;
    /// Not in Python's API: whether the calling thread holds it.
    bool is_owned() const noexcept;
    /// Not in Python's API: how many times the calling thread holds it (0 if it does not).
    unsigned count() const noexcept;

    /// Whether two handles are the same lock.
    friend bool operator==(const RLock&, const RLock&) = default;
    /// @cond INTERNAL
    static std::size_t state_bytes() noexcept;
    /// @endcond

private:
    template <class>
    friend struct detail::SyncSpawnArg;
    friend class Condition;
    template <class>
    friend class Value;
    template <class>
    friend class Array;
    explicit RLock(SharedState h) : h_(std::move(h)) {}
    SharedState h_;
};

/// A counting semaphore; release() may raise the value above its initial value.
class MPROCESS_EXPORT Semaphore {
public:
    /// A semaphore whose value starts at `value`.
    explicit Semaphore(unsigned value = 1);

    /// Takes one unit, waiting while the value is 0: true once taken, false on timeout.
    bool acquire(bool block = true, Timeout timeout = forever);
    /// Gives one unit back, waking a waiter.
    void release();
    /// The value now (Python's get_value()).
    unsigned get_value() const noexcept;

    /// acquire(), for std::lock_guard and the other standard locks.
    void lock() { acquire(); }
    /// acquire(false): true if it took a unit.
    bool try_lock() { return acquire(false); }
    /// release(), for the standard locks.
    void unlock() { release(); }

    /// Whether two handles are the same semaphore.
    friend bool operator==(const Semaphore&, const Semaphore&) = default;
    /// @cond INTERNAL
    static std::size_t state_bytes() noexcept;
    /// @endcond

protected:
    /// @cond INTERNAL
    Semaphore(unsigned value, unsigned maxvalue);
    explicit Semaphore(SharedState h) : h_(std::move(h)) {}
    /// @endcond

private:
    template <class>
    friend struct detail::SyncSpawnArg;
    SharedState h_;
};

/// A semaphore whose release() may not raise the value above its initial value (ValueError).
class MPROCESS_EXPORT BoundedSemaphore : public Semaphore {
public:
    /// A semaphore whose value starts, and stays at most, at `value`.
    explicit BoundedSemaphore(unsigned value = 1) : Semaphore(value, value) {}

private:
    template <class>
    friend struct detail::SyncSpawnArg;
    explicit BoundedSemaphore(SharedState h) : Semaphore(std::move(h)) {}
};

/// A condition variable over a Lock or an RLock (by default a new RLock, as in Python).
class MPROCESS_EXPORT Condition {
public:
    /// A condition over a new RLock.
    Condition();
    /// A condition over `lock` (the same lock: other handles of it guard the same data).
    explicit Condition(Lock lock);
    /// A condition over `lock`, as the Lock overload.
    explicit Condition(RLock lock);

    /// Acquires the condition's lock, as that lock's acquire().
    bool acquire(bool block = true, Timeout timeout = forever);
    /// Releases the condition's lock.
    void release();
    /// acquire(), for std::lock_guard and the other standard locks.
    void lock() { acquire(); }
    /// acquire(false): true if it took the lock.
    bool try_lock() { return acquire(false); }
    /// release(), for the standard locks.
    void unlock() { release(); }

    /// Releases the lock, waits for a notify (or the timeout: false), and takes the lock again.
    /// The lock must be held (AssertionError); an RLock held several times is released fully and
    /// restored.
    bool wait(Timeout timeout = forever);
    /// Waits until pred() holds, re-checking after every notify; returns pred()'s last value.
    template <class Pred>
    bool wait_for(Pred pred, Timeout timeout = forever) {
        const auto deadline = timeout.deadline();
        bool result = pred();
        while (!result) {
            if (deadline) {
                auto left = *deadline - std::chrono::steady_clock::now();
                if (left <= std::chrono::steady_clock::duration::zero()) break;
                wait(left);
            } else {
                wait();
            }
            result = pred();
        }
        return result;
    }
    /// Wakes up to n waiters (that started waiting before this call). The lock must be held
    /// (AssertionError).
    void notify(unsigned n = 1);
    /// Wakes every waiter. The lock must be held (AssertionError).
    void notify_all();

    /// Whether two handles are the same condition.
    friend bool operator==(const Condition& a, const Condition& b) noexcept { return a.h_ == b.h_; }
    /// @cond INTERNAL
    static std::size_t state_bytes() noexcept;
    /// @endcond

private:
    template <class, bool>
    friend struct detail::MemberSpawnArg;
    std::string export_to(SpawnArgs& args) const;
    static Condition import_from(const SpawnArgs& args, const std::string& blob);
    Condition(SharedState h, std::variant<Lock, RLock> lock) : h_(std::move(h)), lock_(std::move(lock)) {}
    void check_owned(const char* what) const;

    SharedState h_;
    std::variant<Lock, RLock> lock_;
};

/// A flag that processes can wait for.
class MPROCESS_EXPORT Event {
public:
    /// A new event, not set.
    Event();
    /// The flag.
    bool is_set() const noexcept;
    /// Sets the flag and wakes every waiter.
    void set();
    /// Clears the flag: later waits wait again.
    void clear();
    /// Returns the flag: true once set, false if the timeout passed first.
    bool wait(Timeout timeout = forever);

    /// Whether two handles are the same event.
    friend bool operator==(const Event&, const Event&) = default;
    /// @cond INTERNAL
    static std::size_t state_bytes() noexcept;
    /// @endcond

private:
    template <class>
    friend struct detail::SyncSpawnArg;
    explicit Event(SharedState h) : h_(std::move(h)) {}
    SharedState h_;
};

/// A Barrier's action: any callable under fork. To reach a child in a fresh program image (spawn,
/// forkserver) it must be a plain function, a lambda without captures, or a function object that
/// can travel as an argument does (serialize(), which may hold handles such as a Value); there it
/// is called as a copy, as Python unpickles one. Starting such a child with a Barrier whose action
/// cannot travel throws ProcessError.
class BarrierAction {
public:
    /// No action.
    BarrierAction() = default;
    /// No action, as Python's action=None.
    BarrierAction(std::nullptr_t) {}
    /// `f` as the action (see the class's description for what can travel).
    template <class F>
    requires(std::invocable<F&> && !std::same_as<std::decay_t<F>, BarrierAction> &&
             !std::same_as<std::decay_t<F>, std::nullptr_t>) BarrierAction(F f) {
        using Fp = detail::function_pointer_t<F>;
        if constexpr (!std::is_void_v<Fp>) {
            Fp fp = f;
            make_ = detail::entry_point<&from_function<Fp>>();
            fn_ = reinterpret_cast<void*>(fp);
        } else if constexpr (detail::SpawnArchivable<F>) {
            // Not raw bytes: a lambda's captures are, references and pointers included.
            make_ = detail::entry_point<&from_object<F>>();
            state_ = [f](SpawnArgs& args) { return detail::SpawnArg<F>::write(args, f); };
        }
        run_ = std::move(f);
    }
    /// True if there is an action.
    explicit operator bool() const noexcept { return static_cast<bool>(run_); }
    /// Runs the action (there must be one).
    void operator()() const { run_(); }

private:
    friend class Barrier;
    // Makes the action again in a fresh program image, from its function or its encoding.
    using Make = BarrierAction (*)(void* fn, const std::string& state, const SpawnArgs& args);
    template <class Fp>
    static BarrierAction from_function(void* fn, const std::string&, const SpawnArgs&) {
        return BarrierAction(reinterpret_cast<Fp>(fn));
    }
    template <class F>
    static BarrierAction from_object(void*, const std::string& state, const SpawnArgs& args) {
        return BarrierAction(detail::SpawnArg<F>::read(args, state));
    }

    std::function<void()> run_;
    Make make_ = nullptr;  // null: it cannot leave this program image
    void* fn_ = nullptr;
    std::function<std::string(SpawnArgs&)> state_;
};

/// threading.Barrier across processes: `parties` waits release each other. wait() returns a
/// different index in [0, parties) to each of them (the first to arrive gets 0); the last to
/// arrive runs `action` first (in its own process).
class MPROCESS_EXPORT Barrier {
public:
    /// What runs when the barrier releases (see BarrierAction).
    using Action = BarrierAction;
    /// A barrier for `parties` waits (ValueError for 0); `timeout` is wait()'s default.
    explicit Barrier(unsigned parties, Action action = {}, Timeout timeout = forever);

    /// Waits until `parties` waits have arrived, and returns this one's index. BrokenBarrierError
    /// if the barrier is or becomes broken: aborted, reset while waiting, or a wait that timed out
    /// (which breaks it for every waiter). An action that throws breaks it too, and its exception
    /// reaches the wait that ran it.
    unsigned wait(Timeout timeout);
    /// wait() with the timeout given at construction.
    unsigned wait() { return wait(default_timeout_); }
    /// Back to the initial state; the waits under way fail with BrokenBarrierError.
    void reset();
    /// Breaks the barrier: the waits under way, and later ones until reset(), fail with
    /// BrokenBarrierError.
    void abort();
    /// The number of waits it takes to release them.
    unsigned parties() const noexcept;
    /// The number of waits under way.
    unsigned n_waiting() const noexcept;
    /// True while the barrier is broken.
    bool broken() const noexcept;

    /// Whether two handles are the same barrier.
    friend bool operator==(const Barrier& a, const Barrier& b) noexcept { return a.h_ == b.h_; }
    /// @cond INTERNAL
    static std::size_t state_bytes() noexcept;
    /// @endcond

private:
    template <class, bool>
    friend struct detail::MemberSpawnArg;
    std::string export_to(SpawnArgs& args) const;
    static Barrier import_from(const SpawnArgs& args, const std::string& blob);
    Barrier(SharedState h, Action action, Timeout timeout)
        : h_(std::move(h)), action_(std::move(action)), default_timeout_(timeout) {}

    SharedState h_;
    Action action_;
    Timeout default_timeout_;
};

namespace detail {
template <>
struct SpawnArg<Lock> : SyncSpawnArg<Lock> {};
template <>
struct SpawnArg<RLock> : SyncSpawnArg<RLock> {};
template <>
struct SpawnArg<Semaphore> : SyncSpawnArg<Semaphore> {};
template <>
struct SpawnArg<BoundedSemaphore> : SyncSpawnArg<BoundedSemaphore> {};
template <>
struct SpawnArg<Event> : SyncSpawnArg<Event> {};
template <>
struct SpawnArg<Condition> : MemberSpawnArg<Condition> {};
template <>
struct SpawnArg<Barrier> : MemberSpawnArg<Barrier> {};
}  // namespace detail

}  // namespace mprocess
