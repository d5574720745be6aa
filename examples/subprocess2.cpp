// SPDX-License-Identifier: Apache-2.0
// The lecture's subprocess2.py: start another program with pipes to its stdin and stdout, send it
// a line, read its answer. The other program is child2, built next to this one.
#include <filesystem>
#include <iostream>
#include <string>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;
using mp::subprocess::PIPE;
using mp::subprocess::Popen;

int main() {
    // Python finds child2.py in the current directory; we look next to our own executable, so the
    // example runs from anywhere.
    const auto child = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "child2";

    Popen p1({child.string()}, {.stdin_ = PIPE, .stdout_ = PIPE});

    // send data to subprocess
    p1.write("this is from master");
    p1.close_stdin();  // the child's input() sees end of line at end of file

    // read data from subprocess
    std::cout << "reading from child" << std::endl;
    std::string ss = p1.readline();
    std::cout << ss << std::endl;

    std::cout << "exit main" << std::endl;
    p1.wait();
}
