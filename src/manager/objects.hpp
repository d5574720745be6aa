// SPDX-License-Identifier: Apache-2.0
// The manager's shared objects, as the server keeps them: each a mutex, its items as encoded
// messages, and a call(method, arguments) that the server's connection threads make.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "manager/protocol.hpp"
#include "mprocess/connection.hpp"
#include "mprocess/detail/manager_protocol.hpp"
#include "mprocess/serialize.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess::detail {

// An error for the caller, with Python's name for it.
struct Fail {
    std::string type, message;
};

// What a method needs besides its arguments: who calls, and whether to give up waiting.
class Caller {
public:
    Caller(Connection& conn, std::atomic<bool>& stopping, std::uint64_t id)
        : conn_(conn), stopping_(stopping), id_(id) {}
    // The client left, or the server stops. A client sends its next request only once it has
    // the reply (proxies never pipeline), so a connection readable while its call waits shows
    // end of file, or a client that broke the protocol: either way the call ends.
    bool gone() { return stopping_.load() || conn_.poll(0.0); }
    std::uint64_t id() const noexcept { return id_; }
    // The object the call is on: if it is released meanwhile, a waiting call ends.
    void watch(const std::atomic<bool>* released) noexcept { released_ = released; }

    // Waits on cv until pred or the timeout (false then); Fail if the client or server goes.
    template <class Pred>
    bool wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, const Timeout& timeout, Pred pred) {
        if (pred()) return true;
        if (timeout.duration().count() == 0) return false;  // not blocking
        const auto end = timeout.deadline();
        while (!pred()) {
            if (released_ && released_->load())
                throw Fail{"KeyError", "the object was released while this call waited"};
            if (end && std::chrono::steady_clock::now() >= *end) return false;
            cv.wait_for(lock, kLook);
            if (!pred()) {
                lock.unlock();
                const bool left = gone();
                lock.lock();
                if (left) throw Fail{"EOFError", "the caller or the server went away while waiting"};
            }
        }
        return true;
    }

private:
    Connection& conn_;
    std::atomic<bool>& stopping_;
    std::uint64_t id_;
    const std::atomic<bool>* released_ = nullptr;
};

inline Timeout timeout_of(const Results& a, std::size_t i) {
    const auto ns = std::chrono::nanoseconds(decode<std::int64_t>(a.at(i)));
    return ns == ns.max() ? forever : Timeout(ns);
}

class Object {
public:
    virtual ~Object() = default;
    virtual Results call(Op method, const Results& args, Caller& caller) = 0;
    // Python's name for its type, in errors.
    virtual std::string_view python_name() const = 0;
    virtual void left(std::uint64_t /*connection*/) {}
    virtual void wake_all() {}
    std::atomic<bool> released{false};

    [[noreturn]] void no_method(std::string_view method) const {
        throw Fail{"AttributeError",
                   "'" + std::string(python_name()) + "' object has no method '" + std::string(method) + "'"};
    }
};

// A new object of the kind of that name, from its constructor's arguments.
std::unique_ptr<Object> make_kind(const std::string& name, const Results& args);

}  // namespace mprocess::detail
