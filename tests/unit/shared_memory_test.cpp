// SPDX-License-Identifier: Apache-2.0
#include <mprocess/process.hpp>
#include <mprocess/shared_memory.hpp>
#include <mprocess/subprocess.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <thread>

#include "helpers/children.hpp"
#include "helpers/other_user.hpp"

using testing_support::ChildrenTest;

namespace {

class SharedMemoryTest : public ChildrenTest {};
class SharedMemoryMethods : public testing_support::MethodTest {};

std::string unique_name(const char* what) {
    static int n = 0;
    return "mprocess-test-" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(++n);
}

// This process's resource tracker: a process of its own session (the tracker calls setsid()) whose
// descriptor 3 is the read end of a pipe this process writes to; 0 if there is none (yet: a new
// tracker takes a moment to call setsid() and settle its descriptors).
pid_t find_tracker_now() {
    namespace fs = std::filesystem;
    std::set<std::string> our_pipes;
    std::error_code ec;
    for (const auto& fd : fs::directory_iterator("/proc/self/fd", ec)) {
        const auto target = fs::read_symlink(fd.path(), ec).string();
        if (!ec && target.rfind("pipe:", 0) == 0) our_pipes.insert(target);
    }
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
        const std::string name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        const pid_t pid = std::stoi(name);
        if (pid == ::getpid() || ::getsid(pid) != pid) continue;
        const auto target = fs::read_symlink(entry.path() / "fd" / "3", ec).string();
        if (!ec && our_pipes.count(target)) return pid;
    }
    return 0;
}

pid_t find_tracker() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    pid_t pid = find_tracker_now();
    while (pid == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        pid = find_tracker_now();
    }
    return pid;
}

bool in_dev_shm(const std::string& name) {
    struct stat st {};
    return ::stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

}  // namespace

TEST_F(SharedMemoryTest, BadArgumentsGiveThePythonErrors) {
    EXPECT_THROW(mp::SharedMemory(std::nullopt, true, 0), mp::ValueError);
    EXPECT_THROW(mp::SharedMemory(std::nullopt, false), mp::ValueError);
    EXPECT_THROW(mp::SharedMemory(unique_name("missing")), mp::FileNotFoundError);
    EXPECT_THROW(mp::SharedMemory("a/b", true, 10), mp::ValueError);
    const std::string name = unique_name("twice");
    mp::SharedMemory first(name, true, 100);
    try {
        mp::SharedMemory second(name, true, 100);
        FAIL() << "created twice";
    } catch (const mp::FileExistsError& e) {
        EXPECT_EQ(e.code(), std::errc::file_exists);
    }
    first.unlink();
    EXPECT_FALSE(in_dev_shm(name));
}

// The tracker killed by someone: the next registration must neither end this process (SIGPIPE from
// a pipe with no reader) nor fail; a new tracker takes over, and blocks made from then on are
// tracked again.
TEST_F(SharedMemoryTest, AKilledResourceTrackerIsReplacedAndKillsNobody) {
    mp::SharedMemory first(unique_name("before"), true, 4096);  // starts the tracker if need be
    const pid_t tracker = find_tracker();
    ASSERT_GT(tracker, 0) << "no resource tracker found";
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, tracker, 0));
    ASSERT_GE(pidfd, 0);
    ASSERT_EQ(::kill(tracker, SIGKILL), 0);
    const bool ended = !mp::wait({pidfd}, 30.0).empty();
    ::close(pidfd);
    ASSERT_TRUE(ended) << "the tracker outlived SIGKILL";

    const std::string name = unique_name("after");
    mp::SharedMemory second(name, true, 4096);
    const pid_t replacement = find_tracker();
    EXPECT_GT(replacement, 0) << "no tracker after the first one died";
    EXPECT_NE(replacement, tracker);
    second.unlink();
    first.unlink();
    EXPECT_FALSE(in_dev_shm(name));
}

TEST_F(SharedMemoryTest, ASecondUnlinkOfTheSameNameRaisesFileNotFoundError) {
    const std::string name = unique_name("unlinked-twice");
    mp::SharedMemory shm(name, true, 100);
    mp::SharedMemory copy = shm;
    shm.unlink();
    EXPECT_FALSE(in_dev_shm(name));
    try {
        shm.unlink();
        FAIL() << "a second unlink was silent";
    } catch (const mp::OSError& e) {  // FileNotFoundError is an OSError, with ENOENT
        EXPECT_NE(dynamic_cast<const mp::FileNotFoundError*>(&e), nullptr) << e.what();
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    EXPECT_THROW(copy.unlink(), mp::FileNotFoundError);
    // The name is free for a new block, tracked and unlinked as any other.
    mp::SharedMemory again(name, true, 100);
    EXPECT_TRUE(in_dev_shm(name));
    again.unlink();
    EXPECT_FALSE(in_dev_shm(name));
    EXPECT_THROW(again.unlink(), mp::FileNotFoundError);
}

TEST_F(SharedMemoryTest, AnAnonymousBlockIsZeroedAndClosesForEveryCopy) {
    mp::SharedMemory shm(std::nullopt, true, 10000);
    EXPECT_EQ(shm.size(), 10000u);
    EXPECT_TRUE(shm.name().empty());
    for (std::byte b : shm.buf()) ASSERT_EQ(b, std::byte{0});
    mp::SharedMemory copy = shm;
    shm.close();
    EXPECT_THROW(copy.buf(), mp::ValueError);
    shm.unlink();  // nothing to remove: fine
}

// A root process must not take a block that another user made (and may have left writable to
// all) for its own: attaching checks the owner, and only an explicit option accepts another.
TEST_F(SharedMemoryTest, AttachingToABlockAnotherUserOwnsIsRefusedUnlessAllowed) {
    if (const auto why = testing_support::cannot_become_another_user(); !why.empty()) GTEST_SKIP() << why;
    const std::string name = unique_name("stranger");
    const std::string path = "/" + name;
    struct Unlink {
        std::string path;
        ~Unlink() { ::shm_unlink(path.c_str()); }
    } unlink{path};
    const int made = testing_support::as_nobody([&] {
        const int fd = ::shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0666);
        if (fd < 0) return 1;
        const bool ok = ::fchmod(fd, 0666) == 0 && ::ftruncate(fd, 64) == 0;
        ::close(fd);
        return ok ? 0 : 2;
    });
    ASSERT_EQ(made, 0) << "nobody could not make a block";
    try {
        mp::SharedMemory stranger(name);
        ADD_FAILURE() << "attached to a block another user owns";
    } catch (const mp::OSError& e) {
        EXPECT_EQ(e.code(), std::errc::permission_denied);
        const std::string what = e.what();
        EXPECT_NE(what.find("'nobody'"), std::string::npos) << what;
        EXPECT_NE(what.find(name), std::string::npos) << what;
        EXPECT_NE(what.find("allow_other_owner"), std::string::npos) << what;
    }
    EXPECT_THROW(mp::SharedMemory{name}, mp::PermissionError);
    mp::SharedMemory allowed(name, false, 0, {.allow_other_owner = true});
    EXPECT_EQ(allowed.size(), 64u);
    allowed.close();
}

