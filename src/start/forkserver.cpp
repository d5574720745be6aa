// SPDX-License-Identifier: Apache-2.0
// The forkserver start method.
//
// The server is a fresh image of this program (started like a spawned child, so it never holds
// the parent's threads or locks) that waits in freeze_support(). For each child the parent sends
// the payload and the arguments' descriptors over a private socket pair (SCM_RIGHTS): a socket
// pair is reachable by nobody else, so it needs no authkey. The server forks, the child runs the
// payload; the server replies with the child's pid and a pidfd (for race-free signals), and
// writes the child's wait status into a pipe the parent handed over, once the child has ended.
// If the server dies, the next start notices and starts a new one.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "platform/exec.hpp"
#include "platform/process.hpp"
#include "platform/socket.hpp"
#include "mprocess/serialize.hpp"
#include "start/popen.hpp"

namespace mprocess::detail {
namespace {

using platform::Fd;

constexpr std::size_t kMaxFds = 250;  // SCM_RIGHTS carries at most 253 descriptors

struct Client {
    std::mutex m;
    pid_t owner = 0;  // the process that started the server: a forked child needs its own
    pid_t server = 0;
    Fd control;
};

Client& client() {
    static Client* c = new Client;  // never destroyed: used by the exit hook
    return *c;
}

using platform::recv_with_fds;
using platform::send_with_fds;

void stop_server_locked(Client& c) noexcept {
    c.control.reset();
    if (c.server > 0) platform::reap_status(c.server, true);
    c.server = 0;
}

void ensure_server(Client& c) {
    if (c.owner != platform::getpid()) {  // inherited through fork: that server belongs to our parent
        c.control.reset();
        c.server = 0;
        c.owner = platform::getpid();
    }
    if (c.server > 0) {
        if (!platform::reap_status(c.server, false)) return;  // still running
        c.server = 0;
        c.control.reset();
    }
    auto [parent_end, child_end] = platform::make_socketpair();
    pid_t pid = launch_self("MPROCESS_FORKSERVER_FD", child_end, {}, false);
    try {
        if (await_answer(parent_end.get(), platform::Clock::now() + kGuardTimeout) != 'S')
            throw ProcessError("the forkserver answered something unexpected");
    } catch (...) {
        platform::discard_child(pid);
        throw;
    }
    c.server = pid;
    c.control = std::move(parent_end);
}

pid_t request(Client& c, const std::string& bytes, const std::vector<int>& fds, Fd& pidfd, Fd& status_fd) {
    auto [status_read, status_write] = platform::make_pipe();
    status_fd = std::move(status_read);
    std::vector<int> send_fds{status_write.get()};
    send_fds.insert(send_fds.end(), fds.begin(), fds.end());
    const std::uint64_t len = bytes.size();
    send_with_fds(c.control.get(), &len, sizeof len, send_fds);
    write_all(c.control.get(), bytes.data(), bytes.size(), std::nullopt);
    status_write.reset();

    std::int32_t pid = 0;
    std::vector<int> got;
    if (!recv_with_fds(c.control.get(), &pid, sizeof pid, got)) {
        for (int fd : got) platform::close(fd);
        // Not a BrokenPipeError: the request went through, so the child may be running, and
        // starting it again would run the target twice.
        throw ProcessError("the forkserver died while starting the child (the child may have started)");
    }
    if (pid <= 0 || got.size() != 1) {
        for (int fd : got) platform::close(fd);
        platform::throw_os_error(pid < 0 ? -pid : EPROTO, "the forkserver could not start the child");
    }
    pidfd = Fd(got[0]);
    return pid;
}

}  // namespace

pid_t forkserver_start(const Payload& payload, const std::vector<int>& fds, Fd& pidfd, Fd& status_fd) {
    if (fds.size() > kMaxFds) throw ValueError("too many descriptors for one forkserver child");
    const std::string bytes = encode(payload);
    auto& c = client();
    std::lock_guard lock(c.m);
    for (int attempt = 0;; ++attempt) {
        ensure_server(c);
        try {
            return request(c, bytes, fds, pidfd, status_fd);
        } catch (const BrokenPipeError&) {
            // The server died before it had the request: start a new one and ask again, once.
            platform::kill(c.server, SIGKILL);
            stop_server_locked(c);
            if (attempt > 0) throw;
        }
    }
}

pid_t forkserver_pid() {
    auto& c = client();
    std::lock_guard lock(c.m);
    return c.owner == platform::getpid() ? c.server : 0;
}

void forkserver_stop() noexcept {
    auto& c = client();
    std::lock_guard lock(c.m);
    if (c.owner == platform::getpid()) stop_server_locked(c);
}

void forkserver_main(int control_fd) {
    [[maybe_unused]] auto r = platform::write(control_fd, "S", 1);
    // Inherited SIG_IGN would make the kernel reap our children before we learn their status.
    platform::default_signal(SIGCHLD);
    platform::ignore_signal(SIGPIPE);  // a parent gone before its child's status is written is no reason to die
    const sigset_t old_mask = platform::block_signal(SIGCHLD);
    Fd sigfd = platform::signalfd(SIGCHLD);
    std::map<pid_t, Fd> children;  // pid -> where its wait status goes
    bool client_gone = false;

    for (;;) {
        if (client_gone && children.empty()) platform::_exit(0);
        pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {client_gone ? -1 : control_fd, POLLIN, 0}};
        if (platform::poll(fds, 2, -1) < 0) continue;
        if (fds[0].revents) {
            platform::drain_signalfd(sigfd.get());
            while (const auto ended = platform::reap_status(-1, false)) {
                auto it = children.find(ended->pid);
                if (it == children.end()) continue;
                // The status, then the peak memory: one write, so a reader sees both or neither.
                char relay[sizeof ended->status + sizeof ended->max_rss];
                std::memcpy(relay, &ended->status, sizeof ended->status);
                std::memcpy(relay + sizeof ended->status, &ended->max_rss, sizeof ended->max_rss);
                [[maybe_unused]] auto w = platform::write(it->second.get(), relay, sizeof relay);
                children.erase(it);
            }
        }
        if (!fds[1].revents) continue;
        std::uint64_t len = 0;
        std::vector<int> got;
        std::string bytes;
        bool ok = recv_with_fds(control_fd, &len, sizeof len, got) && len <= (1ull << 40);
        if (ok) {
            bytes.resize(len);
            ok = read_all(control_fd, bytes.data(), len);
        }
        if (!ok || got.empty()) {
            for (int fd : got) platform::close(fd);
            client_gone = true;
            continue;
        }
        Fd status_write(got[0]);
        std::vector<int> arg_fds(got.begin() + 1, got.end());
        pid_t pid = platform::fork();
        if (pid == 0) {
            platform::close(control_fd);
            sigfd.reset();
            status_write.reset();
            for (auto& [p, fd] : children) fd.reset();
            platform::default_signal(SIGPIPE);
            platform::set_signal_mask(old_mask);
            try {
                Payload payload = decode<Payload>(bytes);
                run_payload(payload, std::move(arg_fds));
            } catch (const std::exception& e) {
                std::fprintf(stderr, "forkserver child: %s\n", e.what());
                platform::_exit(1);
            }
        }
        for (int fd : arg_fds) platform::close(fd);
        std::int32_t reply = pid > 0 ? pid : -errno;
        std::vector<int> reply_fds;
        Fd pidfd;
        if (pid > 0) {
            try {
                pidfd = platform::pidfd_open(pid);
                reply_fds.push_back(pidfd.get());
                children.emplace(pid, std::move(status_write));
            } catch (const std::exception&) {
                reply = -ESRCH;
            }
        }
        try {
            send_with_fds(control_fd, &reply, sizeof reply, reply_fds);
        } catch (const std::exception&) {
            client_gone = true;
        }
    }
}

}  // namespace mprocess::detail
