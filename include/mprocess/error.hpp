// SPDX-License-Identifier: Apache-2.0
/// @file
/// Every error the library throws, in one header, named after Python's where Python has one. All
/// derive from mprocess::Error; their constructors are in src/error.cpp. The parts' own errors are
/// here too (and reach users through the part's header): Empty and Full (queue.hpp), WorkerLost,
/// BrokenPool and CancelledError (pool.hpp), AssertionError and BrokenBarrierError
/// (synchronize.hpp), and subprocess's (subprocess.hpp).
#pragma once

#include "mprocess/export.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "mprocess/timeout.hpp"

namespace mprocess {

/// Base of every error this library throws: `catch (const mp::Error&)` catches them all (but
/// SystemExit, which is not an error).
class MPROCESS_EXPORT Error : public std::runtime_error {
public:
    /// The message what() returns.
    using std::runtime_error::runtime_error;
};

/// Misuse of a Process (start twice, join before start, ...). Python: AssertionError / ProcessError.
class MPROCESS_EXPORT ProcessError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// An argument or object state that is not acceptable (Python: ValueError), such as a closed object.
class MPROCESS_EXPORT ValueError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// A wait with a timeout ended before what it waited for happened (Python's TimeoutError). The
/// object waited on is unchanged: the call can be made again.
class MPROCESS_EXPORT TimeoutError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// The peer closed the connection and no complete message is left to read.
class MPROCESS_EXPORT EOFError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// The peer is gone, so a send cannot be delivered.
class MPROCESS_EXPORT BrokenPipeError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// The other end of a Listener/Client connection did not prove it knows the authkey (or we did
/// not), or the handshake broke its protocol or took too long: from Client(), and from accept()
/// for the client that failed. Also a manager proxy's, when this process knows no key for its
/// server.
class MPROCESS_EXPORT AuthenticationError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// A server authenticated us but turned the connection away: it serves as many as it takes
/// ("server busy (1024 connections)", from a manager). Nothing is wrong with the key: try again
/// once some of its clients have gone.
class MPROCESS_EXPORT ServerBusy : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// A system call failed; carries errno.
class MPROCESS_EXPORT OSError : public Error {
public:
    /// The errno `err` and a message that says what was being done.
    OSError(int err, const std::string& what);
    /// Python's errno, as std::system_error carries it: compare with std::errc
    /// (`e.code() == std::errc::no_such_file_or_directory`); code().value() is the errno.
    const std::error_code& code() const noexcept { return code_; }

private:
    std::error_code code_;
};

/// Python's FileExistsError: an OSError with EEXIST (a name that is taken).
class MPROCESS_EXPORT FileExistsError : public OSError {
public:
    /// The message what() returns; code() is EEXIST.
    explicit FileExistsError(const std::string& what) : OSError(EEXIST, what) {}
};
/// Python's FileNotFoundError: an OSError with ENOENT (a name that is not there).
class MPROCESS_EXPORT FileNotFoundError : public OSError {
public:
    /// The message what() returns; code() is ENOENT.
    explicit FileNotFoundError(const std::string& what) : OSError(ENOENT, what) {}
};
/// Python's PermissionError, as an OSError with EACCES: not ours to use.
class MPROCESS_EXPORT PermissionError : public OSError {
public:
    /// The message what() returns; code() is EACCES.
    explicit PermissionError(const std::string& what) : OSError(EACCES, what) {}
};

/// recv_bytes_into() got a message larger than the buffer. Like Python, the whole message is
/// consumed and handed over here, so nothing is lost.
class MPROCESS_EXPORT BufferTooShort : public Error {
public:
    /// The whole message, and the room the buffer had (what() tells both sizes).
    BufferTooShort(std::string message, std::size_t capacity);
    /// The message that did not fit, whole (Python's e.args[0]).
    const std::string& message() const noexcept { return message_; }

private:
    std::string message_;
};

/// Bytes that do not decode: truncated, corrupt, or carrying trailing garbage.
class MPROCESS_EXPORT DecodeError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
    /// The error for a message whose `got` bytes should hold a `type` of `want` bytes.
    static DecodeError wrong_size(std::string_view type, std::size_t want, std::size_t got);
};

