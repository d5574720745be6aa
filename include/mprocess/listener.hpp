// SPDX-License-Identifier: Apache-2.0
/// @file
/// Listener and Client: Connections between processes that did not start each other, on this
/// machine or across a network, as multiprocessing.connection has them.
///
/// @code{.cpp}
/// mp::Listener listener("127.0.0.1:0", {.authkey = "secret"});   // port 0: any free port
/// std::string where = listener.address();                          // "127.0.0.1:40123"
/// mp::Connection conn = listener.accept();
/// ... elsewhere:
/// mp::Connection conn = mp::Client(where, {.authkey = "secret"});
/// conn.send(std::string("hello"));
/// @endcode
///
/// Addresses: "host:port" and "[v6 address]:port" (TCP), "/path", "./path" or "unix:path" (a Unix
/// socket file, removed again when the Listener closes), `"@name"` (a Linux abstract Unix socket).
///
/// The authkey authenticates; it does not encrypt. With one, each side proves that it knows the
/// key (HMAC-SHA256 of a fresh random challenge, in both directions, compared in constant time)
/// before accept() returns the connection or Client() returns; a wrong key fails the client with
/// AuthenticationError, and so does a key on one end only, at once (a key-less client, which does
/// not wait for accept() as in Python, learns it at its first recv() or poll()).
/// Everything after the handshake travels in the clear: use TCP without an authkey only on a
/// network you trust, and to cross an untrusted one, a tunnel (SSH, WireGuard, TLS).
///
/// No peer can hold up the others. accept() runs the handshakes of every connection that has come
/// side by side, from one poll loop, and returns the first to complete; those still under way wait
/// for the next accept(). Each has handshake_timeout seconds, and is dropped then, or at once if it
/// breaks the protocol. At most max_pending are under way: past it, the one that has waited longest
/// for its peer goes. Past max_pending_per_source from one IP address (or, on a Unix socket, one
/// user), the one of those that has waited longest goes if its peer has stalled (owed a message for
/// a second): a flood costs its source its own connections, and a burst of real clients from one
/// host is not cut down. A handshake never buffers more than one message of at most 256 bytes.
/// Handshakes move forward only while accept() runs, as a kernel's queue of connections waits for it.
/// As in Python, a client that fails the handshake (a wrong key, a key on one end only, bytes that
/// are not the protocol) makes accept() throw AuthenticationError for that client; the listener is
/// unharmed, and the handshakes under way go on at the next accept(), so a server loop that catches
/// it loses no good client. Peers that stay silent, or are dropped for room, never make it throw
/// (Python's accept() would wait on them): a TimeoutError says how many were dropped meanwhile.
///
/// On an abstract `"@name"` (which any user can reach and find in /proc/net/unix) and on a socket
/// file whose mode lets only its owner connect (the default), a client of another user is refused
/// before any byte of the handshake: its connection is closed at once. allowed_uids lets named
/// users in; root (uid 0) is a user like any other here, refused unless listed (or the listener is
/// root's). A socket file whose mode lets its group or others connect lets in whoever the file lets
/// connect.
///
/// A peer cannot break the receiving side: a frame longer than max_message or a peer that vanishes
/// mid-message ends that one connection with an error, as a handshake that is wrong or late ends
/// that one handshake (see above for what accept() says). A message's memory grows with the bytes
/// that arrive, not with the length the peer announces.
#pragma once

#include "mprocess/export.hpp"

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "mprocess/connection.hpp"
#include "mprocess/error.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

/// Listener's keyword arguments.
struct ListenerOptions {
    std::string authkey{};                 ///< empty: no authentication
    int backlog = 128;                     ///< connections the kernel queues before accept()
    Timeout handshake_timeout = 5.0;       ///< each client's to authenticate (not forever: ValueError)
    std::size_t max_message = 1ull << 30;  ///< longest message a connection accepts (bytes)
    /// Permissions of a Unix socket file ("/path"), less the umask, as any new file's: connecting
    /// needs write permission. By default only its owner may connect; 0660 lets the group in.
    /// At most 0777. An abstract name (`"@name"`) has no permissions: anyone on the machine may
    /// connect to it, and accept() lets in only this process's user and allowed_uids (see listener.hpp).
    unsigned mode = 0600;
    std::size_t max_pending = 256;            ///< handshakes under way at once (see listener.hpp)
    std::size_t max_pending_per_source = 32;  ///< of those, from one IP address, or one user on a Unix socket
    std::vector<uid_t> allowed_uids{};        ///< `"@name"`, or an owner-only file: users let in besides ours
};

/// Client()'s keyword arguments.
struct ClientOptions {
    std::string authkey{};                 ///< the Listener's key; empty: none
    Timeout timeout = 30.0;                ///< to connect and authenticate
    std::size_t max_message = 1ull << 30;  ///< longest message the connection accepts (bytes)
};

/// multiprocessing.connection.Listener: a server socket whose accept() returns a Connection once
/// the client has passed the handshake (see listener.hpp).
class MPROCESS_EXPORT Listener {
public:
    /// Listens on `address` (see listener.hpp for the forms; port 0: any free port).
    /// ValueError for an address or option it cannot use, OSError if the socket cannot be made
    /// (the address in use, say).
    explicit Listener(const std::string& address = "127.0.0.1:0", ListenerOptions options = {});
    /// Closes it, as close().
    ~Listener();
    /// Takes over the socket; the moved-from Listener is left closed.
    Listener(Listener&&) noexcept;
    /// Closes this one, then takes over the other's socket.
    Listener& operator=(Listener&&) noexcept;

    /// The next connection to complete its handshake (authenticated, if there is an authkey).
    /// AuthenticationError if a client failed its handshake (call again for the next); TimeoutError
    /// if none completes in time (it says how many were dropped meanwhile, and why the last was).
    /// One thread accepts at a time: another waits its turn, within its own timeout.
    Connection accept(Timeout timeout = forever);
    /// Stops listening, drops the handshakes under way, and removes a Unix socket file.
    /// Not while another thread is inside accept().
    void close();
    /// True once close() was called (or for a moved-from Listener).
    bool closed() const noexcept;
    /// Where clients connect: the address it was given, with the port the system picked.
    const std::string& address() const noexcept;
    /// The listening socket's descriptor.
    int fileno() const;

private:
    struct State;
    std::unique_ptr<State> st_;
};

/// Connects to a Listener; AuthenticationError if either side fails the handshake, TimeoutError if
/// connecting and the handshake take longer than options.timeout, OSError if nothing listens there.
MPROCESS_EXPORT Connection Client(const std::string& address, const ClientOptions& options = {});

}  // namespace mprocess
