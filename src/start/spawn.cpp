// SPDX-License-Identifier: Apache-2.0
// The spawn start method and the entry guard (freeze_support).
//
// The parent makes a socket pair and starts /proc/self/exe through the launcher (platform/exec.hpp),
// keeping open only the descriptors the child needs, with the parent's own argv and
// MPROCESS_SPAWN_FD (its end of the pair) in the environment. Over that socket the parent sends the
// child's identity, the target's code addresses and arguments; the child reads them in
// freeze_support(), answers 'R', and runs the target. A failed exec reaches the parent as errno over
// the launcher's close-on-exec pipe. A child whose main() starts a process without having called
// freeze_support() answers 'E' instead, and the parent gives up on a child that says nothing within
// kGuardTimeout.
//
// The new image trusts the variable only if it names a Unix socket whose other end is its parent
// process and its own user (checked at static initialization, where the variable is also removed
// from the environment); anything else makes freeze_support() exit with the reason, and in
// secure-execution mode (setuid, setgid, file capabilities) the variable is ignored. It runs only
// an entry point the binary registered (entry_point.hpp). MPROCESS_FORKSERVER_FD starts a
// forkserver the same way.
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sys/auxv.h>

#include "mprocess/connection.hpp"
#include "mprocess/context.hpp"
#include "platform/exec.hpp"
#include "platform/process.hpp"
#include "platform/socket.hpp"
#include "start/popen.hpp"

namespace mprocess {
namespace detail {

const std::chrono::seconds kGuardTimeout(5);

namespace {

using platform::Fd;

constexpr const char* kSpawnVar = "MPROCESS_SPAWN_FD";
constexpr const char* kServerVar = "MPROCESS_FORKSERVER_FD";

// Why descriptor `fd` is not a start-up channel from our parent, or empty if it is. The parent
// makes it with socketpair() just before it forks us, so its peer's credentials are the parent's
// pid and user; a descriptor anyone else hands us (a file on stdin, a socket of another process
// or user) fails that.
std::string distrust(int fd) {
    if (!platform::is_socket(fd)) return "it is not a socket";
    const auto peer = platform::peer_credentials(fd);
    if (!peer) return "it is not a Unix socket";
    if (peer->pid != platform::getppid()) return "its other end is not our parent process";
    if (peer->uid != platform::real_uid() || peer->uid != platform::effective_uid())
        return "its other end is another user";
    return {};
}

// The start-up channel named by `var`, which is removed from the environment (it is not for our
// own children). In secure-execution mode (setuid, setgid, file capabilities) the environment is
// our caller's to choose, so the variable is ignored: the program runs as itself.
struct StartChannel {
    int fd = -1;
    std::string refused;  // why the variable was not honoured
};

StartChannel take_start_channel(const char* var) {
    const char* v = std::getenv(var);
    if (!v) return {};
    const std::string value = v;
    ::unsetenv(var);
    if (::getauxval(AT_SECURE) != 0) return {};
    int fd = -1;
    const auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), fd);
    std::string why = err != std::errc() || end != value.data() + value.size() || fd < 0
                          ? "it is not a descriptor number"
                          : distrust(fd);
    if (why.empty()) return {fd, {}};
    return {-1, std::string(var) + "=" + value + " was refused: " + why};
}

// The socket to the parent in a fresh image that has not reached freeze_support() yet, and
// what it was started as.
int guard_fd = -1;
bool started_as_server = false;
std::string start_refused;
[[maybe_unused]] const bool env_read = [] {
    StartChannel spawn = take_start_channel(kSpawnVar), server = take_start_channel(kServerVar);
    const bool as_server = spawn.fd < 0 && spawn.refused.empty();
    StartChannel& ch = as_server ? server : spawn;
    started_as_server = as_server && ch.fd >= 0;
    guard_fd = ch.fd;
    start_refused = std::move(ch.refused);
    return true;
}();

const std::vector<std::string>& own_argv() {
    static const std::vector<std::string> argv = [] {
        std::ifstream f("/proc/self/cmdline", std::ios::binary);
        std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        std::vector<std::string> out;
        std::size_t start = 0;
        for (std::size_t i = 0; i < all.size(); ++i)
            if (all[i] == '\0') {
                out.push_back(all.substr(start, i - start));
                start = i + 1;
            }
        if (out.empty()) out.push_back("mprocess-child");
        return out;
    }();
    return argv;
}

void answer_parent(int fd, const std::string& reply) {
    [[maybe_unused]] auto r = platform::write(fd, reply.data(), reply.size());
}

}  // namespace

platform::Fd copy_spawn_fd(const SpawnArgs& args, int index, const char* what) {
    if (index < 0 || static_cast<std::size_t>(index) >= args.fds.size())
        throw DecodeError(std::string("exported ") + what + ": bad descriptor index");
    platform::Fd borrowed(args.fds[static_cast<std::size_t>(index)]);
    platform::Fd own = platform::dup_fd(borrowed);
    borrowed.release();
    return own;
}

void write_all(int fd, const void* data, std::size_t n, const platform::Deadline& deadline) {
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
        ssize_t w = platform::send_some(fd, p, n);
        if (w > 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
        } else if (w < 0 && errno == EAGAIN) {
            pollfd pfd{fd, POLLOUT, 0};
            if (platform::poll_until(&pfd, 1, deadline) == 0) throw TimeoutError("the other process does not read");
        } else if (!(w < 0 && errno == EINTR)) {
            throw BrokenPipeError("the other process closed its end");
        }
    }
}

