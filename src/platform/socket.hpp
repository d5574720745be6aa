// SPDX-License-Identifier: Apache-2.0
// Stream sockets for Listener and Client: TCP over IPv4 and IPv6, and Unix sockets (paths and
// Linux abstract names), and descriptors passed over them (SCM_RIGHTS).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "platform/posix.hpp"

namespace mprocess::platform {

// An address as the user writes it:
//   "host:port", "[v6 address]:port"   TCP (port 0: the system picks one)
//   "/path", "./path", "unix:path"      a Unix socket file
//   "@name"                             a Linux abstract Unix socket (no file)
struct SocketAddress {
    enum class Kind { tcp, unix_path, unix_abstract } kind;
    std::string host;  // tcp: a name or a numeric address
    unsigned port = 0;
    std::string path;  // unix: the path, or the abstract name without '@'
};

// Parses it, or throws ValueError saying what is wrong.
SocketAddress parse_address(const std::string& address);

// A listening socket (close-on-exec, non-blocking, so that accepting when the queue is empty
// says so instead of waiting); reports the address it is bound to (with the port the system
// picked). A Unix path that exists is refused (FileExistsError-like OSError); a new one is
// created with the permissions `mode` less the umask, never wider in between.
Fd listen_on(const SocketAddress& address, int backlog, unsigned mode, std::string& bound);
// Accepts one connection, waiting up to the deadline (TimeoutError after it). Accepted sockets
// are blocking and close-on-exec.
Fd accept_until(int listening, const Deadline& deadline);
// Accepts one connection if one is waiting, or returns an invalid Fd.
Fd accept_now(int listening);

// Who is at the other end of an accepted connection. On a Unix socket, its user (SO_PEERCRED, as
// the kernel recorded it at connect: still there after the peer has gone), or nullopt if that
// cannot be known; on TCP, its IP address (empty if it has gone already).
std::optional<uid_t> peer_uid(int fd) noexcept;
// The process and user at the other end of a Unix socket, as the kernel recorded them when it was
// connected (or made by socketpair()); nullopt if that cannot be known.
struct PeerCredentials {
    pid_t pid;
    uid_t uid;
};
std::optional<PeerCredentials> peer_credentials(int fd) noexcept;
// True if fd is an open socket (of any kind).
bool is_socket(int fd) noexcept;
std::string peer_address(int fd);
uid_t own_uid() noexcept;
// Connects, waiting up to the deadline: tries each address a TCP host resolves to.
Fd connect_to(const SocketAddress& address, const Deadline& deadline);

// Writes all of [a] then [b] (MSG_NOSIGNAL): BrokenPipeError if the peer is gone.
void send_all(int fd, const char* a, std::size_t an, const char* b, std::size_t bn, const char* c, std::size_t cn);
// Reads up to n bytes, waiting up to the deadline: 0 at end of file (or a reset); TimeoutError
// after the deadline.
std::size_t read_some(int fd, char* into, std::size_t n, const Deadline& deadline);

// One send() that never raises SIGPIPE (MSG_NOSIGNAL): the byte count, or -1 with errno set
// (EPIPE when the peer is gone, EAGAIN when a non-blocking socket is full, EINTR).
ssize_t send_some(int fd, const void* data, std::size_t n) noexcept;

// Ends both directions of the connection, for every process that holds it (shutdown()): a thread
// blocked reading it wakes up at end of file.
void shutdown(int fd) noexcept;

// A small message sent now, whole, or not at all: false if the socket cannot take all of it at
// once (its buffer is full, the peer is gone).
bool send_now(int fd, std::string_view bytes) noexcept;
// Reads up to n bytes that have arrived, never waiting: nullopt if none has, 0 at end of file (or
// a reset).
std::optional<std::size_t> recv_now(int fd, char* into, std::size_t n);

// Unix sockets: n bytes with descriptors attached (SCM_RIGHTS, at most 250), and their receipt
// (blocking; false at end of file). Received descriptors are close-on-exec.
void send_with_fds(int sock, const void* data, std::size_t n, const std::vector<int>& fds);
bool recv_with_fds(int sock, void* data, std::size_t n, std::vector<int>& fds);

// Removes a Unix socket file the listener made.
void unlink_socket_path(const std::string& path) noexcept;

}  // namespace mprocess::platform
