// SPDX-License-Identifier: Apache-2.0
// Test support: scratch directories, and files that workers leave in them to say where they are.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace testing_support {

inline std::size_t files_in(const std::string& dir) {
    return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A fresh directory, removed at the end of the test program.
inline std::string scratch_dir() {
    static std::vector<std::filesystem::path> made;
    static struct Cleanup {
        ~Cleanup() {
            for (auto& d : made) std::filesystem::remove_all(d);
        }
    } cleanup;
    std::string tmpl = (std::filesystem::temp_directory_path() / "mprocess-pool-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    made.emplace_back(tmpl);
    return tmpl;
}

// Waits (up to 30 s) until dir holds n files.
inline void wait_for_files(const std::string& dir, std::size_t n) {
    const auto t0 = std::chrono::steady_clock::now();
    while (files_in(dir) < n) {
        ASSERT_LT(seconds_since(t0), 30.0) << "the workers never started their tasks";
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

// Pool tasks that say where they are. Leaves a file named after this worker in dir, then works for
// a minute.
inline int mark_then_sleep(std::string dir) {
    std::ofstream(dir + "/" + std::to_string(::getpid()));
    std::this_thread::sleep_for(std::chrono::minutes(1));
    return 60000;
}
// Leaves its mark in dir, then waits (up to a minute) for dir/open to appear.
inline int wait_for_gate(std::string dir) {
    std::ofstream(dir + "/" + std::to_string(::getpid()));
    for (int i = 0; i < 60000 && !std::filesystem::exists(dir + "/open"); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return 1;
}

}  // namespace testing_support
