// SPDX-License-Identifier: Apache-2.0
#include "mprocess/process.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cxxabi.h>
#include <mutex>
#include <typeinfo>

#include <signal.h>
#include <unistd.h>

#include "mprocess/context.hpp"
#include "default_method.hpp"
#include "platform/exec.hpp"
#include "platform/posix.hpp"
#include "platform/process.hpp"
#include "process_access.hpp"
#include "start/popen.hpp"
#include "start/child.hpp"

namespace mprocess {

namespace detail {

struct ProcessState {
    std::mutex m;
    std::string name;  // empty until first asked: the dynamic class name is known only then
    std::vector<int> identity;
    bool daemon = false;
    bool die_with_parent = false;
    std::optional<StartMethod> start_method;
    bool started = false;
    bool closed = false;
    pid_t pid = 0;
    pid_t parent_pid = 0;
    platform::Fd pidfd;
    platform::Fd status_fd;  // forkserver children: yields the wait status (we are not their parent)
    std::optional<int> exitcode;
    std::uint64_t peak_rss = 0;  // bytes, once reaped (the kernel's count, or the forkserver's)

    // The descriptor that becomes readable when the child has ended.
    int end_fd() const { return status_fd.valid() ? status_fd.get() : pidfd.get(); }

    // Non-blocking reap; true once the exit code is known. Caller holds m.
    bool try_reap_locked() {
        if (exitcode) return true;
        if (status_fd.valid()) {
            if (!platform::readable_now(status_fd.get())) return false;
            int status = 0;
            // No status at all: the forkserver died first; report it as killed. Its peak memory
            // follows the status (none from a stand-in: then it stays unknown).
            exitcode = platform::read_exact(status_fd.get(), &status, sizeof status)
                           ? platform::waitstatus_to_exitcode(status)
                           : -SIGKILL;
            if (!platform::read_exact(status_fd.get(), &peak_rss, sizeof peak_rss)) peak_rss = 0;
            return true;  // the descriptors stay open: they are the sentinel until close()
        }
        const auto reaped = platform::reap_status(pid, false);
        if (!reaped) return false;
        exitcode = platform::waitstatus_to_exitcode(reaped->status);
        peak_rss = reaped->max_rss;
        return true;  // the pidfd stays open: it is the sentinel until close()
    }
    bool try_reap() {
        std::lock_guard lock(m);
        return try_reap_locked();
    }
};

namespace {

// What this process knows about itself and its children. Rebuilt from scratch in each child.
struct ThisProcess {
    std::string name = "MainProcess";
    std::vector<int> identity;
    bool daemon = false;
    bool is_child = false;
    pid_t parent_pid = 0;
    std::string parent_name;
    std::string authkey;                            // made when first needed, under m
    std::map<std::string, std::string> known_keys;  // under m
    int counter = 0;
    std::mutex m;
    std::vector<std::shared_ptr<ProcessState>> children;  // started, not yet reaped
    bool exit_hook = false;
};

// Never destroyed: the exit hook may run after static destructors.
ThisProcess* this_process_ptr = new ThisProcess;
ThisProcess& this_process() {
    return *this_process_ptr;
}

// Reaps finished children and forgets them.
void reap_finished() {
    auto& s = this_process();
    std::lock_guard lock(s.m);
    std::erase_if(s.children, [](const std::shared_ptr<ProcessState>& c) {
        try {
            return c->try_reap();
        } catch (...) {  // never throw out of erase_if: it would leave moved-from entries behind
            return false;
        }
    });
}

// Drops a reaped child from the registry, so that its descriptors live only as long as its Process.
void forget(const ProcessState* st) {
    auto& s = this_process();
    std::lock_guard lock(s.m);
    std::erase_if(s.children, [st](const std::shared_ptr<ProcessState>& c) { return c.get() == st; });
}

std::vector<std::shared_ptr<ProcessState>> live_children() {
    reap_finished();
    std::lock_guard lock(this_process().m);
    return this_process().children;
}

bool wait_exit(ProcessState& st, const platform::Deadline& deadline) {
    if (st.try_reap()) return true;
    pollfd pfd{};
    {
        std::lock_guard lock(st.m);
        if (st.end_fd() < 0) return st.try_reap_locked();
        pfd.fd = st.end_fd();
    }
    pfd.events = POLLIN;
    while (platform::poll_until(&pfd, 1, deadline) > 0) {
        if (st.try_reap()) return true;
    }
    return st.try_reap();
}

// As Python at interpreter exit: terminate daemonic children, then join all.
void finalize_children() {
    auto children = live_children();
    for (auto& c : children) {
        if (c->daemon) {
            std::lock_guard lock(c->m);
            if (!c->exitcode && c->pidfd.valid()) platform::pidfd_signal(c->pidfd.get(), SIGTERM);
        }
    }
    for (auto& c : children) wait_exit(*c, std::nullopt);
    reap_finished();
}

void at_exit() noexcept {
    try {
        finalize_children();
    } catch (...) {
    }
    forkserver_stop();
}

std::string demangle(const char* name) {
    int status = 0;
    char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string s = status == 0 && out ? out : name;
    std::free(out);
    return s;
}

std::string default_name(const std::string& dynamic_class, const std::vector<int>& identity) {
    std::string cls = dynamic_class;
    if (auto t = cls.find('<'); t != std::string::npos) cls.resize(t);
    if (auto c = cls.rfind("::"); c != std::string::npos) cls = cls.substr(c + 2);
    std::string n = cls + "-";
    for (std::size_t i = 0; i < identity.size(); ++i) n += (i ? ":" : "") + std::to_string(identity[i]);
    return n;
}

// Python prints "Process <name>:" and the traceback; we print the exception's type and message.
void report_exception(const std::string& name) {
    std::string type = "unknown exception";
    std::string what;
    if (auto* t = abi::__cxa_current_exception_type()) type = demangle(t->name());
    try {
        throw;
    } catch (const std::exception& e) {
        what = e.what();
    } catch (...) {
    }
    std::fprintf(stderr, "Process %s:\n%s: %s\n", name.c_str(), type.c_str(), what.c_str());
    std::fflush(stderr);
}

}  // namespace

// A pidfd for a child we just started; if none can be had, the child is killed and reaped.
// With SIGCHLD ignored the kernel may have reaped a quick child already (ESRCH): then a pipe
// holding the status stands in as its end descriptor, with 0 for the status nobody can know,
// as waitpid's ECHILD is reported (see platform::reap_status).
std::pair<int, int> pidfd_or_discard(pid_t pid) {
    try {
        return {platform::pidfd_open(pid).release(), -1};
    } catch (const OSError& e) {
        if (e.code() == std::errc::no_such_process) return {-1, platform::status_fd_of(0).release()};
        platform::discard_child(pid);
        throw;
    } catch (...) {
        platform::discard_child(pid);
        throw;
    }
}

std::string process_authkey() {
    auto& s = this_process();
    std::lock_guard lock(s.m);
    if (s.authkey.empty()) s.authkey = platform::random_bytes(32);
    return s.authkey;
}

ChildIdentity identity_of(const ProcessState& st) {
    ChildIdentity who;
    who.name = st.name;
    who.identity = st.identity;
    who.daemon = st.daemon;
    who.die_with_parent = st.die_with_parent;
    who.parent_pid = st.parent_pid;
    who.parent_name = this_process().name;
    who.authkey = process_authkey();
    // As Python: a process made through a context keeps its method; one made with the default
    // keeps the default if it was set (and, under fork, whatever the parent had anyway).
    who.start_method = st.start_method ? st.start_method : start_method_if_set();
    std::lock_guard lock(this_process().m);
    who.known_keys = this_process().known_keys;
    return who;
}

void become_child_and_run(const ChildIdentity& who, const std::function<void()>& body) {
    if (who.die_with_parent) {
        platform::die_with_parent();
        if (platform::getppid() != who.parent_pid) platform::_exit(1);  // the parent died before prctl took effect
    }
    // A fresh registry: the parent's children are not ours, and its locks may be held by threads
    // that do not exist here. The old one is leaked on purpose; its descriptors are closed.
    auto* old = this_process_ptr;
    for (auto& c : old->children) c->pidfd.reset();
    auto* fresh = new ThisProcess;
    fresh->name = who.name;
    fresh->identity = who.identity;
    fresh->daemon = who.daemon;
    fresh->is_child = true;
    fresh->parent_pid = who.parent_pid;
    fresh->parent_name = who.parent_name;
    fresh->authkey = who.authkey;
    fresh->known_keys = who.known_keys;
    this_process_ptr = fresh;
    adopt_start_method(who.start_method);

    int code = 0;
    try {
        body();
    } catch (const SystemExit& e) {
        code = e.code;
    } catch (...) {
        report_exception(who.name);
        code = 1;
    }
    try {
        finalize_children();
    } catch (...) {
    }
    platform::flush_stdio();
    platform::_exit(code);
}
}  // namespace detail

using detail::ProcessState;

bool ProcessInfo::is_alive() const {
    if (pid_ == platform::getpid()) return true;
    try {
        auto fd = platform::pidfd_open(pid_);
        pollfd pfd{fd.get(), POLLIN, 0};
        return platform::poll_until(&pfd, 1, platform::Clock::now()) == 0;
    } catch (const OSError&) {
        return false;
    }
}

Process::Process(ProcessOptions options) : st_(std::make_shared<ProcessState>()) {
    auto& s = detail::this_process();
    {
        std::lock_guard lock(s.m);
        st_->identity = s.identity;
        st_->identity.push_back(++s.counter);
    }
    st_->name = std::move(options.name);
    st_->daemon = options.daemon.value_or(s.daemon);
    st_->die_with_parent = options.die_with_parent;
    st_->start_method = options.start_method;
    st_->parent_pid = platform::getpid();
}

Process::Process(std::shared_ptr<ProcessState> state) : st_(std::move(state)) {}
Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&&) noexcept = default;
Process::~Process() = default;