/// A well-formed message of another type than the one the receiver asked for.
class MPROCESS_EXPORT TypeMismatch : public DecodeError {
public:
    /// The message what() returns.
    using DecodeError::DecodeError;
    /// The error for `bytes` received as a `type` (type tag `tag`) that carry another tag, or too
    /// few bytes to carry one.
    static TypeMismatch for_message(std::string_view type, std::uint64_t tag, std::string_view bytes);
};

/// An exception raised in another process and re-raised here: by a task in a Pool's worker, or by a
/// call on a manager's shared object. It carries the exception's type name, its message, and where
/// it was raised ("worker 1234", "manager 127.0.0.1:5000").
class MPROCESS_EXPORT RemoteError : public Error {
public:
    /// what() is "type: message (in source)". pid: the worker's, or 0 for a manager.
    RemoteError(std::string type, std::string message, std::string source, pid_t pid = 0)
        : Error(type + ": " + message + " (in " + source + ")"),
          type_(std::move(type)),
          message_(std::move(message)),
          source_(std::move(source)),
          pid_(pid) {}
    /// "KeyError", "mprocess::ValueError", "std::out_of_range", ...
    const std::string& type_name() const noexcept { return type_; }
    /// The exception's own message (its what(), or Python's str(e)), without the type or source.
    const std::string& message() const noexcept { return message_; }
    /// Where it was raised: `"worker <pid>"` or `"manager <address>"`.
    const std::string& source() const noexcept { return source_; }
    /// The worker's pid, or 0 if a manager raised it.
    pid_t pid() const noexcept { return pid_; }

private:
    std::string type_, message_, source_;
    pid_t pid_;
};

/// A remote KeyError (a manager dict's missing key, a released object).
///
/// The kinds of RemoteError a caller can catch by type, as Python re-raises the original exception:
/// `except KeyError:` is `catch (const mp::RemoteKeyError&)`. They are named Remote... because
/// mp::ValueError is already the library's own, local error. Which type names become which is
/// make_remote_error's table.
class MPROCESS_EXPORT RemoteKeyError : public RemoteError {
public:
    /// As RemoteError's.
    using RemoteError::RemoteError;
};
/// A remote IndexError or std::out_of_range (a manager list's index out of range).
class MPROCESS_EXPORT RemoteIndexError : public RemoteError {
public:
    /// As RemoteError's.
    using RemoteError::RemoteError;
};
/// A remote ValueError, mprocess::ValueError or std::invalid_argument.
class MPROCESS_EXPORT RemoteValueError : public RemoteError {
public:
    /// As RemoteError's.
    using RemoteError::RemoteError;
};
/// A remote TypeError.
class MPROCESS_EXPORT RemoteTypeError : public RemoteError {
public:
    /// As RemoteError's.
    using RemoteError::RemoteError;
};
/// A remote AttributeError (a Namespace without that name, a method the object has not).
class MPROCESS_EXPORT RemoteAttributeError : public RemoteError {
public:
    /// As RemoteError's.
    using RemoteError::RemoteError;
};

/// The RemoteError for an exception of type `type`, as the subclass that names it. The table is
/// exact names, so that where an error lands never depends on the sending side's class hierarchy:
/// Python's names (what a manager sends), the library's own ValueError, and the two standard
/// exceptions whose meaning is Python's (std::invalid_argument, std::out_of_range, as pybind11
/// translates them). Everything else is a plain RemoteError whose type_name() tells.
inline std::exception_ptr make_remote_error(std::string type, std::string message, std::string source, pid_t pid = 0) {
    auto as = [&]<class E>(std::type_identity<E>) {
        return std::make_exception_ptr(E(std::move(type), std::move(message), std::move(source), pid));
    };
    const std::string_view t = type;
    if (t == "KeyError") return as(std::type_identity<RemoteKeyError>());
    if (t == "IndexError" || t == "std::out_of_range") return as(std::type_identity<RemoteIndexError>());
    if (t == "ValueError" || t == "mprocess::ValueError" || t == "std::invalid_argument")
        return as(std::type_identity<RemoteValueError>());
    if (t == "TypeError") return as(std::type_identity<RemoteTypeError>());
    if (t == "AttributeError") return as(std::type_identity<RemoteAttributeError>());
    return as(std::type_identity<RemoteError>());
}

