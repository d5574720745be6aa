// SPDX-License-Identifier: Apache-2.0
// q.get(0.5) would mean block = true in Python's signature: it must not compile.
#include <mprocess/queue.hpp>

int main() {
    mprocess::Queue<int> q;
    return q.get(0.5);
}
