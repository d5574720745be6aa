// SPDX-License-Identifier: Apache-2.0
#include "platform/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>

#include "mprocess/error.hpp"

namespace mprocess::platform {

namespace {

constexpr std::size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;

// An address's port: a number from 0 to 65535 and nothing after it.
std::optional<unsigned> parse_port(const std::string& text) {
    if (text.empty()) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const unsigned long p = std::strtoul(text.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || p > 65535) return std::nullopt;
    return static_cast<unsigned>(p);
}

sockaddr_un unix_address(const SocketAddress& a, socklen_t& len) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (a.kind == SocketAddress::Kind::unix_abstract) {
        std::memcpy(un.sun_path + 1, a.path.data(), a.path.size());  // a leading NUL: no file
        len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + a.path.size());
    } else {
        std::memcpy(un.sun_path, a.path.data(), a.path.size());
        len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.path.size() + 1);
    }
    return un;
}

struct AddrInfo {
    addrinfo* list = nullptr;
    ~AddrInfo() {
        if (list) ::freeaddrinfo(list);
    }
};

void resolve(const SocketAddress& a, bool passive, AddrInfo& out) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    const std::string port = std::to_string(a.port);
    const int rc = ::getaddrinfo(a.host.empty() ? nullptr : a.host.c_str(), port.c_str(), &hints, &out.list);
    if (rc != 0) throw OSError(EINVAL, "cannot resolve '" + a.host + "': " + ::gai_strerror(rc));
}

std::string describe(const sockaddr* sa) {
    char host[NI_MAXHOST], port[NI_MAXSERV];
    const socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (::getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0) return "?";
    return sa->sa_family == AF_INET6 ? "[" + std::string(host) + "]:" + port : std::string(host) + ":" + port;
}

std::string octal(unsigned n) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%o", n);
    return buf;
}

void set_nodelay(int fd) noexcept {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on Unix sockets
}

// A peer whose machine vanished (power, network) is noticed within about a minute, not never.
void set_keepalive(int fd) noexcept {
    int on = 1, idle = 30, interval = 5, count = 6;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

void set_blocking(int fd, bool blocking) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK) < 0)
        throw_errno("fcntl");
}

// Waits for fd to be ready for `events` until the deadline; TimeoutError after it.
void wait_ready(int fd, short events, const Deadline& deadline, const char* what) {
    pollfd p{fd, events, 0};
    if (poll_until(&p, 1, deadline) == 0) throw TimeoutError(std::string("timed out ") + what);
}

// A non-blocking connect, finished within the deadline; the socket is returned blocking.
Fd connect_one(int family, const sockaddr* sa, socklen_t len, const Deadline& deadline, int& err) {
    Fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) throw_errno("socket");
    // A Unix socket whose listener's queue is full says EAGAIN, and polling it proves nothing:
    // ask again until the deadline.
    while (family == AF_UNIX && ::connect(fd.get(), sa, len) != 0) {
        if (errno != EAGAIN) {
            err = errno;
            return Fd();
        }
        if (deadline && Clock::now() >= *deadline) throw TimeoutError("timed out connecting: the listener is busy");
        ::usleep(1000);
    }
    if (family != AF_UNIX && ::connect(fd.get(), sa, len) != 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            return Fd();
        }
        wait_ready(fd.get(), POLLOUT, deadline, "connecting");
        socklen_t n = sizeof err;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &n) != 0) err = errno;
        if (err != 0) return Fd();
    }
    set_blocking(fd.get(), true);
    return fd;
}

}  // namespace

SocketAddress parse_address(const std::string& address) {
    SocketAddress a{};
    if (address.empty()) throw ValueError("an empty address: use \"host:port\", \"/path\" or \"@name\"");
    if (address[0] == '@' || address.rfind("unix:", 0) == 0 || address[0] == '/' || address[0] == '.') {
        a.kind = address[0] == '@' ? SocketAddress::Kind::unix_abstract : SocketAddress::Kind::unix_path;
        a.path = address[0] == '@' ? address.substr(1) : address.rfind("unix:", 0) == 0 ? address.substr(5) : address;
        if (a.path.empty()) throw ValueError("'" + address + "': a Unix socket needs a name");
        if (a.path.size() > kMaxUnixPath)
            throw ValueError("'" + address + "': a Unix socket name has at most " + std::to_string(kMaxUnixPath) +
                             " characters");
        if (a.path.find('\0') != std::string::npos) throw ValueError("a Unix socket name cannot hold a NUL");
        return a;
    }
    a.kind = SocketAddress::Kind::tcp;
    std::string port;
    if (address[0] == '[') {
        const auto close = address.find(']');
        if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
            throw ValueError("'" + address + "': an IPv6 address is written \"[::1]:port\"");
        a.host = address.substr(1, close - 1);
        port = address.substr(close + 2);
    } else {
        const auto colon = address.rfind(':');
        if (colon == std::string::npos)
            throw ValueError("'" + address + "': a TCP address is \"host:port\" (port 0: any free port)");
        a.host = address.substr(0, colon);
        port = address.substr(colon + 1);
        if (a.host.find(':') != std::string::npos)
            throw ValueError("'" + address + "': write an IPv6 address in brackets, \"[::1]:port\"");
    }
    const auto p = parse_port(port);
    if (!p) throw ValueError("'" + address + "': the port must be a number from 0 to 65535");
    a.port = *p;
    return a;
}

