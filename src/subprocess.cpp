// SPDX-License-Identifier: Apache-2.0
#include "mprocess/subprocess.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>

#include "platform/exec.hpp"
#include "platform/posix.hpp"

namespace mprocess::subprocess {

namespace {

constexpr std::size_t read_chunk = std::size_t{64} * 1024;

// Our end of a child's output pipe, and the bytes read from it but not yet handed out.
struct Source {
    const char* name{};
    platform::Fd fd{};  // closed at end of file
    bool piped{false};
    std::string buffered{};

    bool open() const noexcept { return fd.valid(); }

    // One read of whatever is there (the descriptor is non-blocking).
    void read_available() {
        char chunk[read_chunk];
        const long r = platform::read_some(fd.get(), chunk, sizeof chunk);
        if (r > 0) {
            buffered.append(chunk, static_cast<std::size_t>(r));
        } else if (r == 0) {
            fd.reset();
        } else if (errno != EAGAIN) {
            platform::throw_errno(std::string("read from the child's ") + name);
        }
    }

    // Blocks until more bytes are buffered (true) or the end of file is reached (false).
    bool fill() {
        const std::size_t before = buffered.size();
        while (open() && buffered.size() == before) {
            platform::wait_ready(fd.get(), POLLIN, std::nullopt);
            read_available();
        }
        return buffered.size() > before;
    }

    std::string take(std::size_t n) {
        n = std::min(n, buffered.size());
        std::string out = buffered.substr(0, n);
        buffered.erase(0, n);
        return out;
    }

    std::string read_all() {
        while (fill()) {
        }
        return std::exchange(buffered, {});
    }

    std::string read(std::size_t n) {
        while (buffered.size() < n && fill()) {
        }
        return take(n);
    }

    std::string readline() {
        std::size_t scanned = 0;
        for (;;) {
            if (auto nl = buffered.find('\n', scanned); nl != std::string::npos) return take(nl + 1);
            scanned = buffered.size();
            if (!fill()) return take(buffered.size());
        }
    }
};

std::vector<std::string> environment_strings(const Environment& env) {
    std::vector<std::string> out;
    out.reserve(env.size());
    for (const auto& [name, value] : env) {
        if (name.empty() || name.find('=') != std::string::npos || name.find('\0') != std::string::npos)
            throw ValueError("illegal environment variable name: '" + name + "'");
        out.push_back(std::string(name).append("=").append(value));
    }
    return out;
}

// The PATH the program is looked up in: the child's, which is ours unless env replaces it.
std::optional<std::string> search_path(const PopenOptions& options) {
    if (options.env) {
        auto it = options.env->find("PATH");
        return it == options.env->end() ? std::nullopt : std::optional<std::string>(it->second);
    }
    const char* ours = std::getenv("PATH");
    return ours ? std::optional<std::string>(ours) : std::nullopt;
}

ExecError exec_error(const platform::ExecFailure& failure, const std::string& program, const PopenOptions& options) {
    const std::string reason = std::strerror(failure.error);
    switch (failure.step) {
        case platform::ExecFailure::chdir: {
            const std::string dir = options.cwd ? options.cwd->string() : std::string();
            return ExecError(failure.error,
                             "cannot change to directory '" + dir + "' to run '" + program + "': " + reason, dir);
        }
        case platform::ExecFailure::redirect:
            return ExecError(failure.error,
                             "cannot set up stdin, stdout and stderr to run '" + program + "': " + reason, program);
        case platform::ExecFailure::exec:
            break;
    }
    return ExecError(failure.error, "cannot run '" + program + "': " + reason, program);
}

}  // namespace

struct Popen::State {
    std::vector<std::string> args;
    pid_t pid = 0;
    platform::Fd pidfd;  // closed once reaped
    std::optional<int> returncode;

    platform::Fd in;  // our end of the stdin pipe
    bool in_piped = false;
    Source out{"stdout"};
    Source err{"stderr"};

    // communicate() keeps its progress here, so that a call after TimeoutExpired goes on.
    bool communicating = false;
    std::string input;
    std::size_t input_sent = 0;

    bool try_reap() {
        if (returncode) return true;
        returncode = platform::reap(pid, false);
        if (returncode) pidfd.reset();
        return returncode.has_value();
    }

    bool wait_until(const platform::Deadline& deadline) {
        while (!try_reap()) {
            if (!platform::wait_ready(pidfd.get(), POLLIN, deadline)) return try_reap();
        }
        return true;
    }

