// SPDX-License-Identifier: Apache-2.0
// Test support: every test that starts processes reaps them, even when it fails.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

namespace testing_support {

// Children of this process that are zombies (exited, not reaped), found through /proc.
inline int zombie_children() {
    int zombies = 0;
    DIR* d = ::opendir("/proc");
    if (!d) return 0;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
        std::string line;
        if (!std::getline(f, line)) continue;
        auto close_paren = line.rfind(')');
        if (close_paren == std::string::npos) continue;
        std::istringstream rest(line.substr(close_paren + 2));
        char state = 0;
        pid_t ppid = 0;
        rest >> state >> ppid;
        if (ppid == ::getpid() && state == 'Z') ++zombies;
    }
    ::closedir(d);
    return zombies;
}

// Kills and reaps whatever a test left running, then checks that no zombie remains.
class ChildrenTest : public ::testing::Test {
protected:
    void TearDown() override {
        for (auto& p : mp::active_children()) {
            p.kill();
            p.join();
        }
        EXPECT_EQ(zombie_children(), 0) << "a child was left unreaped";
    }
};

// A test that runs once per start method: create processes with ctx().Process(...).
class MethodTest : public ChildrenTest, public ::testing::WithParamInterface<std::string> {
protected:
    mp::Context ctx() const { return mp::get_context(GetParam()); }
    mp::StartMethod method() const { return mp::parse_start_method(GetParam()); }
};

inline std::vector<std::string> start_methods() {
    return mp::get_all_start_methods();
}

}  // namespace testing_support
