// SPDX-License-Identifier: Apache-2.0
// The start method of a process, pool or manager whose options name none: the one
// set_start_method() set (or a child inherited from its parent), else fork. context.cpp keeps it.
#pragma once

#include <optional>

#include "mprocess/start_method.hpp"

namespace mprocess::detail {

// The method set by set_start_method(), if one was.
std::optional<StartMethod> start_method_if_set();
// The method a process, pool or manager starts with: its own, else the default.
StartMethod start_method_or_default(const std::optional<StartMethod>& chosen);
// In a child: the method it was started with becomes its own, as set, as in Python, so that its
// children start the same way. None: nothing was chosen, the default stays unset.
void adopt_start_method(const std::optional<StartMethod>& method);

}  // namespace mprocess::detail
