// Errors named after Python's, all deriving from mprocess::Error.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

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
// not), or the handshake broke its protocol or took too long.
class AuthenticationError : public Error {
public:
    using Error::Error;
};

// A system call failed; carries errno.
class OSError : public Error {
public:
    OSError(int err, const std::string& what);
    int error_code() const noexcept { return errno_; }

private:
    int errno_;
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

// Thrown by mprocess::exit() inside a child to end it with a given exit code after unwinding.
// Deliberately not a std::exception, like Python's SystemExit is not an Exception, so that
// `catch (const std::exception&)` in user code does not swallow it.
struct SystemExit {
    int code;
};

}  // namespace mprocess
