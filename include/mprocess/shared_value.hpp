// SPDX-License-Identifier: Apache-2.0
/// @file
/// Value, Array, RawValue, RawArray: typed data in shared memory, as multiprocessing.sharedctypes.
///
/// @code{.cpp}
/// mp::Array<int> result(3);                         // zeroed, like mp.Array('i', 3)
/// mp::Process p([](mp::Array<int> r) { r[0] = 9; }, result);
/// p.start(); p.join();                              // result[0] == 9 here too
///
/// mp::Value<int> v(0);                              // mp.Value('i', 0)
/// { std::lock_guard g(v.get_lock()); v.set_value(v.value() + 1); }
/// @endcode
///
/// T is any trivially copyable type that is not a pointer (a pointer means nothing in another
/// process). Each object is a handle: copies share the memory, and it passes to a child as a
/// Process argument under every start method. The memory is anonymous: the kernel frees it when
/// the last process holding it lets go, however the processes end.
///
/// Locking, as in Python: Value and Array carry an RLock (get_lock()); value() and set_value() each
/// take it, so a read-modify-write such as set_value(value() + 1) is two locked steps and needs
/// the lock held around it. Array elements (operator[], iteration, span()) are plain memory: hold
/// get_lock() for a consistent view. RawValue and RawArray have no lock. If a process dies holding
/// the lock, the next holder is told so by get_lock().owner_died() (see synchronize.hpp).
#pragma once

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "mprocess/serialize.hpp"
#include "mprocess/synchronize.hpp"

namespace mprocess {

namespace detail {
// The lock's state comes first; an array starts on the next cache line.
inline constexpr std::size_t kSharedDataOffset = 64;
// A small value shares the lock's cache line: a process taking the lock then touches one line.
template <class T>
inline constexpr std::size_t kValueOffset = sizeof(T) <= 48 && alignof(T) <= 16 ? 16 : kSharedDataOffset;

template <class T>
constexpr void require_shareable() {
    static_assert(RawMessage<T>,
                  "mprocess: shared values and arrays hold trivially copyable types without pointers "
                  "(ints, doubles, plain structs)");
}

template <class T>
struct SharedSpawnArg;
}  // namespace detail

/// A T in shared memory without a lock (Python's RawValue).
template <class T>
class RawValue {
public:
    /// A new value in new shared memory, holding `initial`.
    explicit RawValue(const T& initial = T{}) : RawValue(make(), 1, false) { std::memcpy(ptr(), &initial, sizeof(T)); }

    /// Reads it (Python's v.value).
    T value() const { return *ptr(); }
    /// Writes it (Python's v.value = x).
    void set_value(const T& v) { *ptr() = v; }
    /// Python's get_obj(): the shared object itself.
    T& get_obj() const noexcept { return *ptr(); }

    /// Whether two handles are the same shared memory.
    friend bool operator==(const RawValue& a, const RawValue& b) noexcept { return a.h_ == b.h_; }
    /// @cond INTERNAL
    static std::size_t state_bytes(std::size_t = 1) noexcept { return detail::kValueOffset<T> + sizeof(T); }
    /// @endcond

protected:
    /// @cond INTERNAL
    RawValue(SharedState h, std::size_t, bool) : h_(std::move(h)) { detail::require_shareable<T>(); }
    static SharedState make() { return SharedState(state_bytes()); }
    std::size_t shared_count() const noexcept { return 1; }
    bool shared_lock() const noexcept { return false; }
    T* ptr() const noexcept {
        return std::launder(reinterpret_cast<T*>(static_cast<char*>(h_.state()) + detail::kValueOffset<T>));
    }

    template <class>
    friend struct detail::SharedSpawnArg;
    SharedState h_;
    /// @endcond
};

/// Python's Value(typecode, initial, lock=True): a T in shared memory with an RLock.
template <class T>
class Value : public RawValue<T> {
public:
    /// A new value holding `initial`; lock = false: no lock, as RawValue (get_lock() throws).
    explicit Value(const T& initial = T{}, bool lock = true) : Value(RawValue<T>::make(), 1, lock) {
        std::memcpy(this->ptr(), &initial, sizeof(T));
    }

    /// Reads it under the lock (Python's v.value).
    T value() const {
        if (!has_lock_) return *this->ptr();
        std::lock_guard g(lock_);
        return *this->ptr();
    }
    /// Writes it under the lock (Python's v.value = x). A read-modify-write needs get_lock() held
    /// around it.
    void set_value(const T& v) {
        if (!has_lock_) {
            *this->ptr() = v;
            return;
        }
        std::lock_guard g(lock_);
        *this->ptr() = v;
    }
    /// The RLock that value() and set_value() take; ValueError for a Value made with lock = false.
    RLock& get_lock() const {
        if (!has_lock_) throw ValueError("this Value was made with lock = false");
        return lock_;
    }

private:
    template <class>
    friend struct detail::SharedSpawnArg;
    Value(SharedState h, std::size_t n, bool lock)
        : RawValue<T>(std::move(h), n, lock), lock_(this->h_), has_lock_(lock) {}
    bool shared_lock() const noexcept { return has_lock_; }
    mutable RLock lock_;
    bool has_lock_;
};

/// n Ts in shared memory without a lock, zeroed when new (Python's RawArray).
template <class T>
class RawArray {
public:
    /// n zeroed elements.
    explicit RawArray(std::size_t n) : RawArray(make(n), n, false) {}
    /// The elements given.
    RawArray(std::initializer_list<T> init) : RawArray(std::span<const T>(init.begin(), init.size())) {}
    /// A copy of `init`'s elements.
    explicit RawArray(std::span<const T> init) : RawArray(make(init.size()), init.size(), false) {
        if (!init.empty()) std::memcpy(data(), init.data(), init.size_bytes());
    }