// Pool and ProcessPoolExecutor (pool.hpp, executor.hpp).
/// Who ran a Pool's task and what happened to the worker: what WorkerLost and TaskTimeout tell.
struct TaskReport {
    std::string task{};                  ///< which task: "task 12", "item 17 of map", "items 0..124 of map"
    std::string worker{};                ///< the worker's name, "ForkPoolWorker-3" (an MPI rank's: "rank 2")
    pid_t pid = 0;                       ///< the worker's pid
    std::uint64_t peak_rss = 0;          ///< the worker's peak resident memory in bytes; 0 if unknown
    std::vector<std::string> earlier{};  ///< why each earlier attempt failed, for a task that was retried
};

/// The worker running a task died before it could answer.
class MPROCESS_EXPORT WorkerLost : public Error {
public:
    /// Why the worker ended.
    enum class Reason {
        signal,        ///< a signal the pool did not send (SIGKILL from the OOM killer, SIGSEGV, ...)
        exit,          ///< it exited (the task called exit(), say)
        memory_limit,  ///< the pool stopped it: it passed PoolOptions::max_memory_per_child
        timeout,       ///< the pool stopped it: its task ran past its timeout (see TaskTimeout)
    };
    /// The worker's pid and its exit code as Process::exitcode() gives it (what() tells both).
    WorkerLost(pid_t pid, int exitcode);
    /// With everything the pool knows; `reason` signal or exit follows from the exit code.
    WorkerLost(int exitcode, Reason reason, TaskReport report);
    /// The dead worker's pid.
    pid_t pid() const noexcept { return report_.pid; }
    /// The signal that killed it (SIGKILL, SIGSEGV, ...), or 0 if it exited.
    int signal() const noexcept { return signal_; }
    /// The signal's name, "SIGKILL"; empty if it exited.
    std::string signal_name() const;
    /// As Process::exitcode(): -signal, or the code it exited with.
    int exitcode() const noexcept { return exitcode_; }
    /// Why it ended.
    Reason reason() const noexcept { return reason_; }
    /// The task, the worker's name, its peak memory, the earlier attempts.
    const TaskReport& report() const noexcept { return report_; }

private:
    int signal_;
    int exitcode_;
    Reason reason_;
    TaskReport report_;
};

/// A Pool's task ran past its timeout (TaskOptions::timeout, PoolOptions::task_timeout): its
/// worker was stopped and replaced, and the other tasks went on.
class MPROCESS_EXPORT TaskTimeout : public TimeoutError {
public:
    /// The task that ran `seconds` without an answer, and the worker it ran in.
    TaskTimeout(double seconds, TaskReport report);
    /// The timeout it passed, in seconds.
    double seconds() const noexcept { return seconds_; }
    /// The task, the worker that ran it, the earlier attempts.
    const TaskReport& report() const noexcept { return report_; }

private:
    double seconds_;
    TaskReport report_;
};

/// The other way to meet a dead worker, concurrent.futures' way: the pool is broken for good.
/// Every task not yet finished, and every later submit, fails with BrokenPool.
class MPROCESS_EXPORT BrokenPool : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// A task taken back before it started (concurrent.futures' CancelledError).
class MPROCESS_EXPORT CancelledError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

// Queues (queue.hpp).
/// Python's queue.Empty: get() found no item (at once, or within its timeout).
class MPROCESS_EXPORT Empty : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// Python's queue.Full: put() found a bounded queue full (at once, or within its timeout).
class MPROCESS_EXPORT Full : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

