// SPDX-License-Identifier: Apache-2.0
/// @file
/// Process: run a callable in a child process, as Python's multiprocessing.Process.
///
/// @code{.cpp}
/// void f(std::string name) { std::cout << "hello " << name << "\n"; }
/// mp::Process p(f, std::string("bob"));      // or mp::Process p(f, {.name = "worker"}, "bob");
/// p.start();
/// p.join();
/// @endcode
///
/// Start methods (context.hpp). Under fork, the default, the child is a copy of the parent, so
/// any callable works, lambdas with captures included, and arguments need no serialization. Under
/// spawn and forkserver the child is a fresh run of this program: the target must be a plain
/// function or a lambda without captures, and every argument serializable or a handle (Connection,
/// queue, lock, shared value, SharedMemory), or made of those; start() throws ProcessError naming
/// what cannot travel.
///
/// Fork safety. fork() copies only the calling thread. A lock that another thread of the parent
/// held at that moment (inside malloc, stdio, a logger, ...) stays locked forever in the child, and
/// the child may deadlock on its first use. So: start processes before starting threads, keep the
/// child to async-signal-safe work, or use spawn or forkserver. mprocess's own threads are the
/// manager thread of each Pool, ProcessPoolExecutor and mpi::Pool (a Pool's forks replacement
/// workers under fork: safe with glibc's malloc, see docs/python-to-cpp.md), and a manager server's
/// threads while it serves in this process (serve_forever, ManagerServer). The state mprocess keeps
/// per process (the child registry, a manager's connections) is rebuilt fresh in every child, so
/// it is safe across fork.
/// Output buffered in stdio or iostreams is flushed before every fork so it is not printed twice.
///
/// Lifetime. No zombie is ever left: every child is reaped by join(), is_alive(), exitcode(), the
/// next start(), active_children(), or at exit. When the main program exits normally, daemonic
/// children are terminated and the others joined, as in Python. A Process destroyed while its
/// child runs leaves the child tracked, not orphaned. With {.die_with_parent = true} the kernel
/// kills the child (SIGKILL) if the parent dies, even by SIGKILL (note: Linux ties this to the
/// thread that called start(), so start such children from a thread that outlives them).
///
/// Exit codes, as Python: 0 when the target returns; 1 when it throws (the exception's type and
/// what() go to stderr, like Python's traceback); n after mprocess::exit(n); -N when killed by
/// signal N; empty while running.
#pragma once

#include "mprocess/export.hpp"

#include <concepts>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "mprocess/detail/spawn.hpp"
#include "mprocess/error.hpp"
#include "mprocess/start_method.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

/// Python's keyword arguments of Process(...).
struct ProcessOptions {
    std::string name{};            ///< default `"<Class>-N"` (Process-1, Process-2, ... ; Process-1:1 in a child)
    std::optional<bool> daemon{};  ///< default: the creating process's daemon flag (false in the main process)
    bool die_with_parent = false;  ///< kill the child if this process dies (fork and spawn; forkserver refuses it)
    std::optional<StartMethod> start_method{};  ///< default: get_start_method()
};

/// A description of a process that is not a child of ours: current_process(), parent_process().
class MPROCESS_EXPORT ProcessInfo {
public:
    /// A description as current_process() and parent_process() make one.
    ProcessInfo(std::string name, pid_t pid, bool daemon, std::string authkey = {})
        : name_(std::move(name)), pid_(pid), daemon_(daemon), authkey_(std::move(authkey)) {}
    /// The process's name ("MainProcess" in the main process).
    const std::string& name() const noexcept { return name_; }
    /// The process's pid.
    pid_t pid() const noexcept { return pid_; }
    /// Whether it is daemonic (terminated when its parent exits).
    bool daemon() const noexcept { return daemon_; }
    /// Whether the process still runs, asked of the kernel (through a pidfd, so a reused pid is
    /// not mistaken for it once it has been reaped).
    bool is_alive() const;
    /// Python's authkey, known for current_process() only (empty otherwise): 32 random bytes made
    /// in the main process and inherited by every child, under each start method: a secret a
    /// program's processes share (for a Listener of their own, say).
    const std::string& authkey() const noexcept { return authkey_; }

private:
    std::string name_;
    pid_t pid_;
    bool daemon_;
    std::string authkey_;
};