Fd listen_on(const SocketAddress& a, int backlog, unsigned mode, std::string& bound) {
    if (a.kind != SocketAddress::Kind::tcp) {
        if (mode > 0777) throw ValueError("a Unix socket file's mode is at most 0777, not 0" + octal(mode));
        socklen_t len = 0;
        const sockaddr_un un = unix_address(a, len);
        Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd.valid()) throw_errno("socket");
        // Linux makes the file with the socket's own mode less the umask: set before bind(), the
        // file never exists with wider permissions, whatever the umask (even 0) and whatever
        // other threads do with it meanwhile.
        if (a.kind == SocketAddress::Kind::unix_path && ::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0)
            throw_errno("fchmod of a socket");
        if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&un), len) != 0)
            throw_errno("cannot listen on '" + (a.kind == SocketAddress::Kind::unix_abstract ? "@" + a.path : a.path) +
                        "'");
        if (::listen(fd.get(), backlog) != 0) throw_errno("listen");
        bound = a.kind == SocketAddress::Kind::unix_abstract ? "@" + a.path : a.path;
        return fd;
    }
    AddrInfo ai;
    resolve(a, true, ai);
    int err = EADDRNOTAVAIL;
    for (addrinfo* p = ai.list; p; p = p->ai_next) {
        Fd fd(::socket(p->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd.valid()) {
            err = errno;
            continue;
        }
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd.get(), p->ai_addr, p->ai_addrlen) != 0 || ::listen(fd.get(), backlog) != 0) {
            err = errno;
            continue;
        }
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) throw_errno("getsockname");
        bound = describe(reinterpret_cast<const sockaddr*>(&ss));
        return fd;
    }
    throw_os_error(err, "cannot listen on '" + a.host + ":" + std::to_string(a.port) + "'");
}

Fd accept_until(int listening, const Deadline& deadline) {
    for (;;) {
        wait_ready(listening, POLLIN, deadline, "waiting for a connection");
        if (Fd fd = accept_now(listening); fd.valid()) return fd;
    }
}

Fd accept_now(int listening) {
    for (;;) {
        Fd fd(::accept4(listening, nullptr, nullptr, SOCK_CLOEXEC));
        if (fd.valid()) {
            set_nodelay(fd.get());
            set_keepalive(fd.get());
            return fd;
        }
        if (errno == EINTR) continue;
        // None waiting, or one that went away before it was accepted.
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EPROTO) return Fd();
        throw_errno("accept");
    }
}

std::optional<uid_t> peer_uid(int fd) noexcept {
    const auto peer = peer_credentials(fd);
    if (!peer) return std::nullopt;
    return peer->uid;
}

std::optional<PeerCredentials> peer_credentials(int fd) noexcept {
    ucred cred{};
    socklen_t n = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) != 0 || n != sizeof cred) return std::nullopt;
    return PeerCredentials{cred.pid, cred.uid};
}

