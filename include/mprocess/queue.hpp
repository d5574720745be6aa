// SPDX-License-Identifier: Apache-2.0
/// @file
/// Queue, JoinableQueue and SimpleQueue: typed message queues between processes, as
/// multiprocessing.Queue and friends.
///
/// @code{.cpp}
/// mp::Queue<std::vector<int>> q;
/// mp::Process p([](mp::Queue<std::vector<int>> q) { q.put({1, 2, 3}); }, q);
/// p.start();
/// auto v = q.get();                       // {1, 2, 3}
/// @endcode
///
/// Transport. A queue is one piece of anonymous shared memory: a small ring for the usual traffic,
/// a larger one for medium items, and a large, sparse overflow area for a backlog or a large item
/// (pages are touched only when used). Each item is one record, published by a single store, so
/// put() returns only once the item is in the queue, and there is no feeder thread. Waiting spins
/// for a few microseconds, then sleeps on a futex. See docs/architecture.md.
///
/// Semantics, as Python's: FIFO per producer, any number of producers and consumers in any
/// processes, put/get with block and timeout, Empty and Full, maxsize in items, qsize/empty/full,
/// close() for this process, JoinableQueue's task_done()/join().
///
/// Better than Python's:
///  - put() never hands the item to a background thread: an error (an item too large) comes from
///    put() itself, a process may exit right after put() and lose nothing, and empty()/qsize()
///    count the item as soon as put() returns;
///  - an unbounded queue's put() never waits for a consumer, short of a backlog that fills the
///    overflow (32 GiB of address space where the system allows); the memory a backlog took is
///    given back to the system as consumers drain it;
///  - typed: a Queue<T> carries T only, checked when the queue reaches another program image;
///  - a process killed inside put() or get() does not wedge the queue: its lock is taken over.
///    A put() killed before it returned may or may not have delivered its item; a get() killed
///    before it returned leaves the item in the queue for the next consumer, unless the consumer
///    was killed after taking the item and before get() returned, in which case that one item is
///    lost. Nothing else is lost or duplicated.
#pragma once

#include "mprocess/export.hpp"

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mprocess/connection.hpp"
#include "mprocess/detail/spawn.hpp"
#include "mprocess/error.hpp"
#include "mprocess/serialize.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

/// The options of Queue and JoinableQueue.
struct QueueOptions {
    std::size_t maxsize = 0;                           ///< items; 0 = unbounded
    std::size_t ring_bytes = std::size_t{256} * 1024;  ///< the ring for the usual traffic; a backlog overflows it
};

namespace detail {
class QueueCore;
}

/// An untyped queue of byte items: what every Queue, JoinableQueue and SimpleQueue holds, and the
/// whole of its transport. Programs use those typed queues; this is the part they share, with
/// Python's semantics (see queue.hpp).
class MPROCESS_EXPORT RawQueue {
public:
    /// Gets the bytes of one item, in one piece or two (when it wraps around the ring).
    class Reader {
    public:
        /// The item's bytes: `first`, then `second` (empty unless the item wrapped).
        virtual void read(std::string_view first, std::string_view second) = 0;

    protected:
        ~Reader() = default;
    };

    /// No queue: every call but closed() throws ValueError.
    RawQueue() = default;
    /// A new queue, for items of the type with this tag and name; `joinable` for JoinableQueue.
    RawQueue(std::uint64_t type_tag, std::string_view type_name, const QueueOptions& options, bool joinable);

    /// Puts one item given in two parts (its bytes are head then body).
    void put(std::string_view head, std::string_view body, bool block, const Timeout& timeout);
    /// Takes one item and hands its bytes to `reader`.
    void get(Reader& reader, bool block, const Timeout& timeout);
    /// The items in the queue now.
    std::size_t qsize() const;
    /// The most items it holds; 0 = unbounded.
    std::size_t maxsize() const;
    /// This process uses the queue no more.
    void close() noexcept;
    /// True once close() was called here (or for no queue).
    bool closed() const noexcept;
    /// Python's join_thread(): ValueError before close(); nothing to wait for after.
    void join_thread() const;
    /// JoinableQueue's task_done().
    void task_done();
    /// JoinableQueue's join(): true once every item was marked done.
    bool join(const Timeout& timeout);