namespace detail {
struct ProcessState;
struct ProcessAccess;

struct Target {
    virtual ~Target() = default;
    virtual void invoke() = 0;
    // Fills `out` for a start in a fresh program image; otherwise returns why it cannot be done.
    virtual std::string to_spawn(SpawnTarget& out) const = 0;
};

// The type an argument is kept as: the target's parameter type P when the argument converts to
// it and keeping P loses nothing, so that a string literal becomes the std::string the function
// takes at construction, under every start method; otherwise the argument's decayed type. Not P
// when P is a view (a std::string_view of a temporary std::string would dangle) or a base of the
// argument's class (a Derived kept as a Base would be sliced).
template <class P, class A>
using kept_t = std::conditional_t<std::is_convertible_v<A&&, P> && !is_view_v<std::remove_cvref_t<P>> &&
                                      !(std::is_class_v<std::decay_t<A>> &&
                                        std::is_base_of_v<std::remove_cvref_t<P>, std::decay_t<A>> &&
                                        !std::is_same_v<std::remove_cvref_t<P>, std::decay_t<A>>),
                                  std::remove_cvref_t<P>, std::decay_t<A>>;

template <class F, class Fp, class... A>
struct stored_args {
    using type = std::tuple<std::decay_t<A>...>;
};
template <class F, class R, class... P, class... A>
requires(sizeof...(P) == sizeof...(A)) &&
    std::is_invocable_v<F&, kept_t<P, A>&...> struct stored_args<F, R (*)(P...), A...> {
    using type = std::tuple<kept_t<P, A>...>;
};
template <class F, class R, class... P, class... A>
requires(sizeof...(P) == sizeof...(A)) &&
    std::is_invocable_v<F&, kept_t<P, A>&...> struct stored_args<F, R (*)(P...) noexcept, A...> {
    using type = std::tuple<kept_t<P, A>...>;
};

// Why the first argument that cannot travel to a fresh program image cannot, or empty if all can.
template <class... Args>
std::string unspawnable_argument() {
    std::string why;
    std::size_t position = 0;
    auto check = [&]<class T>(std::type_identity<T>) {
        ++position;
        if (why.empty() && !spawnable_v<T>)
            why = "argument " + std::to_string(position) + " (" + std::string(type_name_v<T>) +
                  ") is neither serializable nor a handle (Connection, queue, lock, shared value), nor a "
                  "container or a type with serialize() holding those";
    };
    (check(std::type_identity<Args>{}), ...);
    return why;
}

template <class F, class... Args>
struct BoundTarget final : Target {
    template <class G, class... A>
    explicit BoundTarget(G&& g, A&&... a) : f(std::forward<G>(g)), args(std::forward<A>(a)...) {}
    void invoke() override {
        std::apply([this](auto&... a) { std::invoke(f, a...); }, args);
    }
    std::string to_spawn(SpawnTarget& out) const override {
        using Fp = function_pointer_t<F>;
        if constexpr (std::is_void_v<Fp>) {
            return "its target is not a plain function or a lambda without captures";
        } else {
            (require_spawn_codec<Args>(), ...);
            if constexpr (!(spawnable_v<Args> && ...)) {
                return unspawnable_argument<Args...>();
            } else {
                Fp fp = f;
                out.entry = entry_point<&spawn_entry<Fp, Args...>>();
                out.fn = reinterpret_cast<void*>(fp);
                std::apply(
                    [&](const Args&... a) {  // [&]: no capture left unused when there are no arguments
                        (out.args.blobs.push_back(SpawnArg<Args>::write(out.args, a)), ...);
                    },
                    args);
                return {};
            }
        }
    }
    F f;
    std::tuple<Args...> args;
};

template <class F, class Stored>
struct bound_target_for;
template <class F, class... S>
struct bound_target_for<F, std::tuple<S...>> {
    using type = BoundTarget<F, S...>;
};
template <class F, class... A>
using bound_target_t =
    typename bound_target_for<std::decay_t<F>,
                              typename stored_args<std::decay_t<F>, function_pointer_t<F>, A...>::type>::type;
}  // namespace detail

/// multiprocessing.Process: a callable run in a child process (see process.hpp).
/// Derive from it and override run() for Python's `class C(mp.Process)`.
class MPROCESS_EXPORT Process {
public:
    /// Runs target(args...) in the child. Arguments are copied (or moved) into the Process.
    template <class F, class... Args>
    requires std::invocable < std::decay_t<F>
    &, std::decay_t<Args>&... > explicit Process(F&& target, Args&&... args) : Process(ProcessOptions{}) {
        set_target(std::forward<F>(target), std::forward<Args>(args)...);
    }

    /// Runs target(args...) in the child, with Python's keyword arguments.
    template <class F, class... Args>
    requires std::invocable < std::decay_t<F>
    &, std::decay_t<Args>&... > Process(F&& target, ProcessOptions options, Args&&... args)
        : Process(std::move(options)) {
        set_target(std::forward<F>(target), std::forward<Args>(args)...);
    }

    /// For classes derived from Process that override run().
    explicit Process(ProcessOptions options = {});

    /// Takes over the child; the moved-from Process is closed (its calls throw ValueError).
    Process(Process&&) noexcept;
    /// Takes over the other's child; this one's child, if running, stays tracked (see process.hpp).
    Process& operator=(Process&&) noexcept;
    Process(const Process&) = delete;             ///< one owner of a child
    Process& operator=(const Process&) = delete;  ///< one owner of a child
    /// Leaves a running child tracked, not orphaned: it is reaped later (see process.hpp).
    virtual ~Process();

