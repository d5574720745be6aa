// SPDX-License-Identifier: Apache-2.0
/// @file
/// subprocess: run other programs, as Python's subprocess module.
///
/// @code{.cpp}
/// namespace sp = mprocess::subprocess;
/// sp::Popen p({"sort"}, {.stdin_ = sp::PIPE, .stdout_ = sp::PIPE});
/// auto [out, err] = p.communicate("b\na\n");          // out == "a\nb\n"
///
/// auto r = sp::run({"ls", "-l"}, {.capture_output = true, .check = true});
/// std::string version = sp::check_output({"uname", "-r"});
/// @endcode
///
/// Names. stdin, stdout and stderr may be macros in C, so options and fields carry a trailing
/// underscore (stdin_, stdout_, stderr_), and Python's None for a stream is an empty string.
///
/// Starting. Popen forks and executes the program with the given argv (no shell). Every
/// descriptor Popen opens is close-on-exec, and the child marks all its descriptors above 2
/// close-on-exec too (inheritable ones of yours included), so the program inherits its stdin,
/// stdout and stderr and nothing else. If the program cannot be
/// run (not found, not executable, bad cwd) the constructor throws ExecError with the child's
/// errno, as Python raises FileNotFoundError or PermissionError; no child is left behind.
///
/// Lifetime. Every child is reaped. Destroying a Popen whose child still runs does what leaving a
/// Python `with Popen(...) as p:` block does: close our ends of its pipes (it sees end of file on
/// stdin, and SIGPIPE or EPIPE if it writes to us), then wait for it to exit. So a child that
/// ignores both runs on and the destructor waits for it: kill() it first if you do not want to
/// wait. run() kills the child when communicate() throws (a timeout included), as Python does.
///
/// Threads. A Popen is used by one thread at a time, like a Python file object. Starting children
/// from several threads at once is safe: between fork and exec the child makes only
/// async-signal-safe calls.
///
/// Writing to a child that has closed its stdin throws BrokenPipeError; the process never
/// receives SIGPIPE for it.
#pragma once

#include "mprocess/export.hpp"

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "mprocess/error.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess::subprocess {

/// Where a child's stdin, stdout or stderr goes. The default inherits ours.
class MPROCESS_EXPORT Redirect {
public:
    /// The kinds of place; PIPE, DEVNULL, STDOUT, file() and fd() make them.
    enum class Kind {
        inherit,  ///< ours (Python's None)
        pipe,     ///< a new pipe to this process (PIPE)
        devnull,  ///< /dev/null (DEVNULL)
        stdout_,  ///< for stderr: wherever stdout goes (STDOUT)
        file,     ///< a file by path (file())
        fd        ///< a descriptor of ours (fd())
    };

    /// Inherit ours.
    constexpr Redirect() noexcept = default;
    /// A place of that kind; file() and fd() are the way to the two that need more.
    constexpr explicit Redirect(Kind kind) noexcept : kind_(kind) {}

    /// The file at `path`: opened for reading as stdin, created or truncated as stdout or stderr.
    /// We open it, before the child starts, so a relative path is relative to our cwd, not the child's.
    static Redirect file(const std::filesystem::path& path) {
        Redirect r(Kind::file);
        r.path_ = path.string();
        return r;
    }
    /// Our open descriptor `fd` (the child gets a copy; ours stays open).
    static constexpr Redirect fd(int descriptor) noexcept {
        Redirect r(Kind::fd);
        r.fd_ = descriptor;
        return r;
    }

    /// Which kind of place it is.
    constexpr Kind kind() const noexcept { return kind_; }
    /// The descriptor of fd(); -1 for the other kinds.
    constexpr int fileno() const noexcept { return fd_; }
    /// The path of file(); empty for the other kinds.
    const std::string& path() const noexcept { return path_; }

private:
    Kind kind_ = Kind::inherit;
    int fd_ = -1;
    std::string path_;
};

/// A new pipe; our end is used through Popen's write/read/communicate.
inline const Redirect PIPE{Redirect::Kind::pipe};
/// /dev/null.
inline const Redirect DEVNULL{Redirect::Kind::devnull};
/// stderr only: wherever the child's stdout goes.
inline const Redirect STDOUT{Redirect::Kind::stdout_};

/// A complete environment; `env` replaces ours entirely, as in Python.
using Environment = std::map<std::string, std::string>;

/// Python's keyword arguments of Popen(...).
struct MPROCESS_EXPORT PopenOptions {
    Redirect stdin_{};   ///< where the child reads from (default: our stdin)
    Redirect stdout_{};  ///< where the child writes its output (default: our stdout)
    Redirect stderr_{};  ///< where the child writes its errors (default: our stderr; STDOUT: with stdout)
    std::optional<std::filesystem::path> cwd{};  ///< the child's working directory; relative programs start there
    std::optional<Environment> env{};            ///< default: inherit ours
    bool path_search{true};  ///< look a program without '/' up in PATH (env's PATH when env is given)
};