    // The child's end of its stream `target` (0, 1, 2) as `r` says; ours, for a pipe, is kept here.
    platform::Fd child_end(const Redirect& r, int target) {
        switch (r.kind()) {
            case Redirect::Kind::inherit:
            case Redirect::Kind::stdout_:
                return {};
            case Redirect::Kind::devnull:
                return platform::open_above_stdio("/dev/null", target == 0 ? O_RDONLY : O_WRONLY);
            case Redirect::Kind::file:
                return platform::open_above_stdio(r.path(), target == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC);
            case Redirect::Kind::fd:
                return platform::dup_above_stdio(r.fileno());
            case Redirect::Kind::pipe:
                break;
        }
        auto [read_end, write_end] = platform::make_pipe();
        if (target == 0) {
            platform::set_blocking(write_end, false);
            in = std::move(write_end);
            in_piped = true;
            return std::move(read_end);
        }
        Source& s = target == 1 ? out : err;
        platform::set_blocking(read_end, false);
        s.fd = std::move(read_end);
        s.piped = true;
        return std::move(write_end);
    }

    Source& source(Source& s) {
        if (!s.piped)
            throw ValueError(std::string(s.name) + " is not a pipe: start the child with " + s.name + "_ = PIPE");
        return s;
    }

    int stdin_fd() {
        if (!in_piped) throw ValueError("stdin is not a pipe: start the child with stdin_ = PIPE");
        if (!in.valid()) throw ValueError("stdin is closed");
        return in.get();
    }

    void start_communication(std::optional<std::string> data) {
        if (communicating) {
            if (data) throw ValueError("cannot send input after starting communication");
            return;
        }
        if (data && !data->empty() && !in_piped) throw ValueError("input needs stdin_ = PIPE");
        communicating = true;
        if (data && !data->empty())
            input = std::move(*data);
        else
            in.reset();
    }

    void end_input() {
        in.reset();
        input = {};
        input_sent = 0;
    }

    // Writes as much input as the pipe takes now.
    void send_input() {
        const long r = platform::write_some(in.get(), input.data() + input_sent, input.size() - input_sent);
        if (r > 0) input_sent += static_cast<std::size_t>(r);
        // A child that stops reading early is not an error, as in Python: it gets no more input.
        if (r < 0 && errno == EPIPE) return end_input();
        if (r < 0 && errno != EAGAIN) platform::throw_errno("write to the child's stdin");
        if (input_sent == input.size()) end_input();
    }