    /// What the child executes. The default calls the target with its arguments.
    virtual void run();

    /// Starts the child, once (ProcessError again, or from a daemonic process, or when the target
    /// or an argument cannot travel under spawn or forkserver; OSError if the system refuses).
    void start();
    /// Waits until the child has ended. ProcessError before start().
    void join();
    /// Waits at most `timeout`; true if the child has ended.
    bool join(Timeout timeout);
    /// True from start() until the child ends (reaping it then).
    bool is_alive();
    /// Sends SIGTERM; nothing once the child has ended.
    void terminate();
    /// Sends SIGKILL; nothing once the child has ended.
    void kill();
    /// Python 3.14's interrupt(): sends SIGINT, as Ctrl-C in a terminal would; nothing once the
    /// child has ended. A child that does not handle it ends with exitcode() -2.
    void interrupt();
    /// Releases the resources held for the child; it must have ended. Later calls throw ValueError.
    void close();

    /// 0 when the target returned, 1 when it threw, n after mprocess::exit(n), -N after signal N;
    /// empty before start() and while the child runs.
    std::optional<int> exitcode();
    /// The child's pid; 0 before start().
    pid_t pid() const;
    /// Python's name: the given one, or `"<Class>-N"`.
    const std::string& name() const;
    /// Renames it, here; a child that runs already keeps the name it started with.
    void set_name(std::string name);
    /// Whether the child is daemonic: terminated, not joined, when the main program exits, and
    /// not allowed children of its own.
    bool daemon() const;
    /// Sets the daemon flag; ProcessError after start().
    void set_daemon(bool daemon);
    /// A descriptor that becomes readable when the child ends (for mprocess::wait()).
    int sentinel() const;

private:
    friend std::vector<Process> active_children();
    friend struct detail::ProcessAccess;
    MPROCESS_NO_EXPORT explicit Process(std::shared_ptr<detail::ProcessState> state);

    template <class F, class... Args>
    void set_target(F&& f, Args&&... args) {
        target_ = std::make_unique<detail::bound_target_t<F, Args...>>(std::forward<F>(f), std::forward<Args>(args)...);
    }
    detail::ProcessState& state() const;    // throws ValueError once closed
    detail::ProcessState& started() const;  // also requires start() and that we are the parent
    detail::SpawnTarget spawn_target(StartMethod method) const;
    void send_signal(int sig);  // to a started child that has not ended
    // Takes ownership of the descriptors (-1 for none).
    void adopt_child(pid_t pid, int pidfd, int status_fd);

    std::shared_ptr<detail::ProcessState> st_;
    std::unique_ptr<detail::Target> target_;
};

/// This process: its name, pid, daemon flag and authkey.
MPROCESS_EXPORT ProcessInfo current_process();
/// Python's `current_process().authkey = key`: this process's key from now on, and its future
/// children's. An empty key is refused (ValueError).
MPROCESS_EXPORT void set_authkey(std::string key);

/// The keys this process knows for the servers it talks to (managers, by address), inherited by
/// every child under each start method, as the process's own authkey is. A BaseManager given a
/// key remembers it here when it starts or connects, so a proxy, which never carries its key,
/// works in any process that knows it. There is no fallback: a proxy for an address whose key is
/// unknown here fails with AuthenticationError when used (its key would otherwise be tried on
/// whatever listens there, which could pass a challenge on to the real server).
MPROCESS_EXPORT void remember_authkey(const std::string& address, const std::string& key);
/// The key remembered for `address`, or nullopt if this process knows none (see
/// remember_authkey()).
MPROCESS_EXPORT std::optional<std::string> authkey_for(const std::string& address);
/// The process that started this one; empty in the main process.
MPROCESS_EXPORT std::optional<ProcessInfo> parent_process();
/// The children of this process that are still running (finished ones are reaped on the way).
MPROCESS_EXPORT std::vector<Process> active_children();
/// Number of CPUs in the system, as Python's cpu_count(); MPROCESS_CPU_COUNT in the environment (a
/// positive number) overrides it, as PYTHON_CPU_COUNT does Python's.
MPROCESS_EXPORT int cpu_count();
/// Python 3.13's process_cpu_count(): the CPUs this process may use, its affinity (taskset, a
/// cpuset) and, past Python, its cgroup v2 CPU quota (cpu.max: 1.5 CPUs count as 2); at least 1.
/// MPROCESS_CPU_COUNT overrides it too. The default worker count of a Pool and an executor.
MPROCESS_EXPORT int process_cpu_count();

/// Ends the current process with `code`: inside a child started by mprocess it unwinds the stack
/// (throws SystemExit) and the child exits with `code`; in the main process it calls std::exit.
[[noreturn]] MPROCESS_EXPORT void exit(int code);

}  // namespace mprocess
