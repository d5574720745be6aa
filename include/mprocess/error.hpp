// The errors the whole library shares, named after Python's where Python has one. The library's
// errors all derive from mprocess::Error, those of one part too: Empty and Full (queue.hpp),
// WorkerLost, BrokenPool and CancelledError (pool.hpp), AssertionError and BrokenBarrierError
// (synchronize.hpp), subprocess's (subprocess.hpp).
#pragma once

#include <cerrno>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <sys/types.h>

namespace mprocess {

// Base of every error this library throws.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Misuse of a Process (start twice, join before start, ...). Python: AssertionError / ProcessError.
class ProcessError : public Error {
public:
    using Error::Error;
};

// An argument or object state that is not acceptable (Python: ValueError), e.g. a closed object.
class ValueError : public Error {
public:
    using Error::Error;
};

class TimeoutError : public Error {
public:
    using Error::Error;
};

// The peer closed the connection and no complete message is left to read.
class EOFError : public Error {
public:
    using Error::Error;
};

// The peer is gone, so a send cannot be delivered.
class BrokenPipeError : public Error {
public:
    using Error::Error;
};

// The other end of a Listener/Client connection did not prove it knows the authkey (or we did
// not), or the handshake broke its protocol or took too long: from Client(), and from accept()
// for the client that failed. Also a manager proxy's, when this process knows no key for its
// server.
class AuthenticationError : public Error {
public:
    using Error::Error;
};

// A server authenticated us but turned the connection away: it serves as many as it takes
// ("server busy (1024 connections)", from a manager). Nothing is wrong with the key: try again
// once some of its clients have gone.
class ServerBusy : public Error {
public:
    using Error::Error;
};

// A system call failed; carries errno.
class OSError : public Error {
public:
    OSError(int err, const std::string& what);
    // Python's errno, as std::system_error carries it: compare with std::errc
    // (e.code() == std::errc::no_such_file_or_directory); code().value() is the errno.
    const std::error_code& code() const noexcept { return code_; }

private:
    std::error_code code_;
};

// Python's FileExistsError and FileNotFoundError, as OSErrors with EEXIST and ENOENT.
class FileExistsError : public OSError {
public:
    explicit FileExistsError(const std::string& what) : OSError(EEXIST, what) {}
};
class FileNotFoundError : public OSError {
public:
    explicit FileNotFoundError(const std::string& what) : OSError(ENOENT, what) {}
};
// Python's PermissionError, as an OSError with EACCES: not ours to use.
class PermissionError : public OSError {
public:
    explicit PermissionError(const std::string& what) : OSError(EACCES, what) {}
};

// recv_bytes_into() got a message larger than the buffer. Like Python, the whole message is
// consumed and handed over here, so nothing is lost.
class BufferTooShort : public Error {
public:
    BufferTooShort(std::string message, std::size_t capacity);
    const std::string& message() const noexcept { return message_; }

private:
    std::string message_;
};

// Bytes that do not decode: truncated, corrupt, or carrying trailing garbage.
class DecodeError : public Error {
public:
    using Error::Error;
};

// A well-formed message of another type than the one the receiver asked for.
class TypeMismatch : public DecodeError {
public:
    using DecodeError::DecodeError;
};

// An exception raised in another process and re-raised here: by a task in a Pool's worker, or by a
// call on a manager's shared object. It carries the exception's type name, its message, and where
// it was raised ("worker 1234", "manager 127.0.0.1:5000").
class RemoteError : public Error {
public:
    // pid: the worker's, or 0 for a manager.
    RemoteError(std::string type, std::string message, std::string source, pid_t pid = 0)
        : Error(type + ": " + message + " (in " + source + ")"),
          type_(std::move(type)),
          message_(std::move(message)),
          source_(std::move(source)),
          pid_(pid) {}
    // "KeyError", "mprocess::ValueError", "std::out_of_range", ...
    const std::string& type_name() const noexcept { return type_; }
    const std::string& message() const noexcept { return message_; }
    // Where it was raised: "worker <pid>" or "manager <address>".
    const std::string& source() const noexcept { return source_; }
    // The worker's pid, or 0 if a manager raised it.
    pid_t pid() const noexcept { return pid_; }

private:
    std::string type_, message_, source_;
    pid_t pid_;
};

// The kinds of RemoteError a caller can catch by type, as Python re-raises the original exception:
// `except KeyError:` is `catch (const mp::RemoteKeyError&)`. They are named Remote... because
// mp::ValueError is already the library's own, local error. Which type names become which is
// make_remote_error's table.
class RemoteKeyError : public RemoteError {
public:
    using RemoteError::RemoteError;
};
class RemoteIndexError : public RemoteError {
public:
    using RemoteError::RemoteError;
};
class RemoteValueError : public RemoteError {
public:
    using RemoteError::RemoteError;
};
class RemoteTypeError : public RemoteError {
public:
    using RemoteError::RemoteError;
};
class RemoteAttributeError : public RemoteError {
public:
    using RemoteError::RemoteError;
};

// The RemoteError for an exception of type `type`, as the subclass that names it. The table is
// exact names, so that where an error lands never depends on the sending side's class hierarchy:
// Python's names (what a manager sends), the library's own ValueError, and the two standard
// exceptions whose meaning is Python's (std::invalid_argument, std::out_of_range, as pybind11
// translates them). Everything else is a plain RemoteError whose type_name() tells.
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

// Thrown by mprocess::exit() inside a child to end it with a given exit code after unwinding.
// Deliberately not a std::exception, like Python's SystemExit is not an Exception, so that
// `catch (const std::exception&)` in user code does not swallow it.
struct SystemExit {
    int code;
};

}  // namespace mprocess
