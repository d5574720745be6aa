// SPDX-License-Identifier: Apache-2.0
/// @file
/// Pipe and Connection: framed messages between processes, as multiprocessing.connection.
///
/// @code{.cpp}
/// auto [parent_conn, child_conn] = mp::Pipe();
/// mp::Process p([](mp::Connection c) { c.send(std::vector<int>{1, 2, 3}); }, child_conn);
/// p.start();
/// child_conn.close();                     // as in Python: the parent lets go of the child's end
/// auto v = parent_conn.recv<std::vector<int>>();
/// @endcode
///
/// Transport. A Pipe is a pair of rings in anonymous shared memory, one per direction. A waiting
/// receiver spins for a few microseconds, then sleeps on an eventfd; a sender rings that eventfd
/// only when someone sleeps. So a round trip between two busy processes costs well under a
/// microsecond, and an idle peer costs at most one bounded spin. A socket pair is kept only to
/// learn, through the kernel, when every copy of the other end is gone (closed or its process dead).
/// A Connection from Listener or Client carries the same messages over a stream socket instead
/// (listener.hpp).
///
/// Semantics, as Python's:
///  - messages are never merged or split; an empty message is a message; any size (up to memory);
///  - recv() after the other end is gone returns what was sent before, then throws EOFError;
///  - send() to a gone peer throws BrokenPipeError (on a Pipe, noticed when the pipe fills or the
///    peer was asleep; a send to a gone peer may otherwise succeed silently, as data written into a
///    pipe whose reader has not read yet);
///  - a Connection is a handle: copies refer to the same connection, close() closes it for all of
///    them, the last handle closes it too. Pass it to a child as a Process argument.
///
/// Better than Python's:
///  - several processes or threads may send (or receive) on the same end of a Pipe at once (on a
///    socket, several threads of one process): each message is written and read whole, under a
///    lock that survives its owner's death;
///  - a message that cannot be received as asked (wrong type, larger than maxlength) stays in the
///    pipe, unread, and the error says why;
///  - a sender or receiver killed in the middle of a small message leaves the pipe intact (the
///    message is either wholly there or not at all); one killed in the middle of a message larger
///    than the ring marks the pipe broken, and every later call says so.
#pragma once

#include "mprocess/export.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mprocess/detail/spawn.hpp"
#include "mprocess/error.hpp"
#include "mprocess/serialize.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

class Process;
class Waitable;

namespace detail {
class Channel;
struct ConnectionAccess;  // the library's own code, for the Channel behind a Connection

// A message received as a T: its type tag, and its size when T travels as raw bytes (raw_size, 0
// otherwise).
inline void check_frame(std::size_t length, std::string_view prefix, std::uint64_t tag, std::string_view type,
                        std::size_t raw_size) {
    if (length < tag_size || read_tag(prefix) != tag) throw TypeMismatch::for_message(type, tag, prefix);
    if (raw_size != 0 && length != tag_size + raw_size)
        throw DecodeError::wrong_size(type, raw_size, length - tag_size);
}

// This thread's scratch buffer for one message. Header-only on purpose: a program and a shared
// library each keep their own, which is all a buffer used within one call needs.
inline std::string& scratch() {
    thread_local std::string buf;
    return buf;
}
inline void release_scratch(std::string& buf) noexcept {
    // Keep the buffer for the next small message, but not a huge one's memory.
    if (buf.capacity() > (std::size_t{1} << 20)) std::string().swap(buf);
}
// The scratch buffer for one message; a large one's memory is given back however the use ends (a
// receive that fails or times out included).
struct Scratch {
    std::string& buf = scratch();
    Scratch() = default;
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    ~Scratch() { release_scratch(buf); }
};
}  // namespace detail

/// Receives one message, for Connection::recv_frame(). Told its length and first bytes (up to 8),
/// take() says whether to receive it: false (or an exception) leaves it unread. Then room(n) gives
/// where its first n bytes go, asked again with a larger n (up to the length) as more arrive,
/// bytes written before kept: so memory follows the bytes that came, never only the length a peer
/// announced.
class FrameSink {
public:
    /// Whether to receive a message of `length` bytes that begins with `prefix`.
    virtual bool take(std::size_t length, std::string_view prefix) = 0;
    /// Where the message's first `n` bytes go.
    virtual char* room(std::size_t n) = 0;

protected:
    ~FrameSink() = default;
};

