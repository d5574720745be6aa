// SPDX-License-Identifier: Apache-2.0
// A program whose child creates a named SharedMemory block and is killed with SIGKILL before it
// can unlink it. Meanwhile another child attaches to the block and closes it, which must not
// unlink it. Usage: shm_creator NAME METHOD [COUNT]. Prints "attached ok" and "alive after attach"
// on success, and exits; the test then checks that the block goes once this program has ended.
// With a COUNT, the child first creates COUNT - 1 more blocks, NAME-1 to NAME-<COUNT - 1>, and
// lets go of them without unlinking: they must go too.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

void creator(std::string name, int count, mp::Event ready) {
    for (int i = 1; i < count; ++i) mp::SharedMemory(name + "-" + std::to_string(i), true, 4096).close();
    mp::SharedMemory shm(name, true, 4096);
    std::memcpy(shm.buf().data(), "hello", 6);
    ready.set();
    for (;;) ::pause();
}

void attacher(std::string name) {
    mp::SharedMemory shm(name);
    if (std::strcmp(reinterpret_cast<const char*>(shm.buf().data()), "hello") != 0) mp::exit(2);
    shm.close();
}

int main(int argc, char** argv) {
    mp::freeze_support(argc, argv);
    if (argc < 3) return 64;
    const std::string name = argv[1];
    auto ctx = mp::get_context(argv[2]);
    mp::Event ready;
    const int count = argc > 3 ? std::atoi(argv[3]) : 1;
    auto c = ctx.Process(creator, name, count, ready);
    c.start();
    if (!ready.wait(60.0)) return 3;
    auto a = ctx.Process(attacher, name);
    a.start();
    a.join();
    if (a.exitcode() != 0) return 4;
    std::puts("attached ok");
    mp::SharedMemory again(name);  // an attacher that has gone did not take the name with it
    std::puts("alive after attach");
    again.close();
    c.kill();
    c.join();
    return 0;
}
