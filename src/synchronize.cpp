// SPDX-License-Identifier: Apache-2.0
// Lock, RLock, Semaphore, Condition, Event, Barrier in shared memory.
//
// Each object's state sits at the start of its own memfd page (zero-filled by the kernel, which
// is every state's "new" value). Locks are ShmLocks (see shm_lock.hpp): owner thread id in the
// word, takeover from a dead owner. Everything else waits (wait/wait.hpp) on a futex word with a
// sleeper count: a waker changes the word, fences, and calls futex_wake only if someone sleeps; a
// sleeper counts itself, fences, and looks again before sleeping, so no wake-up is lost. Sleepers
// look again at least every 200 ms in case a waker was killed between its change and its wake.
#include "mprocess/synchronize.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <tuple>

#include "platform/posix.hpp"
#include "start/popen.hpp"
#include "wait/shm_lock.hpp"
#include "wait/wait.hpp"

namespace mprocess {
namespace detail {

using platform::Deadline;

class SyncSegment {
public:
    SyncSegment(platform::Fd fd, std::size_t size)
        : fd_(std::move(fd)), size_(size), base_(platform::map_shared(fd_.get(), size)) {}
    ~SyncSegment() { platform::unmap(base_, size_); }
    SyncSegment(const SyncSegment&) = delete;
    SyncSegment& operator=(const SyncSegment&) = delete;
    void* base() const noexcept { return base_; }
    int fd() const noexcept { return fd_.get(); }
    std::size_t size() const noexcept { return size_; }

private:
    platform::Fd fd_;
    std::size_t size_;
    void* base_;
};

}  // namespace detail

SharedState::SharedState(std::size_t bytes)
    : seg_(std::make_shared<detail::SyncSegment>(platform::make_memfd("mprocess-sync", bytes), bytes)),
      state_(seg_->base()) {}

using ExportedSync = std::tuple<std::uint64_t, int>;  // size, descriptor index

std::string SharedState::export_to(SpawnArgs& args) const {
    if (!seg_) throw ValueError("cannot pass an empty synchronization handle");
    return encode(ExportedSync{seg_->size(), args.add_fd(seg_->fd())});
}

SharedState SharedState::import(const SpawnArgs& args, const std::string& blob, std::size_t bytes) {
    auto [size, index] = decode<ExportedSync>(blob);
    platform::Fd fd = detail::copy_spawn_fd(args, index, "synchronization object");
    if (size < bytes || size != platform::file_size(fd.get()))
        throw DecodeError("exported synchronization object: size does not match its memory");
    SharedState h;
    h.seg_ = std::make_shared<detail::SyncSegment>(std::move(fd), size);
    h.state_ = h.seg_->base();
    return h;
}

namespace detail {

namespace {

Deadline deadline_of(bool block, const Timeout& timeout) {
    return block ? timeout.deadline() : kTryOnce;
}

struct LockState {
    ShmLock lock;
    std::atomic<std::uint32_t> died;  // taken over from a dead owner, not yet marked consistent
    std::uint32_t count;              // RLock: how many times the owner holds it
};

struct SemState {
    std::atomic<std::uint32_t> value;
    std::atomic<std::uint32_t> sleepers;
    std::uint32_t maxvalue;  // 0: unbounded
};

struct EventState {
    std::atomic<std::uint32_t> flag;
    std::atomic<std::uint32_t> sleepers;
};

// Waits in the manner of the classic futex condition variable: `total` waits begun, `wakeup`
// wake-ups granted, `woken` taken. A waiter may take a wake-up only if it was granted after the
// waiter began (`wakeup` moved past what it saw), so notify(n) wakes at most n earlier waiters.
struct CondState {
    ShmLock guard;
    std::atomic<std::uint32_t> seq;  // futex word: changes on every notify
    std::atomic<std::uint32_t> sleepers;
    std::uint64_t total, wakeup, woken;
};

struct BarrierState {
    ShmLock guard;
    std::atomic<std::uint32_t> gen;  // futex word: a new generation releases the waiters
    std::atomic<std::uint32_t> sleepers;
    std::uint32_t parties;
    std::uint32_t count;       // arrived in this generation
    std::uint32_t broken;      // aborted, or a wait timed out: every wait fails until reset()
    std::uint32_t failed_gen;  // 1 + a generation that ended broken (its waiters fail)
};

template <class S>
S& state_of(const SharedState& h) {
    return *static_cast<S*>(h.state());
}

ShmLock::Result take(LockState& s, bool block, const Timeout& timeout) {
    auto r = s.lock.lock_until(deadline_of(block, timeout));
    if (r == ShmLock::Result::owner_died) s.died.store(1, std::memory_order_relaxed);
    return r;
}

}  // namespace
}  // namespace detail

using detail::BarrierState;
using detail::CondState;
using detail::EventState;
using detail::LockState;
using detail::SemState;
using detail::state_of;

// ---- Lock ---------------------------------------------------------------------------------------

std::size_t Lock::state_bytes() noexcept {
    return 4096;
}

Lock::Lock() : h_(state_bytes()) {}

bool Lock::acquire(bool block, Timeout timeout) {
    return detail::take(state_of<LockState>(h_), block, timeout) != detail::ShmLock::Result::timeout;
}

void Lock::release() {
    if (state_of<LockState>(h_).lock.unlock() == 0) throw ValueError("semaphore or lock released too many times");
}

bool Lock::owner_died() const noexcept {
    return state_of<LockState>(h_).died.load(std::memory_order_relaxed) != 0;
}

void Lock::mark_consistent() noexcept {
    state_of<LockState>(h_).died.store(0, std::memory_order_relaxed);
}

// ---- RLock --------------------------------------------------------------------------------------

std::size_t RLock::state_bytes() noexcept {
    return 4096;
}

RLock::RLock() : h_(state_bytes()) {}

bool RLock::acquire(bool block, Timeout timeout) {
    auto& s = state_of<LockState>(h_);
    if (s.lock.owner() == platform::current_tid()) {
        ++s.count;
        return true;
    }
    if (detail::take(s, block, timeout) == detail::ShmLock::Result::timeout) return false;
    s.count = 1;
    return true;
}

void RLock::release() {
    auto& s = state_of<LockState>(h_);
    if (s.lock.owner() != platform::current_tid() || s.count == 0)
        throw AssertionError("attempt to release recursive lock not owned by thread");
    if (--s.count == 0) s.lock.unlock();
}

bool RLock::owner_died() const noexcept {
    return state_of<LockState>(h_).died.load(std::memory_order_relaxed) != 0;
}

void RLock::mark_consistent() noexcept {
    state_of<LockState>(h_).died.store(0, std::memory_order_relaxed);
}

bool RLock::is_owned() const noexcept {
    return state_of<LockState>(h_).lock.owner() == platform::current_tid();
}

unsigned RLock::count() const noexcept {
    return is_owned() ? state_of<LockState>(h_).count : 0;
}

// ---- Semaphore ----------------------------------------------------------------------------------

std::size_t Semaphore::state_bytes() noexcept {
    return 4096;
}

Semaphore::Semaphore(unsigned value) : Semaphore(value, 0) {}

Semaphore::Semaphore(unsigned value, unsigned maxvalue) : h_(state_bytes()) {
    auto& s = state_of<SemState>(h_);
    s.value.store(value, std::memory_order_relaxed);
    s.maxvalue = maxvalue;
}

bool Semaphore::acquire(bool block, Timeout timeout) {
    auto& s = state_of<SemState>(h_);
    auto try_take = [&s] {
        std::uint32_t v = s.value.load(std::memory_order_relaxed);
        while (v > 0)
            if (s.value.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed))
                return true;
        return false;
    };
    return detail::wait_until(try_take, detail::FutexSleeper(s.value, s.sleepers), detail::deadline_of(block, timeout));
}

