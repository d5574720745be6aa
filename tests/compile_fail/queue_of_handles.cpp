// SPDX-License-Identifier: Apache-2.0
// A handle (a queue, a lock) travels as a Process argument, inside containers too, but never
// inside a message: a queue of vectors of queues must not compile. The check looks inside the
// container, where cereal's own functions would accept any element.
#include <vector>

#include <mprocess/queue.hpp>

int main() {
    mprocess::Queue<std::vector<mprocess::Queue<int>>> q;
    return q.empty() ? 0 : 1;
}
