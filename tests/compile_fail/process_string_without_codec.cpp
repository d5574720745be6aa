// SPDX-License-Identifier: Apache-2.0
// process.hpp alone carries raw values and handles; a string argument needs the codec, and the
// error says which header brings it.
#include <mprocess/process.hpp>

#include <string>

void target(std::string) {}

int main() {
    mprocess::Process p(target, std::string("x"));
}