void Process::run() {
    if (target_) target_->invoke();
}

ProcessState& Process::state() const {
    if (!st_ || st_->closed) throw ValueError("process object is closed");
    return *st_;
}

ProcessState& Process::started() const {
    auto& st = state();
    if (!st.started) throw ProcessError("can only use a started process: call start() first");
    if (st.parent_pid != platform::getpid())
        throw ProcessError("can only join, poll or signal a child process of this one");
    return st;
}

const std::string& Process::name() const {
    auto& st = state();
    std::lock_guard lock(st.m);
    if (st.name.empty()) st.name = detail::default_name(detail::demangle(typeid(*this).name()), st.identity);
    return st.name;
}

void Process::set_name(std::string name) {
    auto& st = state();
    std::lock_guard lock(st.m);
    st.name = std::move(name);
}

bool Process::daemon() const {
    return state().daemon;
}

void Process::set_daemon(bool daemon) {
    auto& st = state();
    if (st.started) throw ProcessError("process has already started: set daemon before start()");
    st.daemon = daemon;
}

pid_t Process::pid() const {
    return state().pid;
}

std::uint64_t detail::ProcessAccess::peak_rss(const Process& p) {
    if (!p.st_) return 0;
    std::lock_guard lock(p.st_->m);
    return p.st_->peak_rss;
}

