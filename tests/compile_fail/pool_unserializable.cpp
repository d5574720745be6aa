// SPDX-License-Identifier: Apache-2.0
// A Pool task whose argument or result cannot be serialized must not compile.
#include <mprocess/pool.hpp>

struct Handle {  // not trivially copyable, no serialize(): cannot travel
    Handle() = default;
    Handle(const Handle&) {}
    int fd = -1;
};

int use(Handle h) {
    return h.fd;
}

int main() {
    mprocess::Pool pool(1);
    return pool.apply(use, Handle{});
}