namespace detail {
template <class T>
struct DecodeSink final : FrameSink {
    explicit DecodeSink(std::string& b) : buf(b) {}
    bool take(std::size_t length, std::string_view prefix) override {
        check_frame(length, prefix, type_tag<T>, type_name_v<T>, RawMessage<T> ? sizeof(T) : 0);
        buf.clear();
        return true;
    }
    char* room(std::size_t n) override {
        if (buf.size() < n) buf.resize(n);
        return buf.data();
    }
    std::string& buf;
};
template <class T>
struct RawSink final : FrameSink {
    bool take(std::size_t length, std::string_view prefix) override {
        check_frame(length, prefix, type_tag<T>, type_name_v<T>, sizeof(T));
        return true;
    }
    char* room(std::size_t) override { return buf; }
    char buf[tag_size + sizeof(T)];
};
}  // namespace detail

/// Options of Pipe().
struct PipeOptions {
    std::size_t capacity = std::size_t{256} * 1024;  ///< bytes buffered per direction before send() waits
};

/// One end of a Pipe, or a connection from Listener::accept() or Client(): whole messages, typed
/// or raw bytes, in both directions (Python's multiprocessing.connection.Connection). A handle:
/// copies are the same end (see connection.hpp for the semantics).
class MPROCESS_EXPORT Connection {
public:
    /// A closed connection, to assign a real one to later.
    Connection() = default;

    /// Sends `obj` as one message: a type that cannot travel is a compile error that says how to
    /// fix it. Waits while the pipe is full; BrokenPipeError if the peer is gone (see
    /// connection.hpp), ValueError once closed, OSError on a read-only end.
    template <class T>
    void send(const T& obj) {
        detail::require_serializable<T>();
        if constexpr (RawMessage<T>) {
            constexpr std::uint64_t tag = detail::type_tag<T>;
            send_parts({reinterpret_cast<const char*>(&tag), tag_size},
                       {reinterpret_cast<const char*>(std::addressof(obj)), sizeof(T)});
        } else {
            detail::Scratch scratch;
            scratch.buf.clear();
            encode_into(scratch.buf, obj);
            send_parts(scratch.buf, {});
        }
    }

    /// Receives the next message as a T. TypeMismatch (message left unread) if it is not a T;
    /// EOFError once the peer is gone and nothing is left to read.
    /// With a timeout: TimeoutError if the message has not come whole in time. Nothing is lost: on a
    /// socket the part that came is kept, and the next receive goes on from it; on a Pipe the
    /// timeout bounds the wait for a message to begin (one that has begun is read to its end: its
    /// sender is writing it now, and one that dies half way ends it with EOFError).
    template <class T>
    T recv(Timeout timeout = forever) {
        detail::require_serializable<T>();
        if constexpr (RawMessage<T> && sizeof(T) <= 256) {
            // Small plain values: straight from the ring into a stack buffer, no allocation.
            detail::RawSink<T> sink;
            recv_frame(sink, timeout);
            alignas(T) unsigned char obj[sizeof(T)];
            std::memcpy(obj, sink.buf + tag_size, sizeof(T));
            return *std::launder(reinterpret_cast<T*>(obj));
        }
        detail::Scratch scratch;
        detail::DecodeSink<T> sink(scratch.buf);
        recv_frame(sink, timeout);
        return decode<T>(scratch.buf);
    }

    /// Receives the next message into `sink`, which places its bytes (recv() and recv_bytes() are
    /// made of this). Errors and timeout as recv()'s.
    void recv_frame(FrameSink& sink, Timeout timeout = forever);