void Semaphore::release() {
    auto& s = state_of<SemState>(h_);
    std::uint32_t v = s.value.load(std::memory_order_relaxed);
    do {
        if (s.maxvalue != 0 && v >= s.maxvalue) throw ValueError("semaphore or lock released too many times");
    } while (!s.value.compare_exchange_weak(v, v + 1, std::memory_order_release, std::memory_order_relaxed));
    detail::FutexSleeper(s.value, s.sleepers).wake(1);
}

unsigned Semaphore::get_value() const noexcept {
    return state_of<SemState>(h_).value.load(std::memory_order_relaxed);
}

// ---- Event --------------------------------------------------------------------------------------

std::size_t Event::state_bytes() noexcept {
    return 4096;
}

Event::Event() : h_(state_bytes()) {}

bool Event::is_set() const noexcept {
    return state_of<EventState>(h_).flag.load(std::memory_order_acquire) != 0;
}

void Event::set() {
    auto& s = state_of<EventState>(h_);
    s.flag.store(1, std::memory_order_release);
    detail::FutexSleeper(s.flag, s.sleepers).wake(INT_MAX);
}

void Event::clear() {
    state_of<EventState>(h_).flag.store(0, std::memory_order_release);
}

bool Event::wait(Timeout timeout) {
    auto& s = state_of<EventState>(h_);
    return detail::wait_until([this] { return is_set(); }, detail::FutexSleeper(s.flag, s.sleepers),
                              timeout.deadline());
}