    // Serves stdin, stdout and stderr as they become ready until all are closed; false if the
    // deadline passed first.
    bool pump(const platform::Deadline& deadline) {
        enum Stream { to_stdin, from_stdout, from_stderr };
        for (;;) {
            pollfd fds[3];
            Stream streams[3];
            std::size_t n = 0;
            if (in.valid()) {
                fds[n] = {in.get(), POLLOUT, 0};
                streams[n++] = to_stdin;
            }
            if (out.open()) {
                fds[n] = {out.fd.get(), POLLIN, 0};
                streams[n++] = from_stdout;
            }
            if (err.open()) {
                fds[n] = {err.fd.get(), POLLIN, 0};
                streams[n++] = from_stderr;
            }
            if (n == 0) return true;
            if (platform::poll_until(fds, n, deadline) == 0) return false;
            for (std::size_t i = 0; i < n; ++i) {
                if (fds[i].revents == 0) continue;
                switch (streams[i]) {
                    case to_stdin:
                        send_input();
                        break;
                    case from_stdout:
                        out.read_available();
                        break;
                    case from_stderr:
                        err.read_available();
                        break;
                }
            }
            // A child that keeps writing must not keep us past the deadline.
            if (deadline && platform::Clock::now() > *deadline) return !in.valid() && !out.open() && !err.open();
        }
    }
};

Popen::Popen(std::vector<std::string> args, PopenOptions options) : st_(std::make_unique<State>()) {
    if (args.empty()) throw ValueError("Popen needs a program: args is empty");
    if (options.stdin_.kind() == Redirect::Kind::stdout_ || options.stdout_.kind() == Redirect::Kind::stdout_)
        throw ValueError("STDOUT is only valid for stderr_");
    auto& st = *st_;

    platform::ExecPlan plan;
    // The child's ends: closed here when the constructor returns or throws, so only the child keeps them.
    const platform::Fd child_in = st.child_end(options.stdin_, 0);
    const platform::Fd child_out = st.child_end(options.stdout_, 1);
    const platform::Fd child_err = st.child_end(options.stderr_, 2);
    plan.stdio[0] = child_in.get();
    plan.stdio[1] = child_out.get();
    plan.stdio[2] = child_err.get();
    plan.stderr_to_stdout = options.stderr_.kind() == Redirect::Kind::stdout_;
    plan.candidates = platform::exec_candidates(args[0], options.path_search, search_path(options));
    if (options.env) plan.env = environment_strings(*options.env);
    if (options.cwd) plan.cwd = options.cwd->string();
    plan.argv = args;

    auto started = platform::fork_exec(plan);
    if (started.failure) throw exec_error(*started.failure, args[0], options);
    st.pid = started.pid;
    st.pidfd = std::move(started.pidfd);
    st.args = std::move(args);
}

Popen::Popen(Popen&&) noexcept = default;

Popen& Popen::operator=(Popen&& other) noexcept {
    if (this != &other) {
        finish();
        st_ = std::move(other.st_);
    }
    return *this;
}

Popen::~Popen() {
    finish();
}

void Popen::finish() noexcept {
    if (!st_) return;
    // As leaving Python's `with Popen(...)`: the child sees end of file / a broken pipe, then is waited for.
    st_->in.reset();
    st_->out.fd.reset();
    st_->err.fd.reset();
    try {
        st_->wait_until(std::nullopt);
    } catch (...) {
        try {
            platform::reap(st_->pid, true);
        } catch (...) {
        }
    }
    st_.reset();
}

Popen::State& Popen::state() const {
    if (!st_) throw ValueError("this Popen has been moved from");
    return *st_;
}

const std::vector<std::string>& Popen::args() const {
    return state().args;
}
pid_t Popen::pid() const {
    return state().pid;
}
std::optional<int> Popen::returncode() const {
    return state().returncode;
}

std::optional<int> Popen::poll() {
    auto& st = state();
    st.try_reap();
    return st.returncode;
}

int Popen::wait(Timeout timeout) {
    auto& st = state();
    if (!st.wait_until(timeout.deadline())) throw TimeoutExpired(st.args, timeout);
    return *st.returncode;
}

void Popen::send_signal(int sig) {
    auto& st = state();
    if (st.try_reap()) return;
    platform::pidfd_signal(st.pidfd.get(), sig);
}

void Popen::terminate() {
    send_signal(SIGTERM);
}
void Popen::kill() {
    send_signal(SIGKILL);
}

void Popen::write(std::string_view data) {
    const int fd = state().stdin_fd();
    while (!data.empty()) {
        const long r = platform::write_some(fd, data.data(), data.size());
        if (r >= 0) {
            data.remove_prefix(static_cast<std::size_t>(r));
        } else if (errno == EAGAIN) {
            platform::wait_ready(fd, POLLOUT, std::nullopt);
        } else if (errno == EPIPE) {
            throw BrokenPipeError("the child has closed its stdin");
        } else {
            platform::throw_errno("write to the child's stdin");
        }
    }
}

void Popen::close_stdin() {
    auto& st = state();
    if (!st.in_piped) throw ValueError("stdin is not a pipe: start the child with stdin_ = PIPE");
    st.in.reset();
}

std::string Popen::read() {
    return state().source(st_->out).read_all();
}
std::string Popen::read(std::size_t n) {
    return state().source(st_->out).read(n);
}
std::string Popen::readline() {
    return state().source(st_->out).readline();
}
std::string Popen::read_stderr() {
    return state().source(st_->err).read_all();
}
std::string Popen::read_stderr(std::size_t n) {
    return state().source(st_->err).read(n);
}
std::string Popen::readline_stderr() {
    return state().source(st_->err).readline();
}

Output Popen::communicate(std::optional<std::string> input, Timeout timeout) {
    auto& st = state();
    st.start_communication(std::move(input));
    const auto deadline = timeout.deadline();
    if (!st.pump(deadline) || !st.wait_until(deadline))
        throw TimeoutExpired(st.args, timeout, st.out.buffered, st.err.buffered);
    return {std::exchange(st.out.buffered, {}), std::exchange(st.err.buffered, {})};
}

void CompletedProcess::check_returncode() const {
    if (returncode != 0) throw CalledProcessError(returncode, args, stdout_, stderr_);
}

CompletedProcess run(std::vector<std::string> args, RunOptions options) {
    if (options.input) {
        if (options.stdin_.kind() != Redirect::Kind::inherit) throw ValueError("stdin_ and input cannot both be used");
        options.stdin_ = PIPE;
    }
    if (options.capture_output) {
        if (options.stdout_.kind() != Redirect::Kind::inherit || options.stderr_.kind() != Redirect::Kind::inherit)
            throw ValueError("stdout_ and stderr_ cannot be used with capture_output");
        options.stdout_ = PIPE;
        options.stderr_ = PIPE;
    }
    Popen p(args, {.stdin_ = std::move(options.stdin_),
                   .stdout_ = std::move(options.stdout_),
                   .stderr_ = std::move(options.stderr_),
                   .cwd = std::move(options.cwd),
                   .env = std::move(options.env),
                   .path_search = options.path_search});
    Output out;
    try {
        out = p.communicate(std::move(options.input), options.timeout);
    } catch (const TimeoutExpired&) {
        p.kill();
        p.wait();
        throw;
    } catch (...) {
        p.kill();  // the destructor reaps it
        throw;
    }
    CompletedProcess done{std::move(args), *p.returncode(), std::move(out.stdout_), std::move(out.stderr_)};
    if (options.check) done.check_returncode();
    return done;
}

std::string check_output(std::vector<std::string> args, RunOptions options) {
    if (options.stdout_.kind() != Redirect::Kind::inherit) throw ValueError("stdout_ cannot be used with check_output");
    if (!options.capture_output) options.stdout_ = PIPE;
    options.check = true;
    return run(std::move(args), std::move(options)).stdout_;
}

}  // namespace mprocess::subprocess