// Synchronization (synchronize.hpp).
/// Python's AssertionError where multiprocessing uses assertions: releasing an RLock this thread
/// does not own, notifying or waiting on a Condition without holding its lock.
class MPROCESS_EXPORT AssertionError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// threading.BrokenBarrierError: the barrier was aborted, reset, or a wait timed out.
class MPROCESS_EXPORT BrokenBarrierError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// Python's subprocess module (subprocess.hpp): Popen, run() and check_output(), and their errors.
namespace subprocess {

/// Base of the errors about a finished command (Python's SubprocessError). TimeoutExpired derives
/// from mprocess::TimeoutError instead, so it is not a SubprocessError here.
class MPROCESS_EXPORT SubprocessError : public Error {
public:
    /// The message what() returns.
    using Error::Error;
};

/// The child could not run the program (or set itself up for it). code() is the child's
/// errno: ENOENT for a missing program or cwd, EACCES for a file that is not executable, ...
/// filename() is the program, or the cwd when changing to it failed.
class MPROCESS_EXPORT ExecError : public OSError {
public:
    /// The child's errno `err`, a message, and the file it concerns.
    ExecError(int err, const std::string& what, std::string filename);
    /// The program, or the cwd when changing to it failed (Python's e.filename).
    const std::string& filename() const noexcept { return filename_; }

private:
    std::string filename_;
};

/// wait() or communicate() ran out of time. The child still runs. After communicate(), the output
/// read so far is here, and calling communicate() again continues without losing any of it.
class MPROCESS_EXPORT TimeoutExpired : public TimeoutError {
public:
    /// The command, the timeout that passed, and the output read so far.
    TimeoutExpired(std::vector<std::string> cmd, Timeout timeout, std::string stdout_data = {},
                   std::string stderr_data = {});
    /// The command's argv, as given to Popen.
    const std::vector<std::string>& cmd() const noexcept { return cmd_; }
    /// The timeout that passed.
    Timeout timeout() const noexcept { return timeout_; }
    /// Python's alias of stdout_().
    const std::string& output() const noexcept { return out_; }
    /// The child's stdout read before the timeout (empty unless it was a pipe).
    const std::string& stdout_() const noexcept { return out_; }
    /// The child's stderr read before the timeout (empty unless it was a pipe).
    const std::string& stderr_() const noexcept { return err_; }

private:
    std::vector<std::string> cmd_;
    Timeout timeout_;
    std::string out_;
    std::string err_;
};

/// run(..., {.check = true}) or check_output() saw a non-zero return code.
class MPROCESS_EXPORT CalledProcessError : public SubprocessError {
public:
    /// The return code, the command, and its captured output (what() tells the code or signal).
    CalledProcessError(int returncode, std::vector<std::string> cmd, std::string stdout_data = {},
                       std::string stderr_data = {});
    /// The exit status, or -N after signal N.
    int returncode() const noexcept { return returncode_; }
    /// The command's argv, as given to run().
    const std::vector<std::string>& cmd() const noexcept { return cmd_; }
    /// Python's alias of stdout_().
    const std::string& output() const noexcept { return out_; }
    /// The child's captured stdout (empty unless captured).
    const std::string& stdout_() const noexcept { return out_; }
    /// The child's captured stderr (empty unless captured).
    const std::string& stderr_() const noexcept { return err_; }

private:
    int returncode_;
    std::vector<std::string> cmd_;
    std::string out_;
    std::string err_;
};

}  // namespace subprocess

/// Thrown by mprocess::exit() inside a child to end it with a given exit code after unwinding.
/// Deliberately not a std::exception, like Python's SystemExit is not an Exception, so that
/// `catch (const std::exception&)` in user code does not swallow it.
struct MPROCESS_EXPORT SystemExit {
    int code;  ///< the exit code the child ends with
};

}  // namespace mprocess
