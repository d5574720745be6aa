// Listener and Client: Connections between processes that did not start each other, on this
// machine or across a network, as multiprocessing.connection has them.
//
//     mp::Listener listener("127.0.0.1:0", {.authkey = "secret"});   // port 0: any free port
//     std::string where = listener.address();                          // "127.0.0.1:40123"
//     mp::Connection conn = listener.accept();
//     ... elsewhere:
//     mp::Connection conn = mp::Client(where, {.authkey = "secret"});
//     conn.send(std::string("hello"));
//
// Addresses: "host:port" and "[v6 address]:port" (TCP), "/path" or "unix:path" (a Unix socket
// file, removed again when the Listener closes), "@name" (a Linux abstract Unix socket).
//
// The authkey authenticates; it does not encrypt. With one, each side proves that it knows the
// key (HMAC-SHA256 of a fresh random challenge, in both directions, compared in constant time)
// before accept() or Client() returns; a wrong key fails with AuthenticationError on both ends,
// and so does a key on one end only, at once (a key-less client, which does not wait for
// accept() as in Python, learns it at its first recv() or poll()).
// Everything after the handshake travels in the clear: use TCP without an authkey only on a
// network you trust, and to cross an untrusted one, a tunnel (SSH, WireGuard, TLS).
//
// A peer cannot break the receiving side: a frame longer than max_message, a peer that vanishes
// mid-message, or a handshake that is wrong or late ends that one connection with an error.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "mprocess/connection.hpp"
#include "mprocess/error.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

struct ListenerOptions {
    std::string authkey{};                 // empty: no authentication
    int backlog = 128;                     // connections the kernel queues before accept()
    double handshake_timeout = 10.0;       // seconds a client has to authenticate
    std::size_t max_message = 1ull << 30;  // longest message a connection accepts (bytes)
    // Permissions of a Unix socket file ("/path"), less the umask, as any new file's: connecting
    // needs write permission. By default only its owner may connect; 0660 lets the group in.
    // At most 0777. An abstract name ("@name") has no permissions: anyone on the machine may
    // connect to it, so give it an authkey.
    unsigned mode = 0600;
};

struct ClientOptions {
    std::string authkey{};
    double timeout = 30.0;  // seconds to connect and authenticate
    std::size_t max_message = 1ull << 30;
};

class Listener;
namespace detail {
// For servers that authenticate in each connection's own thread, so that a slow client never
// holds up the accept loop: accept() in two steps.
Connection accept_unauthenticated(Listener& l, Timeout timeout);
void authenticate_accepted(const Listener& l, Connection& c);
}  // namespace detail

class Listener {
public:
    explicit Listener(const std::string& address = "127.0.0.1:0", ListenerOptions options = {});
    ~Listener();
    Listener(Listener&&) noexcept;
    Listener& operator=(Listener&&) noexcept;

    // The next connection, authenticated if there is an authkey: AuthenticationError if that
    // client fails the handshake (the listener is unharmed and accepts the next). TimeoutError
    // if no client comes in time.
    Connection accept(Timeout timeout = forever);
    void close();
    bool closed() const noexcept;
    // Where clients connect: the address it was given, with the port the system picked.
    const std::string& address() const noexcept;
    int fileno() const;

private:
    friend Connection detail::accept_unauthenticated(Listener&, Timeout);
    friend void detail::authenticate_accepted(const Listener&, Connection&);
    struct State;
    std::unique_ptr<State> st_;
};

// Connects to a Listener; AuthenticationError if either side fails the handshake.
Connection Client(const std::string& address, ClientOptions options = {});

}  // namespace mprocess
