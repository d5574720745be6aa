// SPDX-License-Identifier: Apache-2.0
// The constructors of the errors that build their own message (error.hpp).
#include "mprocess/error.hpp"

#include <signal.h>
#include <string.h>

#include <chrono>
#include <cstdio>
#include <iterator>
#include <sstream>

namespace mprocess {

OSError::OSError(int err, const std::string& what) : Error(what), code_(err, std::generic_category()) {}

BufferTooShort::BufferTooShort(std::string message, std::size_t capacity)
    : Error("buffer too short: the message is " + std::to_string(message.size()) + " bytes, the buffer has room for " +
            std::to_string(capacity)),
      message_(std::move(message)) {}

namespace {

std::string signal_name_of(int sig) {
    const char* abbrev = sig > 0 ? ::sigabbrev_np(sig) : nullptr;
    return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// 3.1 GiB, 512.0 MiB: memory as people read it.
std::string bytes_text(std::uint64_t n) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    std::size_t u = 0;
    while (v >= 1024 && u + 1 < std::size(units)) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

// "task 17 of map: worker ForkPoolWorker-3 (pid 4321)", as much as is known.
std::string who(const TaskReport& r) {
    std::string s = r.task.empty() ? "" : r.task + ": ";
    s += "worker " + (r.worker.empty() ? "" : r.worker + " ") + "(pid " + std::to_string(r.pid) + ")";
    return s;
}

std::string earlier_text(const TaskReport& r) {
    std::string s;
    for (std::size_t i = 0; i < r.earlier.size(); ++i)
        s += (i == 0 ? "; earlier attempts: " : "; ") + std::to_string(i + 1) + ") " + r.earlier[i];
    return s;
}

std::string loss_text(int exitcode, WorkerLost::Reason reason, const TaskReport& r) {
    std::string s = who(r);
    const std::string peak = r.peak_rss ? "peak RSS " + bytes_text(r.peak_rss) : "";
    switch (reason) {
        case WorkerLost::Reason::memory_limit:
            s += " was stopped: it passed the pool's memory limit" + (peak.empty() ? "" : " (" + peak + ")");
            break;
        case WorkerLost::Reason::timeout:
            s += " was stopped: its task ran past its timeout";
            break;
        case WorkerLost::Reason::exit:
            s += " exited with code " + std::to_string(exitcode) + " while running the task";
            break;
        case WorkerLost::Reason::signal:
            s += " was killed by " + signal_name_of(-exitcode);
            if (-exitcode == SIGKILL)
                s += " (not sent by the pool: likely the OOM killer" + (peak.empty() ? "" : ": " + peak) + ")";
            else if (!peak.empty())
                s += " (" + peak + ")";
            break;
    }
    return s + earlier_text(r);
}

WorkerLost::Reason reason_of(int exitcode) {
    return exitcode < 0 ? WorkerLost::Reason::signal : WorkerLost::Reason::exit;
}

}  // namespace

WorkerLost::WorkerLost(pid_t pid, int exitcode) : WorkerLost(exitcode, reason_of(exitcode), TaskReport{.pid = pid}) {}

WorkerLost::WorkerLost(int exitcode, Reason reason, TaskReport report)
    : Error(loss_text(exitcode, reason, report)),
      signal_(exitcode < 0 ? -exitcode : 0),
      exitcode_(exitcode),
      reason_(reason),
      report_(std::move(report)) {}

std::string WorkerLost::signal_name() const {
    return signal_ ? signal_name_of(signal_) : "";
}

TaskTimeout::TaskTimeout(double seconds, TaskReport report)
    : TimeoutError([&] {
          std::ostringstream os;
          os << (report.task.empty() ? "the task" : report.task) << " ran past its timeout of " << seconds
             << " s in worker " << (report.worker.empty() ? "" : report.worker + " ") << "(pid " << report.pid
             << "), which was stopped" << earlier_text(report);
          return os.str();
      }()),
      seconds_(seconds),
      report_(std::move(report)) {}

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