    /// Sends `data` as one message of raw bytes, as Python's send_bytes(). Errors as send()'s.
    void send_bytes(std::string_view data);
    /// Sends `size` bytes of `data` from `offset` (to its end by default); ValueError for a range
    /// outside `data`, as Python's.
    void send_bytes(std::string_view data, std::size_t offset, std::optional<std::size_t> size = std::nullopt);
    /// Receives the next message as raw bytes, whatever sent it (send() or send_bytes()).
    /// OSError (EMSGSIZE) if the message is longer than maxlength; it is left unread. A timeout as
    /// recv()'s: recv_bytes(std::nullopt, 0.5).
    std::string recv_bytes(std::optional<std::size_t> maxlength = std::nullopt, Timeout timeout = forever);
    /// Copies the message into buffer[offset...] and returns its length. BufferTooShort, carrying
    /// the whole message, if it does not fit.
    std::size_t recv_bytes_into(std::span<char> buffer, std::size_t offset = 0);
    /// recv_bytes_into() for a buffer of std::byte.
    std::size_t recv_bytes_into(std::span<std::byte> buffer, std::size_t offset = 0);

    /// True if recv() would not block: a message is waiting, or the peer is gone (on a socket: a
    /// message has begun to arrive; recv with a timeout bounds the wait for the rest). poll()
    /// returns at once; poll(seconds) waits up to that long; poll(mp::forever) waits until then.
    bool poll(Timeout timeout = 0.0);

    /// Closes the connection for every handle on it here; later calls on it throw ValueError.
    void close();
    /// True once close() was called on any handle of it (or for a default-constructed one).
    bool closed() const noexcept;
    /// False for the sending end of a Pipe(false).
    bool readable() const;
    /// False for the receiving end of a Pipe(false).
    bool writable() const;
    /// A descriptor identifying this connection (a Pipe's liveness socket, or the socket itself).
    /// Readiness is poll()'s and mprocess::wait()'s business: do not select() on it for messages.
    int fileno() const;

    /// Whether two handles are the same connection.
    friend bool operator==(const Connection& a, const Connection& b) noexcept { return a.ch_ == b.ch_; }

private:
    friend std::pair<Connection, Connection> Pipe(bool, PipeOptions);
    template <class, bool>
    friend struct detail::MemberSpawnArg;
    friend struct detail::ConnectionAccess;
    friend std::vector<Waitable> wait(const std::vector<Waitable>&, Timeout);
    explicit Connection(std::shared_ptr<detail::Channel> ch) : ch_(std::move(ch)) {}
    std::string export_to(SpawnArgs& args) const;
    static Connection import_from(const SpawnArgs& args, const std::string& blob);
    void send_parts(std::string_view head, std::string_view body);
    detail::Channel& channel() const;

    std::shared_ptr<detail::Channel> ch_;
};

/// Python's Pipe(duplex=True): two connected ends. With duplex = false the first end can only
/// receive and the second can only send; using one the other way throws OSError ("connection is
/// read-only" / "write-only"), as Python does.
MPROCESS_EXPORT std::pair<Connection, Connection> Pipe(bool duplex = true, PipeOptions options = {});

/// Something mprocess::wait() can wait on: a Connection (ready when recv() would not block) or a
/// descriptor such as Process::sentinel() (ready when readable).
class MPROCESS_EXPORT Waitable {
public:
    /// A connection: ready when recv() would not block.
    Waitable(Connection c) : conn_(std::move(c)) {}
    /// A descriptor: ready when readable.
    Waitable(int fd) : fd_(fd) {}
    /// A process's sentinel(): ready once the child has ended.
    Waitable(const Process& p);

    /// True for a connection, false for a descriptor.
    bool is_connection() const noexcept { return fd_ < 0; }
    /// The connection; a closed one for a descriptor.
    const Connection& connection() const noexcept { return conn_; }
    /// The descriptor; -1 for a connection.
    int fd() const noexcept { return fd_; }
    /// The same connection, or the same descriptor: how to tell which of the objects passed to
    /// wait() are ready.
    friend bool operator==(const Waitable& a, const Waitable& b) noexcept {
        return a.fd_ == b.fd_ && a.conn_ == b.conn_;
    }

private:
    Connection conn_;
    int fd_ = -1;
};

/// Python's multiprocessing.connection.wait(): blocks until at least one object is ready or the
/// timeout passes, and returns the ready ones (empty on timeout).
MPROCESS_EXPORT std::vector<Waitable> wait(const std::vector<Waitable>& objects, Timeout timeout = Timeout::never());

}  // namespace mprocess