bool is_socket(int fd) noexcept {
    struct stat st {};
    return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string peer_address(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    char host[NI_MAXHOST];
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
        ::getnameinfo(reinterpret_cast<const sockaddr*>(&ss), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0)
        return {};
    return host;
}

uid_t own_uid() noexcept {
    return ::geteuid();
}

Fd connect_to(const SocketAddress& a, const Deadline& deadline) {
    int err = 0;
    if (a.kind != SocketAddress::Kind::tcp) {
        socklen_t len = 0;
        const sockaddr_un un = unix_address(a, len);
        Fd fd = connect_one(AF_UNIX, reinterpret_cast<const sockaddr*>(&un), len, deadline, err);
        if (fd.valid()) return fd;
        throw_os_error(
            err, "cannot connect to '" + (a.kind == SocketAddress::Kind::unix_abstract ? "@" + a.path : a.path) + "'");
    }
    AddrInfo ai;
    resolve(a, false, ai);
    for (addrinfo* p = ai.list; p; p = p->ai_next) {
        Fd fd = connect_one(p->ai_family, p->ai_addr, p->ai_addrlen, deadline, err);
        if (fd.valid()) {
            set_nodelay(fd.get());
            set_keepalive(fd.get());
            return fd;
        }
    }
    throw_os_error(err ? err : EHOSTUNREACH, "cannot connect to '" + a.host + ":" + std::to_string(a.port) + "'");
}

void send_all(int fd, const char* a, std::size_t an, const char* b, std::size_t bn, const char* c, std::size_t cn) {
    iovec iov[3] = {{const_cast<char*>(a), an}, {const_cast<char*>(b), bn}, {const_cast<char*>(c), cn}};
    iovec* v = iov;
    int left = 3;
    while (left > 0) {
        if (v->iov_len == 0) {
            ++v;
            --left;
            continue;
        }
        msghdr msg{};
        msg.msg_iov = v;
        msg.msg_iovlen = static_cast<std::size_t>(left);
        const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
                throw BrokenPipeError("the other end of the connection is gone");
            throw_errno("send");
        }
        auto done = static_cast<std::size_t>(n);
        while (left > 0 && done >= v->iov_len) {
            done -= v->iov_len;
            ++v;
            --left;
        }
        if (left > 0) {
            v->iov_base = static_cast<char*>(v->iov_base) + done;
            v->iov_len -= done;
        }
    }
}

ssize_t send_some(int fd, const void* data, std::size_t n) noexcept {
    return ::send(fd, data, n, MSG_NOSIGNAL);
}

void shutdown(int fd) noexcept {
    ::shutdown(fd, SHUT_RDWR);
}

bool send_now(int fd, std::string_view bytes) noexcept {
    for (;;) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        return n == static_cast<ssize_t>(bytes.size());
    }
}

std::optional<std::size_t> recv_now(int fd, char* into, std::size_t n) {
    for (;;) {
        const ssize_t got = ::recv(fd, into, n, MSG_DONTWAIT);
        if (got >= 0) return static_cast<std::size_t>(got);
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return std::nullopt;
        if (errno == ECONNRESET || errno == ENOTCONN || errno == EPIPE || errno == ETIMEDOUT) return 0;
        throw_errno("recv");
    }
}

std::size_t read_some(int fd, char* into, std::size_t n, const Deadline& deadline) {
    for (;;) {
        if (deadline) wait_ready(fd, POLLIN, deadline, "waiting for the other end");
        const ssize_t got = ::recv(fd, into, n, 0);
        if (got >= 0) return static_cast<std::size_t>(got);
        if (errno == EINTR) continue;
        if (errno == ECONNRESET || errno == ENOTCONN || errno == EPIPE) return 0;  // the peer vanished
        throw_errno("recv");
    }
}

namespace {
constexpr std::size_t kMaxFds = 250;
}  // namespace

void send_with_fds(int sock, const void* data, std::size_t n, const std::vector<int>& fds) {
    msghdr msg{};
    iovec iov{const_cast<void*>(data), n};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    for (;;) {
        const ssize_t sent = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (sent == static_cast<ssize_t>(n)) return;
        if (sent > 0) {  // the descriptors went with the first part; the rest goes without
            send_all(sock, static_cast<const char*>(data) + sent, n - static_cast<std::size_t>(sent), nullptr, 0,
                     nullptr, 0);
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            pollfd p{sock, POLLOUT, 0};
            platform::poll_until(&p, 1, std::nullopt);
            continue;
        }
        throw BrokenPipeError("the other end of the socket is gone");
    }
}

// Receives exactly n bytes (blocking until then) and any descriptors sent with them.
bool recv_with_fds(int sock, void* data, std::size_t n, std::vector<int>& fds) {
    msghdr msg{};
    iovec iov{data, n};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * (kMaxFds + 1)));  // SCM_RIGHTS: at most 253
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t r;
    for (;;) {
        r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (r >= 0 || errno == EINTR) {
            if (r >= 0) break;
            continue;
        }
        if (errno != EAGAIN) return false;
        pollfd p{sock, POLLIN, 0};
        platform::poll_until(&p, 1, std::nullopt);
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            const auto* p = reinterpret_cast<const int*>(CMSG_DATA(c));
            fds.insert(fds.end(), p, p + k);
        }
    if (r == 0) return false;
    for (auto got = static_cast<std::size_t>(r); got < n;) {  // the rest, if it came apart
        const std::size_t more = read_some(sock, static_cast<char*>(data) + got, n - got, std::nullopt);
        if (more == 0) return false;
        got += more;
    }
    return true;
}

void unlink_socket_path(const std::string& path) noexcept {
    ::unlink(path.c_str());
}

}  // namespace mprocess::platform
