// A program whose child creates a named SharedMemory block and is killed with SIGKILL before it
// can unlink it. Meanwhile another child attaches to the block and closes it, which must not
// unlink it. Usage: shm_creator NAME METHOD. Prints "attached ok" and "alive after attach" on
// success, and exits; the test then checks that the block goes once this program has ended.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

void creator(std::string name, mp::Event ready) {
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
    auto c = ctx.Process(creator, name, ready);
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
