// The spawn start method and the entry guard (freeze_support).
//
// The parent forks, marks every descriptor close-on-exec except the ones the child needs, and
// executes /proc/self/exe with the parent's own argv and MPROCESS_SPAWN_FD in the environment.
// Over that socket it sends the child's identity, the target's code addresses and arguments; the
// child reads them in freeze_support(), answers 'R', and runs the target. A failed exec reaches
// the parent as errno over a close-on-exec pipe. A child whose main() starts a process without
// having called freeze_support() answers 'E' instead, and the parent gives up on a child that
// says nothing within kGuardTimeout.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <fcntl.h>
#include <link.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mprocess/connection.hpp"
#include "mprocess/context.hpp"
#include "platform/posix.hpp"
#include "process_internal.hpp"
#include "shm_channel.hpp"

extern char** environ;

namespace mprocess {
namespace detail {
namespace {

using platform::Fd;

constexpr const char* kEnvVar = "MPROCESS_SPAWN_FD";
constexpr auto kGuardTimeout = std::chrono::seconds(5);

// The socket to the parent, in a spawned child that has not reached freeze_support() yet.
int spawn_fd = [] {
    const char* v = std::getenv(kEnvVar);
    if (!v) return -1;
    int fd = std::atoi(v);
    ::unsetenv(kEnvVar);  // not for our own children
    return fd;
}();

// A code address as (object, build-id, offset): valid in every process that maps the object.
struct Symbol {
    std::string object;
    std::string build_id;
    std::uint64_t offset = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(object, build_id, offset);
    }
};

struct Payload {
    ChildIdentity who;
    Symbol entry;
    Symbol fn;
    std::vector<std::string> blobs;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(who, entry, fn, blobs);
    }
};

std::string build_id_of(const dl_phdr_info* info) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        auto* p = reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr);
        const char* end = p + ph.p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            auto* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
            const char* name = p + sizeof(ElfW(Nhdr));
            const char* desc = name + ((n->n_namesz + 3) & ~3u);
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0)
                return std::string(desc, n->n_descsz);
            p = desc + ((n->n_descsz + 3) & ~3u);
        }
    }
    return {};
}

struct Lookup {
    std::uintptr_t addr = 0;  // in: find the object containing this address
    const Symbol* want = nullptr;  // or: find the object this symbol names
    Symbol found;
    std::uintptr_t base = 0;
    bool ok = false;
};

int visit(dl_phdr_info* info, std::size_t, void* data) {
    auto& q = *static_cast<Lookup*>(data);
    const std::string name = info->dlpi_name ? info->dlpi_name : "";
    if (q.want) {
        if (name != q.want->object) return 0;
        q.found.build_id = build_id_of(info);
        q.base = info->dlpi_addr;
        q.ok = true;
        return 1;
    }
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (ph.p_type == PT_LOAD && q.addr >= lo && q.addr < lo + ph.p_memsz) {
            q.found = Symbol{name, build_id_of(info), q.addr - info->dlpi_addr};
            q.ok = true;
            return 1;
        }
    }
    return 0;
}

Symbol symbol_of(void* addr) {
    Lookup q;
    q.addr = reinterpret_cast<std::uintptr_t>(addr);
    dl_iterate_phdr(visit, &q);
    if (!q.ok) throw ProcessError("spawn: cannot find the loaded object holding the target's code");
    return q.found;
}

void* address_of(const Symbol& s) {
    Lookup q;
    q.want = &s;
    dl_iterate_phdr(visit, &q);
    if (!q.ok)
        throw ProcessError("spawned child: the object '" + s.object + "' holding the target is not loaded here");
    if (q.found.build_id != s.build_id)
        throw ProcessError("spawned child: '" + (s.object.empty() ? std::string("the program") : s.object) +
                           "' is not the same build as in the parent (build-id differs); refusing to run");
    return reinterpret_cast<void*>(q.base + s.offset);
}

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

void write_all(int fd, const void* data, std::size_t n, const platform::Deadline& deadline) {
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            pollfd pfd{fd, POLLOUT, 0};
            if (platform::poll_until(&pfd, 1, deadline) == 0) throw TimeoutError("spawn: the child does not read");
            continue;
        }
        throw BrokenPipeError("spawn: the child closed its end before reading its target");
    }
}

// Blocking read of exactly n bytes; false on EOF.
bool read_all(int fd, void* data, std::size_t n) {
    auto* p = static_cast<char*>(data);
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r > 0) {
            p += r;
            n -= static_cast<std::size_t>(r);
        } else if (r == 0) {
            return false;
        } else if (errno != EINTR) {
            return false;
        }
    }
    return true;
}

void tell_parent_unguarded(const std::string& msg) {
    if (spawn_fd < 0) return;
    std::string reply = "E" + msg;
    [[maybe_unused]] auto r = ::write(spawn_fd, reply.data(), reply.size());
    ::close(spawn_fd);
    spawn_fd = -1;
}

// Stops a child that never became ours to manage, and reaps it.
void discard_child(pid_t pid) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
}

}  // namespace

void close_spawn_fds(SpawnArgs& args) noexcept {
    for (int fd : args.fds) ::close(fd);
    args.fds.clear();
}

