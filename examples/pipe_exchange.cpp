// SPDX-License-Identifier: Apache-2.0
// The lecture's exercise "Pipes": parent and child exchange objects over a Pipe.
// The parent sends objects of several types, the child sends each one back transformed, and an
// empty message (the sentinel, Python's None) tells the child to stop.
#include <algorithm>
#include <cctype>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <mprocess/mprocess.hpp>

namespace mp = mprocess;

namespace {

// A user type travels once it says which fields make it up.
struct Student {
    std::string name;
    int score = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(name, score);
    }
};

// Python's recv() returns whatever was sent; in C++ the receiver names the type, so the messages
// that may come are listed here. std::monostate is the sentinel.
using Message = std::variant<std::monostate, int, std::string, std::vector<int>, std::map<std::string, int>, Student>;

// Transformations the child applies: numbers are squared, text is upper-cased.
int transform(int x) {
    return x * x;
}
std::string transform(std::string s) {
    std::ranges::transform(s, s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return s;
}
std::vector<int> transform(std::vector<int> v) {
    for (auto& x : v) x = transform(x);
    return v;
}
std::map<std::string, int> transform(std::map<std::string, int> m) {
    for (auto& [key, value] : m) value = transform(value);
    return m;
}
Student transform(Student s) {
    return {transform(s.name), transform(s.score)};
}
std::monostate transform(std::monostate s) {
    return s;
}

// Printing in Python's repr style, so the output reads like the Python exercise's.
void print(std::ostream& os, std::monostate) {
    os << "None";
}
void print(std::ostream& os, int x) {
    os << x;
}
void print(std::ostream& os, const std::string& s) {
    os << '\'' << s << '\'';
}
void print(std::ostream& os, const std::vector<int>& v) {
    os << '[';
    for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
    os << ']';
}
void print(std::ostream& os, const std::map<std::string, int>& m) {
    os << '{';
    const char* sep = "";
    for (const auto& [key, value] : m) os << std::exchange(sep, ", ") << '\'' << key << "': " << value;
    os << '}';
}
void print(std::ostream& os, const Student& s) {
    os << "Student(name='" << s.name << "', score=" << s.score << ')';
}

std::string repr(const Message& m) {
    std::ostringstream os;
    std::visit([&](const auto& x) { print(os, x); }, m);
    return os.str();
}

void child(mp::Connection conn) {
    for (;;) {
        auto msg = conn.recv<Message>();
        if (std::holds_alternative<std::monostate>(msg)) break;
        conn.send(std::visit([](auto x) { return Message(transform(std::move(x))); }, std::move(msg)));
    }
    std::cout << "child:  got the sentinel, closing my end and exiting" << std::endl;
    conn.close();
}

}  // namespace

int main() {
    auto [parent_conn, child_conn] = mp::Pipe();
    mp::Process p(child, child_conn);
    p.start();
    // As in Python: drop our copy of the child's end, or the pipe never looks closed to us.
    child_conn.close();

    const std::vector<Message> objects = {
        7,
        std::string("hello pipe"),
        std::vector<int>{1, 2, 3, 4},
        std::map<std::string, int>{{"x", 2}, {"y", 3}},
        Student{"alice", 9},
    };
    for (const auto& obj : objects) {
        parent_conn.send(obj);
        std::cout << "parent: sent " << repr(obj) << ", got back " << repr(parent_conn.recv<Message>()) << std::endl;
    }

    parent_conn.send(Message{});  // the sentinel
    p.join();
    std::cout << "parent: child exited with code " << p.exitcode().value_or(-1) << std::endl;

    // Every copy of the other end is closed now: recv() reports end of file, as in Python.
    try {
        parent_conn.recv<Message>();
    } catch (const mp::EOFError& e) {
        std::cout << "parent: EOFError: " << e.what() << std::endl;
    }
}
