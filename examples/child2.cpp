// SPDX-License-Identifier: Apache-2.0
// The lecture's child2.py: the child half of subprocess2. It answers on stdout, closes it early,
// and keeps going, so the parent's readline() ends at that close, not at the child's exit.
#include <cstdio>
#include <iostream>
#include <string>

int main() {
    std::string s1;
    std::getline(std::cin, s1);  // Python's input()
    std::cerr << "child process running here\n";
    std::cout << "child responding: this is from child";
    std::cout.flush();
    std::fclose(stdout);  // sys.stdout.close(): the parent sees end of file now
    std::cerr << "end of child process\n";
}
