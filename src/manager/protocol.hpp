// SPDX-License-Identifier: Apache-2.0
// The manager's protocol, for its server (server.cpp) and its clients (client.cpp); the kinds and
// methods a call names are detail/manager_protocol.hpp.
//
// A call is one request and one reply on a Client connection: (object id, method, encoded
// arguments) -> (status, error type, error message, encoded results). Each client thread has its
// own connection (a blocking get() holds only its own), made again in a child process. The server
// serves each connection in its own thread; objects keep items as encoded messages. A waiting
// call looks every 100 ms whether its client is still there, so a dead client's call ends.
//
// Admission. After the Listener's handshake the server speaks first, with a reply of the same
// shape: status 0, the connection is served; or status 1 and "ServerBusy", when the address
// serves kMaxConnections already (the client raises ServerBusy), and the server closes it. Only
// authenticated connections count, and each address (the TCP port, its local door) counts its
// own, so strangers that never finish a handshake cannot lock a client out.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "channel/handshake.hpp"

namespace mprocess::detail {

using Request = std::tuple<std::string, std::string, std::vector<std::string>>;
using Reply = std::tuple<std::uint8_t, std::string, std::string, std::vector<std::string>>;
using Results = std::vector<std::string>;

constexpr auto kLook = std::chrono::milliseconds(100);  // how often a waiting call checks its client

inline bool is_unix_address(const std::string& a) {
    return !a.empty() && (a[0] == '@' || a[0] == '/' || a[0] == '.' || a.rfind("unix:", 0) == 0);
}

// The key of a TCP server's local door: derived from its key and the door's name, so that a
// handshake made for the door cannot be passed on to the TCP port (or to another door).
inline std::string door_key(const std::string& authkey, const std::string& door) {
    return hmac_sha256(authkey, "mprocess manager local door " + door);
}

inline std::string hex(const std::string& bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (char c : bytes) {
        const auto b = static_cast<unsigned char>(c);  // a byte, whatever char's signedness
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

}  // namespace mprocess::detail
