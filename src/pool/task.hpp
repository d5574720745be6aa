// SPDX-License-Identifier: Apache-2.0
// A Pool task on the wire, and the TaskState machinery the cores complete tasks with.
//
// A task message is the length of its head, the head (invoker symbol, function symbol), then the
// encoded arguments; an answer is a status byte (0: result, 1: exception as (type, message)) and
// its payload. Arguments and results are never copied to be wrapped: a big map's chunks are
// megabytes.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <sys/types.h>

#include "start/code_symbol.hpp"
#include "mprocess/detail/pool_task.hpp"

namespace mprocess::detail {

// A task message's head for these symbols; the encoded arguments are appended to it.
std::string symbols_head(const Symbol& invoker, const Symbol& fn);
// In a worker: runs a task message; `answer` becomes its answer (its capacity kept, for the next).
void run_task_message(std::string_view message, std::string& answer);
// An answer that says the task failed with an exception of `type`.
std::string failure_answer(const std::string& type, const std::string& message);
bool answer_succeeded(std::string_view answer);
// Why a failed task's answer says it failed: "type: message".
std::string failure_of(std::string_view answer);

// Completes a task (the first call wins) and runs its hooks.
void finish(TaskState& st, std::string result, std::exception_ptr error);
// Completes st with a worker's answer; a failure becomes RemoteError(type, message, pid).
void finish_with_answer(TaskState& st, std::string answer, pid_t pid);
// Fails a task no worker has begun with CancelledError.
void cancel_unstarted(TaskState& st);

// The thread that runs a core's callbacks: a wait for one of its results there would never end.
void mark_callback_thread(const void* core) noexcept;
bool on_callback_thread(const void* core) noexcept;
// Runs a callback as the pool runs them: an exception is reported on stderr.
void run_callback(const std::function<void()>& fn) noexcept;

}  // namespace mprocess::detail
