// SPDX-License-Identifier: Apache-2.0
// Code addresses that travel between processes running the same binary (spawn and forkserver
// children, pool workers, MPI ranks), and what a receiver agrees to run.
//
// An address travels as (object, build-id, offset): valid in every process that maps the same
// build of the object. A receiver resolves an entry point (the code it calls first, which decodes
// the arguments: spawn_entry, a pool invoker, a Barrier action's maker) only if this binary
// registered it at start-up (detail::entry_point), and a user function only if it lies in an
// executable segment of its object: a forged message names neither arbitrary code to enter nor
// data to jump to.
#pragma once

#include <cstdint>
#include <string>

namespace mprocess::detail {

struct Symbol {
    std::string object;  // empty: the program itself
    std::string build_id;
    std::uint64_t offset = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(object, build_id, offset);
    }
};

// Whether `code` was registered as an entry point (detail/entry_point.hpp).
bool is_entry_point(const void* code) noexcept;

// The symbol of a code address in this process.
Symbol code_symbol(const void* addr);

// The address of a symbol here: ProcessError if its object is not loaded, is another build, or
// the address is not a registered entry point (entry_address) or not code (function_address).
void* entry_address(const Symbol& s);
void* function_address(const Symbol& s);

}  // namespace mprocess::detail