TEST_P(SharedMemoryMethods, NamedAndAnonymousBlocksAreSharedWithChildren) {
    const std::string name = unique_name("shared");
    mp::SharedMemory named(name, true, 64);
    mp::SharedMemory anon(std::nullopt, true, 64);
    std::memcpy(named.buf().data(), "parent", 7);
    auto p = ctx().Process(
        [](std::string name, mp::SharedMemory anon) {
            mp::SharedMemory by_name(name);  // attach by name, in another process
            if (std::strcmp(reinterpret_cast<const char*>(by_name.buf().data()), "parent") != 0) mp::exit(2);
            std::memcpy(by_name.buf().data(), "child", 6);
            std::memcpy(anon.buf().data(), "anon", 5);
            by_name.close();
        },
        name, anon);
    p.start();
    p.join();
    ASSERT_EQ(p.exitcode(), 0);
    EXPECT_STREQ(reinterpret_cast<const char*>(named.buf().data()), "child");
    EXPECT_STREQ(reinterpret_cast<const char*>(anon.buf().data()), "anon");
    EXPECT_TRUE(in_dev_shm(name));  // the child only attached: it did not unlink
    named.unlink();
    EXPECT_FALSE(in_dev_shm(name));
    EXPECT_THROW(mp::SharedMemory{name}, mp::FileNotFoundError);
}

TEST_P(SharedMemoryMethods, ABlockWhoseCreatorWasKilledIsGoneOnceTheProgramHasEnded) {
    const std::string name = unique_name("killed");
    auto r = mp::subprocess::run({MPROCESS_TEST_SHM_HELPER, name, GetParam()},
                                 {.timeout = 120.0, .stdout_ = mp::subprocess::PIPE});
    ASSERT_EQ(r.returncode, 0) << r.stdout_;
    EXPECT_NE(r.stdout_.find("attached ok\nalive after attach\n"), std::string::npos) << r.stdout_;
    // The helper and its children have ended; its tracker unlinks the name as soon as it sees
    // that. Look for up to 30 s: what is checked is that it goes, not how fast.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (in_dev_shm(name) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_FALSE(in_dev_shm(name)) << "left behind: /dev/shm/" << name;
    if (in_dev_shm(name)) ::unlink(("/dev/shm/" + name).c_str());
}

// More blocks than any fixed table the tracker might keep: every one goes.
TEST_P(SharedMemoryMethods, FourThousandTwoHundredBlocksWhoseCreatorWasKilledAreAllGone) {
    constexpr int kBlocks = 4200;
    const std::string name = unique_name("many");
    auto block = [&](int i) { return i == 0 ? name : name + "-" + std::to_string(i); };
    struct Cleanup {  // what a failure leaves behind
        std::function<std::string(int)> block;
        ~Cleanup() {
            for (int i = 0; i < kBlocks; ++i) ::shm_unlink(("/" + block(i)).c_str());
        }
    } cleanup{block};
    auto r = mp::subprocess::run({MPROCESS_TEST_SHM_HELPER, name, GetParam(), std::to_string(kBlocks)},
                                 {.timeout = 120.0, .stdout_ = mp::subprocess::PIPE});
    ASSERT_EQ(r.returncode, 0) << r.stdout_;
    auto left = [&] {
        int n = 0;
        for (int i = 0; i < kBlocks; ++i) n += in_dev_shm(block(i));
        return n;
    };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (left() != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(left(), 0) << "blocks left behind in /dev/shm";
}

TEST_P(SharedMemoryMethods, UnlinkAfterAnotherProcessUnlinkedTheNameRaisesFileNotFoundError) {
    const std::string name = unique_name("unlinked-elsewhere");
    mp::SharedMemory shm(name, true, 64);
    auto p = ctx().Process([](std::string name) { mp::SharedMemory(name).unlink(); }, name);
    p.start();
    p.join();
    ASSERT_EQ(p.exitcode(), 0);
    EXPECT_FALSE(in_dev_shm(name));
    EXPECT_THROW(shm.unlink(), mp::FileNotFoundError);
    EXPECT_EQ(shm.buf().size(), 64u);  // the memory itself lives on until closed
    shm.close();
}

INSTANTIATE_TEST_SUITE_P(EveryStartMethod, SharedMemoryMethods, testing::ValuesIn(testing_support::start_methods()),
                         [](const auto& info) { return info.param; });