    /// Writes the queue into a spawned child's arguments.
    std::string export_to(SpawnArgs& args) const;
    /// In the child: the queue written by export_to(), refused unless its items are of this type.
    static RawQueue import(const SpawnArgs& args, const std::string& blob, std::uint64_t type_tag,
                           std::string_view type_name, bool joinable);

    /// @cond INTERNAL
    MPROCESS_NO_EXPORT detail::QueueCore& core() const;  // for tests of the internals
    /// @endcond
    /// Whether two handles are the same queue.
    friend bool operator==(const RawQueue&, const RawQueue&) = default;

private:
    explicit RawQueue(std::shared_ptr<detail::QueueCore> c) : core_(std::move(c)) {}
    std::shared_ptr<detail::QueueCore> core_;
};

namespace detail {

// Strings and vectors of numbers: one size and one run of bytes on the wire (as cereal writes
// them), so large ones are copied straight between the object and the queue.
template <class T>
struct Blob : std::false_type {};
template <class C, class Tr, class A>
struct Blob<std::basic_string<C, Tr, A>> : std::bool_constant<std::is_arithmetic_v<C>> {};
template <class E, class A>
struct Blob<std::vector<E, A>> : std::bool_constant<std::is_arithmetic_v<E> && !std::is_same_v<E, bool>> {};

template <class T>
T read_blob(std::string_view bytes) {
    using E = typename T::value_type;
    std::uint64_t n = 0;
    if (bytes.size() < sizeof n) throw DecodeError("truncated queue item: no size");
    std::memcpy(&n, bytes.data(), sizeof n);
    bytes.remove_prefix(sizeof n);
    if (n != bytes.size() / sizeof(E) || bytes.size() % sizeof(E) != 0)
        throw DecodeError("corrupt queue item: a " + std::string(type_name_v<T>) + " of " + std::to_string(n) +
                          " elements in " + std::to_string(bytes.size()) + " bytes");
    // Fresh pages of 4 KiB, not transparent huge pages: first-touching huge pages measured 1.9 to 22
    // items/s for 64 MiB items (whether the kernel had them at hand), 4 KiB pages 12 to 18.
    if constexpr (sizeof(E) == 1) {
        const auto* p = reinterpret_cast<const E*>(bytes.data());
        return T(p, p + n);  // one pass: no zero-fill first
    } else {
        T obj(n);
        if (n != 0) std::memcpy(obj.data(), bytes.data(), bytes.size());
        return obj;
    }
}

template <class T>
struct ItemReader final : RawQueue::Reader {
    void read(std::string_view first, std::string_view second) override {
        if constexpr (Blob<T>::value) {
            if (second.empty()) {
                value = read_blob<T>(first);
            } else {
                auto& buf = scratch();
                buf.assign(first);
                buf.append(second);
                value = read_blob<T>(buf);
                release_scratch(buf);
            }
        } else if constexpr (RawMessage<T>) {
            if (first.size() + second.size() != sizeof(T))
                throw DecodeError::wrong_size(type_name_v<T>, sizeof(T), first.size() + second.size());
            if (second.empty()) {
                std::memcpy(storage, first.data(), sizeof(T));
                return;
            }
            std::memcpy(storage, first.data(), first.size());
            std::memcpy(storage + first.size(), second.data(), second.size());
        } else if (second.empty()) {
            value = decode_payload(first);
        } else {
            auto& buf = scratch();
            buf.assign(first);
            buf.append(second);
            value = decode_payload(buf);
            release_scratch(buf);
        }
    }
    static T decode_payload(std::string_view payload) {
        InArchive ar(payload.data(), payload.size());
        return load_whole<T>(ar, "queue item");
    }
    T take() {
        if constexpr (RawMessage<T>) {
            return *std::launder(reinterpret_cast<T*>(storage));
        } else {
            return std::move(value);
        }
    }
    struct Empty {};
    alignas(T) unsigned char storage[RawMessage<T> ? sizeof(T) : 1];
    [[no_unique_address]] std::conditional_t<RawMessage<T>, Empty, T> value;
};

// What Queue, JoinableQueue and SimpleQueue share: a typed view of a RawQueue.
template <class Q, class T>
struct QueueSpawnArg;

template <class T>
class TypedQueue {
    static_assert(Serializable<T>, "mprocess: a queue's item type must be serializable (see mprocess/serialize.hpp)");

public:
    std::size_t qsize() const { return h_.qsize(); }
    bool empty() const { return qsize() == 0; }
    void close() noexcept { h_.close(); }
    bool closed() const noexcept { return h_.closed(); }