    /// The number of elements, fixed at creation.
    std::size_t size() const noexcept { return n_; }
    /// The first element, in the shared memory.
    T* data() const noexcept {
        return std::launder(reinterpret_cast<T*>(static_cast<char*>(h_.state()) + detail::kSharedDataOffset));
    }
    /// Element i, unchecked.
    T& operator[](std::size_t i) const noexcept { return data()[i]; }
    /// Element i; std::out_of_range past the end (Python's IndexError).
    T& at(std::size_t i) const {
        if (i >= n_)
            throw std::out_of_range("array index " + std::to_string(i) + " out of range " + std::to_string(n_));
        return data()[i];
    }
    /// Iteration over the shared elements, in place.
    T* begin() const noexcept { return data(); }
    /// The end of iteration.
    T* end() const noexcept { return data() + n_; }
    /// The shared elements, in place.
    std::span<T> span() const noexcept { return {data(), n_}; }
    /// Python's arr[:]: a copy.
    std::vector<T> values() const { return {begin(), end()}; }

    /// Whether two handles are the same shared memory.
    friend bool operator==(const RawArray& a, const RawArray& b) noexcept { return a.h_ == b.h_; }
    /// @cond INTERNAL
    static std::size_t state_bytes(std::size_t n) noexcept { return detail::kSharedDataOffset + n * sizeof(T); }
    /// @endcond

protected:
    /// @cond INTERNAL
    RawArray(SharedState h, std::size_t n, bool) : h_(std::move(h)), n_(n) { detail::require_shareable<T>(); }
    static SharedState make(std::size_t n) { return SharedState(state_bytes(n)); }
    std::size_t shared_count() const noexcept { return n_; }
    bool shared_lock() const noexcept { return false; }

    template <class>
    friend struct detail::SharedSpawnArg;
    SharedState h_;
    std::size_t n_;
    /// @endcond
};

/// Python's Array(typecode, size_or_initializer, lock=True): RawArray plus an RLock.
template <class T>
class Array : public RawArray<T> {
public:
    /// n zeroed elements; lock = false: no lock, as RawArray (get_lock() throws).
    explicit Array(std::size_t n, bool lock = true) : Array(RawArray<T>::make(n), n, lock) {}
    /// The elements given, with a lock.
    Array(std::initializer_list<T> init) : Array(std::span<const T>(init.begin(), init.size())) {}
    /// A copy of `init`'s elements; lock as the first constructor's.
    explicit Array(std::span<const T> init, bool lock = true)
        : Array(RawArray<T>::make(init.size()), init.size(), lock) {
        if (!init.empty()) std::memcpy(this->data(), init.data(), init.size_bytes());
    }

    /// The RLock to hold for a consistent view of the elements; ValueError for an Array made with
    /// lock = false.
    RLock& get_lock() const {
        if (!has_lock_) throw ValueError("this Array was made with lock = false");
        return lock_;
    }
    /// A consistent copy, taken under the lock.
    std::vector<T> values() const {
        if (!has_lock_) return RawArray<T>::values();
        std::lock_guard g(lock_);
        return RawArray<T>::values();
    }

private:
    template <class>
    friend struct detail::SharedSpawnArg;
    Array(SharedState h, std::size_t n, bool lock)
        : RawArray<T>(std::move(h), n, lock), lock_(this->h_), has_lock_(lock) {}
    bool shared_lock() const noexcept { return has_lock_; }
    mutable RLock lock_;
    bool has_lock_;
};

namespace detail {
// (state, element count, has a lock)
using SharedBlob = std::tuple<std::string, std::uint64_t, bool>;

template <class S>
struct SharedSpawnArg {
    static constexpr bool handle = true, nestable = true;
    static std::string write(SpawnArgs& args, const S& s) {
        return encode(SharedBlob{s.h_.export_to(args), s.shared_count(), s.shared_lock()});
    }
    static S read(const SpawnArgs& args, const std::string& blob) {
        auto [state, n, lock] = decode<SharedBlob>(blob);
        return S(SharedState::import(args, state, S::state_bytes(n)), n, lock);
    }
};

template <class T>
struct SpawnArg<RawValue<T>> : SharedSpawnArg<RawValue<T>> {};
template <class T>
struct SpawnArg<Value<T>> : SharedSpawnArg<Value<T>> {};
template <class T>
struct SpawnArg<RawArray<T>> : SharedSpawnArg<RawArray<T>> {};
template <class T>
struct SpawnArg<Array<T>> : SharedSpawnArg<Array<T>> {};
}  // namespace detail

}  // namespace mprocess
