// SPDX-License-Identifier: Apache-2.0
// Bytes from a hostile peer: fed to the receiving side of a socket connection, whose frames are
// then decoded as several message types. An mprocess::Error is the expected answer to garbage;
// anything else (a crash, a sanitizer report, another exception, a hang) is a finding.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "channel/channel.hpp"
#include "mprocess/connection.hpp"
#include "channel/socket_channel.hpp"

namespace mp = mprocess;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    int sndbuf = 1 << 20;
    ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    for (std::size_t done = 0; done < size;) {
        const ssize_t n = ::send(sv[1], data + done, size - done, MSG_NOSIGNAL);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
    ::shutdown(sv[1], SHUT_WR);  // then end of file: no read waits forever
    auto ch = mp::detail::make_socket_channel(mp::platform::Fd(sv[0]), 1 << 16);
    mp::Connection conn = mp::detail::ConnectionAccess::wrap(mp::detail::as_channel(ch));
    for (int i = 0; i < 64; ++i) {
        try {
            switch (i % 5) {
                case 0:
                    conn.recv<std::string>();
                    break;
                case 1:
                    conn.recv<std::vector<int>>();
                    break;
                case 2:
                    conn.recv<std::map<std::string, std::vector<double>>>();
                    break;
                case 3:
                    conn.recv<std::tuple<int, std::string, std::optional<long>>>();
                    break;
                default:
                    conn.recv_bytes();
                    break;  // takes a frame the typed reads left
            }
        } catch (const mp::EOFError&) {
            break;
        } catch (const mp::Error&) {
        }
    }
    ::close(sv[1]);
    return 0;
}