    friend bool operator==(const TypedQueue&, const TypedQueue&) = default;

protected:
    TypedQueue(const QueueOptions& options, bool joinable) : h_(type_tag<T>, type_name_v<T>, options, joinable) {}
    explicit TypedQueue(RawQueue h) : h_(std::move(h)) {}

    void do_put(const T& obj, bool block, const Timeout& timeout) {
        if constexpr (Blob<T>::value) {
            const std::uint64_t n = obj.size();
            h_.put({reinterpret_cast<const char*>(&n), sizeof n},
                   {reinterpret_cast<const char*>(obj.data()), n * sizeof(typename T::value_type)}, block, timeout);
        } else if constexpr (RawMessage<T>) {
            h_.put({reinterpret_cast<const char*>(std::addressof(obj)), sizeof(T)}, {}, block, timeout);
        } else {
            auto& buf = scratch();
            buf.clear();
            OutArchive ar(buf);
            ar(obj);
            h_.put(buf, {}, block, timeout);
            release_scratch(buf);
        }
    }
    T do_get(bool block, const Timeout& timeout) {
        ItemReader<T> reader;
        h_.get(reader, block, timeout);
        return reader.take();
    }

    template <class, class>
    friend struct QueueSpawnArg;
    template <class U>
    friend const RawQueue& queue_handle(const TypedQueue<U>& q) noexcept;
    RawQueue h_;
};

template <class T>
const RawQueue& queue_handle(const TypedQueue<T>& q) noexcept {
    return q.h_;
}

template <class Q, class T>
struct QueueSpawnArg {
    static constexpr bool handle = true, nestable = true;
    static std::string write(SpawnArgs& args, const Q& q) { return q.h_.export_to(args); }
    static Q read(const SpawnArgs& args, const std::string& blob) {
        return Q(RawQueue::import(args, blob, type_tag<T>, type_name_v<T>, Q::joinable));
    }
};

}  // namespace detail

/// Python's multiprocessing.Queue. A handle: copies are the same queue; pass it to a child as a
/// Process argument (under every start method).
///
/// Besides its own calls it has those every queue shares: qsize() (the items in it now), empty(),
/// close() (this process uses it no more: later calls here throw ValueError) and closed().
template <class T>
class Queue : public detail::TypedQueue<T> {
    using Base = detail::TypedQueue<T>;

public:
    /// Python's Queue(maxsize=0): items it holds at most; 0 = unbounded.
    explicit Queue(std::size_t maxsize = 0) : Queue(QueueOptions{.maxsize = maxsize}) {}
    /// A queue with these options.
    explicit Queue(const QueueOptions& options) : Base(options, false) {}

    /// Waits while a bounded queue is full (up to `timeout`), then Full; block = false: Full at once.
    /// The item is in the queue when put() returns. ValueError for an item larger than the queue
    /// can hold, or once closed.
    void put(const T& obj, bool block = true, Timeout timeout = forever) { this->do_put(obj, block, timeout); }
    /// put(obj, false).
    void put_nowait(const T& obj) { this->do_put(obj, false, forever); }
    /// Waits for an item (up to `timeout`), then Empty; block = false: Empty at once.
    T get(bool block = true, Timeout timeout = forever) { return this->do_get(block, timeout); }
    /// get(false).
    T get_nowait() { return this->do_get(false, forever); }

