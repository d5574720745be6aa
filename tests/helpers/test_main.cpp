// SPDX-License-Identifier: Apache-2.0
// The tests' main: the entry guard first, as every program using spawn or forkserver needs.
#include <gtest/gtest.h>
#include <mprocess/context.hpp>

int main(int argc, char** argv) {
    mprocess::freeze_support(argc, argv);
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
