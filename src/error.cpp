// SPDX-License-Identifier: Apache-2.0
// The constructors of the errors that build their own message (error.hpp).
#include "mprocess/error.hpp"

#include <chrono>
#include <sstream>

namespace mprocess {

OSError::OSError(int err, const std::string& what) : Error(what), code_(err, std::generic_category()) {}

BufferTooShort::BufferTooShort(std::string message, std::size_t capacity)
    : Error("buffer too short: the message is " + std::to_string(message.size()) + " bytes, the buffer has room for " +
            std::to_string(capacity)),
      message_(std::move(message)) {}

WorkerLost::WorkerLost(pid_t pid, int exitcode)
    : Error("worker " + std::to_string(pid) +
            (exitcode < 0 ? " was killed by signal " + std::to_string(-exitcode)
                          : " exited with code " + std::to_string(exitcode)) +
            " while running the task"),
      pid_(pid),
      signal_(exitcode < 0 ? -exitcode : 0),
      exitcode_(exitcode) {}

namespace subprocess {
namespace {

// Python's repr of a list of str, as its messages show commands: ['sleep', '10'].
std::string repr(const std::vector<std::string>& cmd) {
    std::string s = "[";
    for (std::size_t i = 0; i < cmd.size(); ++i) s += (i ? ", '" : "'") + cmd[i] + "'";
    return s + "]";
}

std::string seconds(Timeout t) {
    std::ostringstream os;
    os << std::chrono::duration<double>(t.duration()).count();
    return os.str();
}

}  // namespace

ExecError::ExecError(int err, const std::string& what, std::string filename)
    : OSError(err, what), filename_(std::move(filename)) {}

TimeoutExpired::TimeoutExpired(std::vector<std::string> cmd, Timeout timeout, std::string stdout_data,
                               std::string stderr_data)
    : TimeoutError("Command '" + repr(cmd) + "' timed out after " + seconds(timeout) + " seconds"),
      cmd_(std::move(cmd)),
      timeout_(timeout),
      out_(std::move(stdout_data)),
      err_(std::move(stderr_data)) {}

CalledProcessError::CalledProcessError(int returncode, std::vector<std::string> cmd, std::string stdout_data,
                                       std::string stderr_data)
    : SubprocessError("Command '" + repr(cmd) + "' " +
                      (returncode < 0 ? "died with signal " + std::to_string(-returncode) + "."
                                      : "returned non-zero exit status " + std::to_string(returncode) + ".")),
      returncode_(returncode),
      cmd_(std::move(cmd)),
      out_(std::move(stdout_data)),
      err_(std::move(stderr_data)) {}

}  // namespace subprocess

}  // namespace mprocess