    /// q.get(0.5) would silently mean block = true: spell it q.get(true, 0.5).
    template <class B>
    requires(!std::same_as<B, bool>) T get(B)
    = delete;
    /// q.put(x, 0.5) would silently mean block = true: spell it q.put(x, true, 0.5).
    template <class B>
    requires(!std::same_as<B, bool>) void put(const T&, B) = delete;

    /// The bound given at construction; 0 = unbounded.
    std::size_t maxsize() const { return this->h_.maxsize(); }
    /// True if a bounded queue holds maxsize() items now.
    bool full() const { return maxsize() != 0 && this->qsize() >= maxsize(); }
    /// There is no feeder thread to wait for or to cancel: kept so Python code reads the same.
    /// As Python's, ValueError before close().
    void join_thread() const { this->h_.join_thread(); }
    /// Nothing to do: there is no feeder thread.
    void cancel_join_thread() const noexcept {}

protected:
    /// @cond INTERNAL
    static constexpr bool joinable = false;
    Queue(RawQueue h) : Base(std::move(h)) {}
    Queue(const QueueOptions& options, bool is_joinable) : Base(options, is_joinable) {}
    /// @endcond
    friend struct detail::QueueSpawnArg<Queue, T>;
};

/// Python's multiprocessing.JoinableQueue: every put() adds an unfinished task, task_done() ends
/// one, join() waits until none is left.
template <class T>
class JoinableQueue : public Queue<T> {
public:
    /// Python's JoinableQueue(maxsize=0): items it holds at most; 0 = unbounded.
    explicit JoinableQueue(std::size_t maxsize = 0) : JoinableQueue(QueueOptions{.maxsize = maxsize}) {}
    /// A queue with these options.
    explicit JoinableQueue(const QueueOptions& options) : Queue<T>(options, true) {}

    /// ValueError if called more times than there were items put.
    void task_done() { this->h_.task_done(); }
    /// Waits until every item put has been marked task_done().
    void join() { this->h_.join(forever); }
    /// Not in Python: false if tasks are still unfinished when the timeout passes.
    bool join(Timeout timeout) { return this->h_.join(timeout); }

private:
    static constexpr bool joinable = true;
    JoinableQueue(RawQueue h) : Queue<T>(std::move(h)) {}
    friend struct detail::QueueSpawnArg<JoinableQueue, T>;
};

/// Python's multiprocessing.SimpleQueue: put, get, empty, close. A handle, as Queue is, with the
/// same shared calls (qsize(), empty(), close(), closed()).
template <class T>
class SimpleQueue : public detail::TypedQueue<T> {
    using Base = detail::TypedQueue<T>;

public:
    /// An unbounded queue.
    SimpleQueue() : Base(QueueOptions{}, false) {}

    /// Adds the item; unbounded, it waits only for a backlog that fills the overflow area.
    void put(const T& obj) { this->do_put(obj, true, forever); }
    /// Waits for an item and returns it.
    T get() { return this->do_get(true, forever); }

private:
    static constexpr bool joinable = false;
    SimpleQueue(RawQueue h) : Base(std::move(h)) {}
    friend struct detail::QueueSpawnArg<SimpleQueue, T>;
};

namespace detail {
template <class T>
struct SpawnArg<Queue<T>> : QueueSpawnArg<Queue<T>, T> {};
template <class T>
struct SpawnArg<JoinableQueue<T>> : QueueSpawnArg<JoinableQueue<T>, T> {};
template <class T>
struct SpawnArg<SimpleQueue<T>> : QueueSpawnArg<SimpleQueue<T>, T> {};
}  // namespace detail

}  // namespace mprocess
