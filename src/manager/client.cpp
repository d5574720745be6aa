// SPDX-License-Identifier: Apache-2.0
// The manager's clients: each thread's connection to each server (moved on to shared memory
// when the server is on this machine), calls, and BaseManager's side of them.
#include "mprocess/manager.hpp"

#include <list>
#include <map>
#include <memory>
#include <mutex>

#include "channel/channel.hpp"
#include "channel/shm_channel.hpp"
#include "channel/socket_channel.hpp"
#include "manager/protocol.hpp"
#include "mprocess/process.hpp"
#include "platform/posix.hpp"
#include "platform/process.hpp"
#include "platform/socket.hpp"

namespace mprocess {

namespace detail {

namespace {

// The server's first word on a new connection (see the protocol above): ServerBusy if it serves
// all it may on that address.
void expect_admission(Connection& c, const std::string& address) {
    if (!c.poll(30.0)) throw TimeoutError("the manager at " + address + " did not answer within 30 s of the handshake");
    auto [status, type, message, results] = c.recv<Reply>();
    if (status == 0) return;
    if (type == "ServerBusy")
        throw ServerBusy("the manager at " + address + " turned this connection away: " + message +
                         "; try again once some of its clients have gone");
    std::rethrow_exception(make_remote_error(type, message, "manager " + address));
}

// A Unix socket reaches a server on this machine: the calls go on over a shared-memory Pipe,
// whose end the server sends through the socket. A call then costs about a microsecond instead
// of two socket system calls and, often, a sleep and a wake-up on each side.
Connection upgraded(Connection& sock) {
    // The descriptors come with their bytes, so the socket is read directly here: nothing is read
    // ahead, since the server said nothing after its admission but what answers this request.
    sock.send(Request{"", std::string(name_of(Op::upgrade)), {}});
    std::optional<Connection> pipe = recv_pipe_end(sock.fileno());
    if (!pipe) throw EOFError("the manager's server went away while moving the connection to shared memory");
    sock.close();
    return std::move(*pipe);
}

// A TCP connection to a server that may be on this machine: if the server's local door (an
// abstract Unix name) answers here, the calls go there instead, and on over shared memory;
// otherwise over TCP.
Connection through_local_door(Connection& tcp, const std::string& authkey) {
    tcp.send(Request{"", std::string(name_of(Op::local)), {}});
    auto [status, type, message, results] = tcp.recv<Reply>();
    if (status != 0 || results.empty()) return tcp;
    try {
        const std::string& door = results.at(0);
        Connection local = Client(door, {.authkey = door_key(authkey, door), .timeout = 5.0});
        expect_admission(local, door);
        Connection pipe = upgraded(local);
        tcp.close();
        return pipe;
    } catch (const std::exception&) {
        return tcp;  // another host or network namespace (the name is not there), or a busy door
    }
}

Connection connect_to_server(const std::string& address, const std::string& authkey) {
    Connection c = Client(address, {.authkey = authkey});
    expect_admission(c, address);
    return is_unix_address(address) ? upgraded(c) : through_local_door(c, authkey);
}

// One thread's connections to servers, by address and key: a thread uses only its own, so that a
// blocking call holds up no other thread.
struct ThreadConnections {
    std::mutex m;  // the thread's calls, and forget_server() from any thread
    std::map<std::string, Connection> by_key;
};

std::string connection_key(const std::string& address, const std::string& authkey) {
    return address + '\0' + authkey;
}

// Every thread's connections in this process, so that a server's shutdown drops them all: a
// thread that never calls again would otherwise keep its descriptors for good.
struct AllConnections {
    explicit AllConnections(pid_t p) : pid(p) {}
    const pid_t pid;
    std::mutex m;
    std::vector<std::weak_ptr<ThreadConnections>> threads;
};

// This process's table. A forked child makes its own: its parent's, and that one's lock, which a
// thread of the parent may have held at the fork, are left as they are.
AllConnections& all_connections() {
    static std::atomic<AllConnections*> all{nullptr};
    const pid_t me = platform::getpid();
    AllConnections* a = all.load(std::memory_order_acquire);
    while (!a || a->pid != me) {
        auto* fresh = new AllConnections(me);
        if (all.compare_exchange_weak(a, fresh, std::memory_order_acq_rel)) return *fresh;
        delete fresh;
    }
    return *a;
}

ThreadConnections& this_thread_connections() {
    thread_local std::shared_ptr<ThreadConnections> mine;
    thread_local pid_t owner = 0;
    if (owner == platform::getpid()) return *mine;
    if (mine && mine->m.try_lock()) {
        // After a fork: the parent's connections are not ours to use. Dropping them closes only
        // this process's copies of their descriptors.
        mine->by_key.clear();
        mine->m.unlock();
    } else {
        // Locked at the fork by a thread of the parent, its table may be half changed: left as it is.
        if (mine) new std::shared_ptr<ThreadConnections>(std::move(mine));
        mine = std::make_shared<ThreadConnections>();
    }
    owner = platform::getpid();
    auto& all = all_connections();
    std::lock_guard lock(all.m);
    std::erase_if(all.threads, [](const auto& t) { return t.expired(); });
    all.threads.push_back(mine);
    return *mine;
}

// This thread's connection to a server (and key), made at first use.
Connection connection_to(const std::string& address, const std::string& authkey) {
    auto& mine = this_thread_connections();
    const std::string key = connection_key(address, authkey);
    {
        std::lock_guard lock(mine.m);
        auto it = mine.by_key.find(key);
        if (it != mine.by_key.end() && !it->second.closed()) return it->second;
    }
    Connection c = connect_to_server(address, authkey);
    std::lock_guard lock(mine.m);
    mine.by_key.insert_or_assign(key, c);
    return c;
}

// This thread's connection failed: the next call connects again.
void forget_connection(const std::string& address, const std::string& authkey) {
    auto& mine = this_thread_connections();
    std::lock_guard lock(mine.m);
    mine.by_key.erase(connection_key(address, authkey));
}

// The server at `address` has shut down: every thread's connections to it go. A call in progress
// on one keeps it until that call ends.
void forget_server(const std::string& address) {
    std::vector<std::shared_ptr<ThreadConnections>> threads;
    {
        auto& all = all_connections();
        std::lock_guard lock(all.m);
        for (auto& t : all.threads)
            if (auto alive = t.lock()) threads.push_back(std::move(alive));
    }
    const std::string prefix = connection_key(address, "");
    for (auto& t : threads) {
        std::lock_guard lock(t->m);
        std::erase_if(t->by_key, [&](const auto& kv) { return kv.first.compare(0, prefix.size(), prefix) == 0; });
    }
}

// One call: the object's method with its encoded arguments, and the encoded results.
std::vector<std::string> call(const ObjectRef& ref, std::string_view method, std::vector<std::string> args) {
    std::string key = ref.authkey;
    if (ref.needs_key) {
        auto known = authkey_for(ref.address);
        if (!known)
            throw AuthenticationError("this process knows no key for the manager at " + ref.address +
                                      ": connect a BaseManager to it with its key, or call "
                                      "mp::remember_authkey(address, key), before using proxies it sent");
        key = *known;
    }
    Connection conn = connection_to(ref.address, key);
    try {
        conn.send(Request{ref.id, std::string(method), std::move(args)});
        auto [status, type, message, results] = conn.recv<Reply>();
        if (status == 0) return std::move(results);
        if (type == "Empty") throw Empty(message);
        if (type == "Full") throw Full(message);
        if (type == "EOFError") throw EOFError(message);
        std::rethrow_exception(make_remote_error(type, message, "manager " + ref.address));
    } catch (const EOFError&) {
        forget_connection(ref.address, key);  // the next call connects again
        throw;
    } catch (const BrokenPipeError&) {
        forget_connection(ref.address, key);
        throw;
    }
}

std::vector<std::string> call(const ObjectRef& ref, Op method, std::vector<std::string> args) {
    return call(ref, name_of(method), std::move(args));
}

}  // namespace

}  // namespace detail

BaseManager::BaseManager(std::string address, ManagerOptions options)
    : address_(std::move(address)), options_(std::move(options)) {
    if (options_.authkey.empty() && !detail::is_unix_address(address_) && !options_.insecure)
        throw ValueError(
            "a manager on a TCP address needs an authkey: without one, anyone who can reach the port "
            "could use its objects or stop it ({.insecure = true} serves without one all the same)");
}

BaseManager::~BaseManager() {
    try {
        if (server_) shutdown();
    } catch (...) {
    }
}

void BaseManager::connect() {
    detail::connection_to(address_, options_.authkey);  // fails here, not at the first call
    if (!options_.authkey.empty()) remember_authkey(address_, options_.authkey);
    connected_ = true;
}

void BaseManager::shutdown() {
    if (!connected_ && !server_) return;
    if (connected_) {
        try {
            detail::call(detail::ObjectRef{address_, options_.authkey, "", ""}, detail::Op::shutdown, {});
        } catch (const Error&) {
        }
    }
    if (server_) {
        if (!server_->join(10.0)) {
            server_->terminate();
            server_->join();
        }
        server_.reset();
    }
    detail::forget_server(address_);
    connected_ = false;
}

void BaseManager::release(const std::string& name) {
    if (!connected_) throw ValueError("the manager is not started or connected: call start() or connect()");
    detail::call(detail::ObjectRef{address_, options_.authkey, "", ""}, detail::Op::release, {name});
}

void BaseManager::declare_named(std::string_view kind, const std::string& name, std::vector<std::string> args) {
    if (server_ || connected_) throw ValueError("register objects before start() or serve_forever()");
    if (name.empty()) throw ValueError("a registered object needs a name");
    registered_.emplace_back(std::string(kind), name, std::move(args));
}

detail::ObjectRef BaseManager::make_named(std::string_view kind, const std::string& name,
                                          std::vector<std::string> args) {
    if (!connected_) throw ValueError("the manager is not started or connected: call start() or connect()");
    args.insert(args.begin(), {std::string(kind), name});
    const detail::ObjectRef server{address_, options_.authkey, std::string(kind), ""};
    auto r = detail::call(server, detail::Op::make, std::move(args));
    return detail::ObjectRef{address_, options_.authkey, std::string(kind), r.at(0)};
}

std::vector<std::string> BaseProxy::call_method(std::string_view method, std::vector<std::string> args) const {
    return detail::call(ref_, method, std::move(args));
}

Manager::Manager(ManagerOptions options)
    // A random name: any user may bind an abstract name, so a guessable one could be taken first.
    : BaseManager("@mprocess-manager-" + detail::hex(platform::random_bytes(16)), [&] {
          // A key of its own, known to this process and the children it starts.
          if (options.authkey.empty()) options.authkey = platform::random_bytes(32);
          return options;
      }()) {
    start();
}

Manager::~Manager() = default;

}  // namespace mprocess
