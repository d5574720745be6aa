// SPDX-License-Identifier: Apache-2.0
// The lecture's process1.py: who am I, and who started me?
#include <filesystem>
#include <iostream>
#include <string>

#include <unistd.h>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

namespace {

// C++ has no __name__; the program's name plays that part. The forked child inherits it.
std::string module_name = "__main__";

void info(const std::string& title) {
    std::cout << title << "\n"
              << " module name: " << module_name << "\n"
              << " parent process: " << ::getppid() << "\n"
              << " process id: " << ::getpid() << "\n";
}

void f(const std::string& name) {
    info("function f");
    std::cout << "hello " << name << "\n";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 0) module_name = std::filesystem::path(argv[0]).filename().string();
    info("main line");
    mp::Process p(f, std::string("bob"));
    p.start();
    p.join();
}