// ---- Condition ----------------------------------------------------------------------------------

std::size_t Condition::state_bytes() noexcept {
    return 4096;
}

Condition::Condition() : Condition(RLock()) {}
Condition::Condition(Lock lock) : h_(state_bytes()), lock_(std::move(lock)) {}
Condition::Condition(RLock lock) : h_(state_bytes()), lock_(std::move(lock)) {}

bool Condition::acquire(bool block, Timeout timeout) {
    return std::visit([&](auto& l) { return l.acquire(block, timeout); }, lock_);
}

void Condition::release() {
    std::visit([](auto& l) { l.release(); }, lock_);
}

void Condition::check_owned(const char* what) const {
    const bool owned = std::visit(
        [](const auto& l) { return state_of<LockState>(l.h_).lock.owner() == platform::current_tid(); }, lock_);
    if (!owned) throw AssertionError(std::string("cannot ") + what + " on un-acquired lock");
}

bool Condition::wait(Timeout timeout) {
    check_owned("wait");
    auto& s = state_of<CondState>(h_);
    const auto deadline = timeout.deadline();
    std::uint64_t start;
    {
        detail::ShmLockGuard g(s.guard);
        ++s.total;
        start = s.wakeup;
    }
    // Let the lock go completely (an RLock may be held several times), and take it back after.
    unsigned depth = 1;
    if (auto* r = std::get_if<RLock>(&lock_)) {
        auto& ls = state_of<LockState>(r->h_);
        depth = ls.count;
        ls.count = 1;
    }
    release();
    // Under the guard: takes a wake-up granted since this wait began, if one is left.
    auto take_wakeup = [&] {
        if (s.wakeup == start || s.woken == s.wakeup) return false;
        ++s.woken;
        return true;
    };
    // No spin: each look takes the guard, which notify() needs.
    bool notified = detail::wait_until(
        [&] {
            detail::ShmLockGuard g(s.guard);
            return take_wakeup();
        },
        detail::FutexSleeper(s.seq, s.sleepers), deadline, {.spin = std::chrono::nanoseconds(0)});
    if (!notified) {
        detail::ShmLockGuard g(s.guard);
        notified = take_wakeup();
        // Leave as if woken, so that total - wakeup still counts the waiters.
        if (!notified) {
            ++s.wakeup;
            ++s.woken;
        }
    }
    acquire();
    if (auto* r = std::get_if<RLock>(&lock_)) state_of<LockState>(r->h_).count = depth;
    return notified;
}

void Condition::notify(unsigned n) {
    check_owned("notify");
    auto& s = state_of<CondState>(h_);
    detail::ShmLockGuard g(s.guard);
    const std::uint64_t k = std::min<std::uint64_t>(n, s.total - s.wakeup);
    if (k == 0) return;
    s.wakeup += k;
    s.seq.fetch_add(1, std::memory_order_release);
    platform::futex_wake(&s.seq, static_cast<int>(std::min<std::uint64_t>(k, INT_MAX)));
}

void Condition::notify_all() {
    notify(UINT_MAX);
}

std::string Condition::export_to(SpawnArgs& args) const {
    const bool recursive = std::holds_alternative<RLock>(lock_);
    std::string lock =
        std::visit([&](const auto& l) { return detail::SpawnArg<std::decay_t<decltype(l)>>::write(args, l); }, lock_);
    return encode(std::tuple<std::string, std::string, bool>{h_.export_to(args), lock, recursive});
}

Condition Condition::import_from(const SpawnArgs& args, const std::string& blob) {
    auto [cond, lock, recursive] = decode<std::tuple<std::string, std::string, bool>>(blob);
    auto h = SharedState::import(args, cond, Condition::state_bytes());
    if (recursive) return Condition(std::move(h), detail::SpawnArg<RLock>::read(args, lock));
    return Condition(std::move(h), detail::SpawnArg<Lock>::read(args, lock));
}

// ---- Barrier ------------------------------------------------------------------------------------

std::size_t Barrier::state_bytes() noexcept {
    return 4096;
}

Barrier::Barrier(unsigned parties, Action action, Timeout timeout)
    : h_(state_bytes()), action_(std::move(action)), default_timeout_(timeout) {
    if (parties == 0) throw ValueError("a Barrier needs at least one party");
    state_of<BarrierState>(h_).parties = parties;
}

