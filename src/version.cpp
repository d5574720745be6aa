// SPDX-License-Identifier: Apache-2.0
#include "mprocess/version.hpp"

namespace mprocess {

// The same generated header as the program's macros, but compiled into the library: a program
// loaded with another build of the shared library sees that build's version here.
std::string_view version() noexcept {
    return MPROCESS_VERSION_STRING;
}

}  // namespace mprocess