bool read_all(int fd, void* data, std::size_t n) {
    return platform::read_exact(fd, data, n);
}

Payload make_payload(const ChildIdentity& who, const SpawnTarget& target) {
    return Payload{who, code_symbol(reinterpret_cast<const void*>(target.entry)), code_symbol(target.fn),
                   target.args.blobs};
}

void run_payload(Payload& payload, std::vector<int> fds) {
    SpawnArgs args{std::move(payload.blobs), std::move(fds)};
    auto entry = reinterpret_cast<SpawnEntry>(entry_address(payload.entry));
    void* fn = function_address(payload.fn);
    become_child_and_run(payload.who, [&] { entry(args, fn); });
}

}  // namespace detail

void SpawnArgs::close_fds() noexcept {
    for (int fd : fds) platform::close(fd);
    fds.clear();
}

namespace detail {

void refuse_if_unguarded() {
    if (guard_fd < 0) return;
    const std::string msg =
        "the child started a process before calling mprocess::freeze_support(argc, argv): call it as the first "
        "statement of main(), so that a child runs its target instead of the whole program";
    answer_parent(guard_fd, "E" + msg);
    platform::close(guard_fd);
    guard_fd = -1;
    throw ProcessError(msg);
}

pid_t launch_self(const char* env_var, Fd& child_end, const std::vector<int>& keep_fds, bool die_with_parent) {
    platform::ExecPlan plan;
    plan.argv = own_argv();
    plan.candidates = {"/proc/self/exe"};
    plan.env = platform::environment_without("MPROCESS_");
    plan.env->push_back(std::string(env_var) + "=" + std::to_string(child_end.get()));
    plan.keep_fds = keep_fds;
    plan.keep_fds.push_back(child_end.get());
    plan.die_with_parent = die_with_parent;
    // Blocking, for the child's simple reads. The flag belongs to the open socket, which from now
    // on only the child uses.
    platform::set_blocking(child_end, true);

    platform::flush_stdio();
    auto started = platform::fork_exec(plan);
    child_end.reset();
    if (started.failure) platform::throw_os_error(started.failure->error, "cannot execute /proc/self/exe");
    return started.pid;
}

char await_answer(int fd, const platform::Deadline& deadline) {
    pollfd pfd{fd, POLLIN, 0};
    if (platform::poll_until(&pfd, 1, deadline) == 0)
        throw ProcessError("the child did not reach mprocess::freeze_support(argc, argv) within " +
                           std::to_string(kGuardTimeout.count()) +
                           " s: call it as the first statement of main() to use the spawn or forkserver start methods");
    char tag = 0;
    if (platform::read(fd, &tag, 1) != 1)
        throw ProcessError("the child ended before running its target (did it crash during start-up?)");
    if (tag == 'E') {
        std::string msg(4096, '\0');
        ssize_t n = platform::read(fd, msg.data(), msg.size());
        msg.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
        throw ProcessError(msg);
    }
    return tag;
}

pid_t popen_spawn(const ChildIdentity& who, SpawnTarget& target) {
    const std::string bytes = encode(make_payload(who, target));
    auto [parent_end, child_end] = platform::make_socketpair();
    const pid_t pid = launch_self(kSpawnVar, child_end, target.args.fds, who.die_with_parent);
    try {
        const auto deadline = platform::Clock::now() + kGuardTimeout;
        const std::uint64_t nfds = target.args.fds.size(), len = bytes.size();
        try {
            write_all(parent_end.get(), &nfds, sizeof nfds, deadline);
            write_all(parent_end.get(), target.args.fds.data(), nfds * sizeof(int), deadline);
            write_all(parent_end.get(), &len, sizeof len, deadline);
            write_all(parent_end.get(), bytes.data(), bytes.size(), deadline);
        } catch (const Error&) {
            // The child stopped reading: its answer says why.
        }
        await_answer(parent_end.get(), deadline);
    } catch (...) {
        platform::discard_child(pid);
        throw;
    }
    return pid;
}

}  // namespace detail

void freeze_support(int, char**) {
    using namespace detail;
    if (!start_refused.empty()) {
        // Started as a child, but not by our parent: run neither its payload nor, in its place,
        // the whole program.
        std::fprintf(stderr, "mprocess: %s; not starting as a child\n", start_refused.c_str());
        platform::_exit(1);
    }
    if (guard_fd < 0) return;
    const int fd = guard_fd;
    guard_fd = -1;
    if (started_as_server) forkserver_main(fd);

    std::uint64_t nfds = 0, len = 0;
    std::vector<int> fds;
    Payload payload;
    try {
        if (!read_all(fd, &nfds, sizeof nfds) || nfds > 4096) throw DecodeError("bad descriptor count");
        fds.resize(nfds);
        if (!read_all(fd, fds.data(), nfds * sizeof(int)) || !read_all(fd, &len, sizeof len) || len > (1ull << 40))
            throw DecodeError("truncated header");
        std::string bytes(len, '\0');
        if (!read_all(fd, bytes.data(), len)) throw DecodeError("truncated payload");
        payload = decode<Payload>(bytes);
        // Resolve now, so that a wrong binary is reported to the parent instead of run.
        entry_address(payload.entry);
        function_address(payload.fn);
    } catch (const std::exception& e) {
        answer_parent(fd, std::string("E") + "spawned child: " + e.what());
        platform::_exit(1);
    }
    answer_parent(fd, "R");
    platform::close(fd);
    run_payload(payload, std::move(fds));
}

}  // namespace mprocess