unsigned Barrier::wait(Timeout timeout) {
    auto& s = state_of<BarrierState>(h_);
    const auto deadline = timeout.deadline();
    std::uint32_t gen;
    unsigned index;
    {
        detail::ShmLockGuard g(s.guard);
        if (s.broken) throw BrokenBarrierError("the barrier is broken");
        gen = s.gen.load(std::memory_order_relaxed);
        index = s.count++;
        if (s.count == s.parties) {
            if (action_) {
                try {
                    action_();
                } catch (...) {
                    s.broken = 1;
                    s.failed_gen = gen + 1;
                    s.count = 0;
                    s.gen.fetch_add(1, std::memory_order_release);
                    platform::futex_wake(&s.gen, INT_MAX);
                    throw;
                }
            }
            s.count = 0;
            s.gen.fetch_add(1, std::memory_order_release);
            platform::futex_wake(&s.gen, INT_MAX);
            return index;
        }
    }
    auto released = [&] { return s.gen.load(std::memory_order_acquire) != gen; };
    if (!detail::wait_until(released, detail::FutexSleeper(s.gen, s.sleepers), deadline)) {
        // Timed out: break the barrier for everyone waiting in this generation.
        detail::ShmLockGuard g(s.guard);
        if (s.gen.load(std::memory_order_relaxed) == gen) {
            s.broken = 1;
            s.failed_gen = gen + 1;
            s.count = 0;
            s.gen.fetch_add(1, std::memory_order_release);
            platform::futex_wake(&s.gen, INT_MAX);
            throw BrokenBarrierError("a Barrier wait timed out");
        }
    }
    detail::ShmLockGuard g(s.guard);
    if (s.failed_gen == gen + 1) throw BrokenBarrierError("the barrier was broken while waiting");
    return index;
}

void Barrier::reset() {
    auto& s = state_of<BarrierState>(h_);
    detail::ShmLockGuard g(s.guard);
    const std::uint32_t gen = s.gen.load(std::memory_order_relaxed);
    if (s.count > 0) {
        s.failed_gen = gen + 1;  // those waiting now fail
        s.gen.fetch_add(1, std::memory_order_release);
        platform::futex_wake(&s.gen, INT_MAX);
    }
    s.count = 0;
    s.broken = 0;
}

void Barrier::abort() {
    auto& s = state_of<BarrierState>(h_);
    detail::ShmLockGuard g(s.guard);
    s.broken = 1;
    if (s.count > 0) {
        s.failed_gen = s.gen.load(std::memory_order_relaxed) + 1;
        s.count = 0;
        s.gen.fetch_add(1, std::memory_order_release);
        platform::futex_wake(&s.gen, INT_MAX);
    }
}

unsigned Barrier::parties() const noexcept {
    return state_of<BarrierState>(h_).parties;
}

unsigned Barrier::n_waiting() const noexcept {
    return state_of<BarrierState>(h_).count;
}

bool Barrier::broken() const noexcept {
    return state_of<BarrierState>(h_).broken != 0;
}

namespace {
// (state, the action's maker, its function, its encoding, timeout infinite, timeout ns); no
// maker: no action.
using BarrierBlob = std::tuple<std::string, std::string, std::string, std::string, bool, std::int64_t>;
using detail::code_symbol;
using detail::entry_address;
using detail::function_address;
using detail::Symbol;
}  // namespace

std::string Barrier::export_to(SpawnArgs& args) const {
    const BarrierAction& action = action_;
    if (action && !action.make_)
        throw ProcessError(
            "a Barrier's action cannot reach a child in a fresh program image: make it a plain function, a lambda "
            "without captures or a function object with serialize(), or use the fork start method");
    auto symbol = [](void* p) { return p ? encode(code_symbol(p)) : std::string(); };
    const auto t = default_timeout_;
    return encode(BarrierBlob{h_.export_to(args), symbol(reinterpret_cast<void*>(action.make_)), symbol(action.fn_),
                              action.state_ ? action.state_(args) : std::string(), t.infinite(),
                              t.infinite() ? 0 : t.duration().count()});
}

Barrier Barrier::import_from(const SpawnArgs& args, const std::string& blob) {
    auto [state, make, fn, action_state, infinite, ns] = decode<BarrierBlob>(blob);
    BarrierAction action;
    if (!make.empty()) {
        auto make_fn = reinterpret_cast<BarrierAction::Make>(entry_address(decode<Symbol>(make)));
        action = make_fn(fn.empty() ? nullptr : function_address(decode<Symbol>(fn)), action_state, args);
    }
    const Timeout timeout = infinite ? Timeout(forever) : Timeout(std::chrono::nanoseconds(ns));
    return Barrier(SharedState::import(args, state, Barrier::state_bytes()), std::move(action), timeout);
}

}  // namespace mprocess