/// The two outputs of communicate(); empty for a stream that is not a pipe.
struct Output {
    std::string stdout_;  ///< all the child wrote to its stdout
    std::string stderr_;  ///< all the child wrote to its stderr
};

/// A running (or finished) child program. Move-only; a moved-from Popen throws ValueError.
class MPROCESS_EXPORT Popen {
public:
    /// Starts args[0] with arguments args. Throws ExecError if it cannot run, ValueError for
    /// unusable options (empty args, STDOUT for stdin or stdout), OSError if a redirect file or
    /// descriptor cannot be opened.
    explicit Popen(std::vector<std::string> args, PopenOptions options = {});
    /// Takes over the child; the moved-from Popen throws ValueError.
    Popen(Popen&&) noexcept;
    /// The replaced child is finished as by the destructor, then the other's is taken over.
    Popen& operator=(Popen&&) noexcept;
    /// Closes our ends of the pipes and waits for a child that still runs (see subprocess.hpp).
    ~Popen();

    /// The command's argv, as given.
    const std::vector<std::string>& args() const;
    /// The child's pid.
    pid_t pid() const;

    /// Exit status, or -N after signal N; empty until the child has been waited for.
    std::optional<int> returncode() const;
    /// The return code if the child has ended (it is reaped then), without blocking.
    std::optional<int> poll();
    /// Waits for the child to end and returns its return code; TimeoutExpired if it does not in time.
    int wait(Timeout timeout = forever);

    /// Signals go through a pidfd, so they never reach a recycled pid; after the child has been
    /// reaped they do nothing.
    void send_signal(int sig);
    /// send_signal(SIGTERM).
    void terminate();
    /// send_signal(SIGKILL).
    void kill();

    /// stdin_ = PIPE: writes everything (blocking while the pipe is full); BrokenPipeError if the
    /// child has closed its end. ValueError if stdin is not a pipe, as for every call on a pipe
    /// the child was not started with.
    void write(std::string_view data);
    /// Closes our end: the child reads end of file.
    void close_stdin();

    /// stdout_ = PIPE: everything until end of file.
    std::string read();
    /// stdout_ = PIPE: at most n bytes (fewer only at end of file).
    std::string read(std::size_t n);
    /// stdout_ = PIPE: one line with its newline (without one at end of file, empty once nothing is
    /// left).
    std::string readline();
    /// read() for stderr_ = PIPE.
    std::string read_stderr();
    /// read(n) for stderr_ = PIPE.
    std::string read_stderr(std::size_t n);
    /// readline() for stderr_ = PIPE.
    std::string readline_stderr();

    /// Sends `input` to stdin (which is then closed; with no input it is closed at once), reads
    /// stdout and stderr until end of file, and waits for the child to end. All pipes are served
    /// together as they become ready, so large data in every direction cannot deadlock. A child
    /// that closes stdin early just gets no more input. TimeoutExpired carries the output so far;
    /// call communicate() again (without input) to continue.
    Output communicate(std::optional<std::string> input = std::nullopt, Timeout timeout = forever);

private:
    struct State;
    State& state() const;
    void finish() noexcept;

    std::unique_ptr<State> st_;
};

/// Python's keyword arguments of run(): its own, then Popen's.
struct MPROCESS_EXPORT RunOptions {
    std::optional<std::string> input{};          ///< sent to stdin (implies stdin_ = PIPE)
    bool capture_output{false};                  ///< stdout_ = stderr_ = PIPE
    Timeout timeout{forever};                    ///< on expiry the child is killed and TimeoutExpired thrown
    bool check{false};                           ///< a non-zero return code throws CalledProcessError
    Redirect stdin_{};                           ///< as PopenOptions::stdin_ (not with input)
    Redirect stdout_{};                          ///< as PopenOptions::stdout_ (not with capture_output)
    Redirect stderr_{};                          ///< as PopenOptions::stderr_ (not with capture_output)
    std::optional<std::filesystem::path> cwd{};  ///< as PopenOptions::cwd
    std::optional<Environment> env{};            ///< as PopenOptions::env
    bool path_search{true};                      ///< as PopenOptions::path_search
};

/// What run() returns: the command, its return code, and the output it captured.
struct MPROCESS_EXPORT CompletedProcess {
    std::vector<std::string> args;  ///< the command's argv
    int returncode = 0;             ///< the exit status, or -N after signal N
    std::string stdout_;            ///< empty unless captured
    std::string stderr_;            ///< empty unless captured

    /// Throws CalledProcessError if returncode is not 0.
    void check_returncode() const;
};

/// Runs the command to its end: Popen + communicate(input, timeout). ValueError for options that
/// contradict each other (input with stdin_, capture_output with stdout_ or stderr_); the errors
/// of Popen, TimeoutExpired (the child killed first), and CalledProcessError with check.
MPROCESS_EXPORT CompletedProcess run(std::vector<std::string> args, RunOptions options = {});

/// run() with stdout captured and check on; returns stdout.
MPROCESS_EXPORT std::string check_output(std::vector<std::string> args, RunOptions options = {});

}  // namespace mprocess::subprocess