void refuse_if_unguarded() {
    if (spawn_fd < 0) return;
    const std::string msg =
        "the spawned child started a process before calling mprocess::freeze_support(argc, argv): "
        "call it as the first statement of main(), so that a child runs its target instead of the whole program";
    tell_parent_unguarded(msg);
    throw ProcessError(msg);
}

pid_t popen_spawn(const ChildIdentity& who, SpawnTarget& target) {
    Payload payload{who, symbol_of(reinterpret_cast<void*>(target.entry)), symbol_of(target.fn), target.args.blobs};
    const std::string bytes = encode(payload);

    auto [parent_end, child_end] = platform::make_socketpair();
    int err_pipe[2];
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) platform::throw_errno("pipe2");
    Fd err_read(err_pipe[0]), err_write(err_pipe[1]);

    // Everything the child needs, built before fork: only async-signal-safe calls after it.
    std::vector<std::string> env_strings;
    for (char** e = environ; e && *e; ++e)
        if (std::strncmp(*e, kEnvVar, std::strlen(kEnvVar)) != 0) env_strings.emplace_back(*e);
    env_strings.push_back(std::string(kEnvVar) + "=" + std::to_string(child_end.get()));
    std::vector<char*> envp, argv;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = own_argv();
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<int> keep = target.args.fds;
    keep.push_back(child_end.get());

    platform::flush_stdio();
    pid_t pid = ::fork();
    if (pid < 0) platform::throw_errno("fork");
    if (pid == 0) {
        if (who.die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        // Inherit nothing but what the target needs (and the standard streams).
        if (::syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) != 0)
            for (int fd = 3; fd < 65536; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        for (int fd : keep) ::fcntl(fd, F_SETFD, 0);
        ::fcntl(child_end.get(), F_SETFL, 0);  // blocking, for the child's simple reads
        ::execve("/proc/self/exe", argv.data(), envp.data());
        int e = errno;
        [[maybe_unused]] auto r = ::write(err_write.get(), &e, sizeof e);
        ::_exit(127);
    }
    err_write.reset();
    child_end.reset();
    int exec_errno = 0;
    if (read_all(err_read.get(), &exec_errno, sizeof exec_errno)) {
        discard_child(pid);
        platform::throw_os_error(exec_errno, "spawn: cannot execute /proc/self/exe");
    }

    const auto deadline = platform::Clock::now() + kGuardTimeout;
    try {
        const std::uint64_t nfds = target.args.fds.size(), len = bytes.size();
        try {
            write_all(parent_end.get(), &nfds, sizeof nfds, deadline);
            write_all(parent_end.get(), target.args.fds.data(), nfds * sizeof(int), deadline);
            write_all(parent_end.get(), &len, sizeof len, deadline);
            write_all(parent_end.get(), bytes.data(), bytes.size(), deadline);
        } catch (const Error&) {
            // The child stopped reading: its answer below says why.
        }

        pollfd pfd{parent_end.get(), POLLIN, 0};
        if (platform::poll_until(&pfd, 1, deadline) == 0)
            throw ProcessError("the spawned child did not reach mprocess::freeze_support(argc, argv) within " +
                               std::to_string(kGuardTimeout.count()) +
                               " s: call it as the first statement of main() to use the spawn or forkserver "
                               "start methods");
        char tag = 0;
        if (::read(parent_end.get(), &tag, 1) != 1)
            throw ProcessError("the spawned child ended before running its target (did it crash during start-up?)");
        if (tag == 'E') {
            std::string msg(4096, '\0');
            ssize_t n = ::read(parent_end.get(), msg.data(), msg.size());
            msg.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
            throw ProcessError(msg);
        }
    } catch (...) {
        discard_child(pid);
        throw;
    }
    return pid;
}

}  // namespace detail

void freeze_support(int, char**) {
    using namespace detail;
    if (spawn_fd < 0) return;
    const int fd = spawn_fd;
    spawn_fd = -1;
    std::uint64_t nfds = 0, len = 0;
    SpawnArgs args;
    Payload payload;
    std::string failure;
    try {
        if (!read_all(fd, &nfds, sizeof nfds) || nfds > 4096) throw DecodeError("bad descriptor count");
        args.fds.resize(nfds);
        if (!read_all(fd, args.fds.data(), nfds * sizeof(int)) || !read_all(fd, &len, sizeof len) || len > (1ull << 40))
            throw DecodeError("truncated header");
        std::string bytes(len, '\0');
        if (!read_all(fd, bytes.data(), len)) throw DecodeError("truncated payload");
        payload = decode<Payload>(bytes);
        args.blobs = std::move(payload.blobs);
    } catch (const std::exception& e) {
        failure = std::string("spawned child: cannot read its target from the parent: ") + e.what();
    }
    SpawnEntry entry = nullptr;
    void* fn = nullptr;
    if (failure.empty()) {
        try {
            entry = reinterpret_cast<SpawnEntry>(address_of(payload.entry));
            fn = address_of(payload.fn);
        } catch (const std::exception& e) {
            failure = e.what();
        }
    }
    if (!failure.empty()) {
        std::string reply = "E" + failure;
        [[maybe_unused]] auto r = ::write(fd, reply.data(), reply.size());
        ::_exit(1);
    }
    [[maybe_unused]] auto r = ::write(fd, "R", 1);
    ::close(fd);
    become_child_and_run(payload.who, [&] { entry(args, fn); });
}

}  // namespace mprocess
