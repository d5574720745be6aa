// SPDX-License-Identifier: Apache-2.0
#include <mprocess/serialize.hpp>

int main() {
    int x = 0;
    auto bytes = mprocess::encode(&x);
    (void)bytes;
}
