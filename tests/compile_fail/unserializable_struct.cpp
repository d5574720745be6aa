// SPDX-License-Identifier: Apache-2.0
#include <mprocess/connection.hpp>
#include <string>

struct NotSerializable {
    std::string text;  // not trivially copyable, and no serialize() member
};

int main() {
    auto [a, b] = mprocess::Pipe();
    a.send(NotSerializable{"x"});
}
