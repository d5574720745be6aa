// SPDX-License-Identifier: Apache-2.0
// A Pool task returning a pointer would hand back an address in the worker: it must not compile.
#include <mprocess/pool.hpp>

const char* name(int) {
    return "x";
}

int main() {
    mprocess::Pool pool(1);
    return pool.map(name, std::vector<int>{1}).size() == 1 ? 0 : 1;
}
