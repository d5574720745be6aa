// SPDX-License-Identifier: Apache-2.0
// A program that links mprocess, for the tests of who may make it start as a child.
//   start_channel payload fn|entry   writes to stdout a start-up payload that would run pwned():
//                                    "fn" names it as the function of a registered entry point (a
//                                    well-formed payload: only the channel can refuse it), "entry"
//                                    names it as the entry point itself (never registered)
//   start_channel                    main(): freeze_support(), then prints "main ran"
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include <mprocess/mprocess.hpp>

#include "start/popen.hpp"

namespace mp = mprocess;
namespace detail = mprocess::detail;

void pwned() {
    std::printf("PWNED\n");
    std::fflush(stdout);
}

// Shaped like an entry point, but not one.
void pwned_entry(mp::SpawnArgs&, void*) {
    pwned();
}

int write_payload(bool as_entry) {
    detail::Payload p;
    p.who.name = "forged";
    p.entry = as_entry ? detail::code_symbol(reinterpret_cast<const void*>(&pwned_entry))
                       : detail::code_symbol(
                             reinterpret_cast<const void*>(detail::entry_point<&detail::spawn_entry<void (*)()>>()));
    p.fn = detail::code_symbol(reinterpret_cast<const void*>(&pwned));
    const std::string bytes = mp::encode(p);
    const std::uint64_t nfds = 0, len = bytes.size();
    std::fwrite(&nfds, sizeof nfds, 1, stdout);
    std::fwrite(&len, sizeof len, 1, stdout);
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    if (argc == 3 && std::strcmp(argv[1], "payload") == 0) return write_payload(std::strcmp(argv[2], "entry") == 0);
    std::printf("main ran\n");
    return 0;
}
