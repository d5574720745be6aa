// SPDX-License-Identifier: Apache-2.0
// A queue of pointers would carry addresses into another process: it must not compile.
#include <mprocess/queue.hpp>

int main() {
    mprocess::Queue<int*> q;
    return q.empty() ? 0 : 1;
}