int Process::sentinel() const {
    auto& st = started();
    std::lock_guard lock(st.m);
    return st.end_fd();
}

void Process::start() {
    auto& st = state();
    if (st.started) throw ProcessError("cannot start a process twice");
    if (st.parent_pid != platform::getpid())
        throw ProcessError("can only start a process object created by this process");
    detail::refuse_if_unguarded();
    auto& s = detail::this_process();
    if (s.daemon) throw ProcessError("daemonic processes are not allowed to have children");
    const StartMethod method = detail::start_method_or_default(st.start_method);
    detail::reap_finished();
    name();  // fix the default name now, while *this is the complete object

    {
        std::lock_guard lock(s.m);
        if (!s.exit_hook) {
            std::atexit(detail::at_exit);
            s.exit_hook = true;
        }
    }
    if (method == StartMethod::fork) {
        platform::flush_stdio();
        // Taken before the fork: the child must not lock what another thread here may hold.
        // It also makes the authkey first, so that parent and child share it.
        const auto who = detail::identity_of(*st_);
        pid_t pid = platform::fork();
        if (pid < 0) platform::throw_errno("fork");
        if (pid == 0) detail::become_child_and_run(who, [this] { run(); });
        auto [pidfd, status_fd] = detail::pidfd_or_discard(pid);
        adopt_child(pid, pidfd, status_fd);
        return;
    }
    detail::SpawnTarget target = spawn_target(method);
    if (method == StartMethod::spawn) {
        pid_t pid = detail::popen_spawn(detail::identity_of(st), target);
        auto [pidfd, status_fd] = detail::pidfd_or_discard(pid);
        adopt_child(pid, pidfd, status_fd);
        return;
    }
    if (st.die_with_parent)
        throw ProcessError(
            "die_with_parent is not available with the forkserver start method (the server, not this "
            "process, is the child's parent): use fork or spawn");
    platform::Fd pidfd, status_fd;
    pid_t pid = detail::forkserver_start(detail::make_payload(detail::identity_of(st), target), target.args.fds, pidfd,
                                         status_fd);
    adopt_child(pid, pidfd.release(), status_fd.release());
}

detail::SpawnTarget Process::spawn_target(StartMethod method) const {
    detail::SpawnTarget target;
    std::string why;
    if (typeid(*this) != typeid(Process)) {
        why = "it is a subclass of Process: its run() cannot be found again in a fresh program image";
    } else if (!target_) {
        why = "it has no target";
    } else {
        why = target_->to_spawn(target);
    }
    if (!why.empty())
        throw ProcessError("cannot start " + st_->name + " with the " + std::string(to_string(method)) +
                           " start method: " + why +
                           ". Use a plain function (or a lambda without captures) with serializable "
                           "arguments, or the fork start method.");
    return target;
}

void Process::adopt_child(pid_t pid, int pidfd, int status_fd) {
    auto& st = *st_;
    {
        std::lock_guard lock(st.m);
        st.pid = pid;
        st.pidfd = platform::Fd(pidfd);
        st.status_fd = platform::Fd(status_fd);
        st.started = true;
    }
    {
        auto& s = detail::this_process();
        std::lock_guard lock(s.m);
        s.children.push_back(st_);
    }
    // As Python: the parent lets go of the target and its arguments, so that, for example, a
    // Connection passed to the child is not kept open here.
    target_.reset();
}

void Process::join() {
    join(Timeout::never());
}

bool Process::join(Timeout timeout) {
    auto& st = started();
    if (!detail::wait_exit(st, timeout.deadline())) return false;
    detail::forget(&st);
    return true;
}

bool Process::is_alive() {
    auto& st = state();
    if (!st.started || st.parent_pid != platform::getpid()) return false;
    return !st.try_reap();
}

std::optional<int> Process::exitcode() {
    auto& st = state();
    if (!st.started || st.parent_pid != platform::getpid()) return std::nullopt;
    st.try_reap();
    std::lock_guard lock(st.m);
    return st.exitcode;
}

void Process::send_signal(int sig) {
    auto& st = started();
    std::lock_guard lock(st.m);
    if (!st.exitcode && st.pidfd.valid()) platform::pidfd_signal(st.pidfd.get(), sig);
}

void Process::terminate() {
    send_signal(SIGTERM);
}

void Process::kill() {
    send_signal(SIGKILL);
}

void Process::interrupt() {
    send_signal(SIGINT);
}

void Process::close() {
    if (!st_ || st_->closed) return;
    auto& st = *st_;
    if (st.started && st.parent_pid == platform::getpid() && !st.try_reap())
        throw ValueError("cannot close a process while it is still running: call join() or terminate() first");
    std::lock_guard lock(st.m);
    st.pidfd.reset();
    st.status_fd.reset();
    st.closed = true;
}

ProcessInfo current_process() {
    auto& s = detail::this_process();
    return ProcessInfo(s.name, platform::getpid(), s.daemon, detail::process_authkey());
}

void remember_authkey(const std::string& address, const std::string& key) {
    auto& s = detail::this_process();
    std::lock_guard lock(s.m);
    s.known_keys[address] = key;
}

std::optional<std::string> authkey_for(const std::string& address) {
    auto& s = detail::this_process();
    std::lock_guard lock(s.m);
    auto it = s.known_keys.find(address);
    if (it == s.known_keys.end()) return std::nullopt;
    return it->second;
}

void set_authkey(std::string key) {
    if (key.empty()) throw ValueError("an authkey cannot be empty");
    auto& s = detail::this_process();
    std::lock_guard lock(s.m);
    s.authkey = std::move(key);
}

std::optional<ProcessInfo> parent_process() {
    auto& s = detail::this_process();
    if (!s.is_child) return std::nullopt;
    return ProcessInfo(s.parent_name, s.parent_pid, false);
}

std::vector<Process> active_children() {
    std::vector<Process> out;
    for (auto& c : detail::live_children()) out.push_back(Process(c));
    return out;
}

namespace {

// MPROCESS_CPU_COUNT, when it is a positive number.
std::optional<int> cpu_count_override() {
    const char* v = std::getenv("MPROCESS_CPU_COUNT");
    if (!v || !*v) return std::nullopt;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (*end != '\0' || n <= 0 || n > 1 << 20) return std::nullopt;
    return static_cast<int>(n);
}

}  // namespace

int cpu_count() {
    if (auto n = cpu_count_override()) return *n;
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

int process_cpu_count() {
    if (auto n = cpu_count_override()) return *n;
    int n = platform::allowed_cpus();
    if (const auto quota = platform::cgroup_cpu_quota())
        n = std::min(n, std::max(1, static_cast<int>(std::ceil(*quota - 1e-9))));
    return std::max(n, 1);
}

void exit(int code) {
    if (detail::this_process().is_child) throw SystemExit{code};
    std::exit(code);
}

}  // namespace mprocess
