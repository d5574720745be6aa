// SPDX-License-Identifier: Apache-2.0
// The manager's server: a Listener on its address (and, on TCP, a local door), a thread per
// authenticated connection, and the objects (objects.hpp).
#include "mprocess/manager.hpp"

#include <atomic>
#include <cstdio>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "channel/channel.hpp"
#include "channel/shm_channel.hpp"
#include "channel/socket_channel.hpp"
#include "manager/objects.hpp"
#include "manager/protocol.hpp"
#include "mprocess/process.hpp"
#include "platform/posix.hpp"
#include "platform/process.hpp"
#include "platform/socket.hpp"
#include "resource_tracker.hpp"

namespace mprocess {

namespace detail {

namespace {

constexpr std::size_t kMaxRequest = std::size_t{256} << 20;  // one request's bytes

// A manager without a key on TCP serves anyone who reaches it: said at start, where it is seen.
void warn_without_key(const std::string& address) {
    std::fprintf(stderr,
                 "mprocess: WARNING: the manager at %s has no authkey: anyone who can reach %s can use it (every "
                 "object, and shutdown). Give it a key unless only trusted hosts can reach that address.\n",
                 address.c_str(), address.c_str());
    std::fflush(stderr);
}

class Server {
public:
    Server(const std::string& address, const std::string& authkey, const std::vector<Declared>& registered,
           bool registered_only)
        : port_(address, authkey, is_unix_address(address)), registered_only_(registered_only) {
        if (!port_.local) {
            const std::string door = "@mprocess-manager-" + hex(platform::random_bytes(16));
            door_.emplace(door, door_key(authkey, door), true);
            // A Unix address is for this user's processes only (the Listener checks the peer's
            // uid), so only a key-less TCP port is open to others.
            if (authkey.empty()) warn_without_key(this->address());
        }
        for (const auto& [kind, name, args] : registered) {
            objects_[name] = make_kind(kind, args);
            kinds_[name] = kind;
            registered_.insert(name);
        }
    }
    const std::string& address() const { return port_.listener.address(); }
    // Ends run() within a fraction of a second, as a client's shutdown call does.
    void stop() { stopping_ = true; }
    // Ends run() once the process behind this pidfd has ended.
    void end_with(platform::Fd owner) { owner_ = std::move(owner); }

    // Accepts until shutdown, on the port and its local door.
    void run() {
        std::thread side;
        if (door_) side = std::thread([this] { accept_loop(*door_); });
        accept_loop(port_);
        if (side.joinable()) side.join();
        std::vector<std::shared_ptr<ServedConnection>> all;
        {
            std::lock_guard lock(m_);
            for (auto& [id, obj] : objects_) obj->wake_all();
            all.assign(connections_.begin(), connections_.end());
        }
        for (auto& c : all) c->close();  // wakes a thread blocked reading or writing its client
        for (auto& c : all) c->thread.join();
    }

private:
    // Clients served at once on one address. Only authenticated ones count (they know the key).
    static constexpr std::size_t kMaxConnections = 1024;

    // An address the server listens on, and the clients it serves there.
    struct Endpoint {
        Endpoint(const std::string& address, const std::string& key, bool is_local)
            : listener(address, {.authkey = key, .max_message = kMaxRequest}), local(is_local) {}
        Listener listener;
        const bool local;        // a Unix socket: clients may move to shared memory
        std::size_t served = 0;  // its connections being served, under the server's m_
    };

    // A client's connection and the thread that serves it.
    struct ServedConnection {
        std::mutex m;
        Connection conn;  // replaced once, by the upgrade
        std::thread thread;
        std::atomic<bool> done{false};
        void close() {
            std::lock_guard lock(m);
            conn.close();
        }
    };

    // Threads start here, not before: a process may fork between making a server and serving.
    void accept_loop(Endpoint& at) {
        // The Listener runs every handshake under way side by side, each within its deadline, and
        // bounds how many wait (in all, and per source): a silent or hostile stranger holds up
        // nobody and costs at most one small buffer.
        while (!stopping_.load()) {
            if (owner_gone()) stopping_ = true;
            reap();
            Connection conn;
            try {
                conn = at.listener.accept(0.2);
            } catch (const TimeoutError&) {
                continue;
            } catch (const AuthenticationError&) {
                continue;  // that client only
            } catch (const std::exception&) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));  // out of descriptors, say: later
                continue;
            }
            admit(at, std::move(conn));
        }
    }

    bool owner_gone() {
        if (!owner_.valid()) return false;
        pollfd p{owner_.get(), POLLIN, 0};
        return platform::poll_until(&p, 1, platform::Clock::now()) > 0;
    }

    // An authenticated connection is served in its own thread, unless its address serves all it
    // may: then it is told so (see the protocol above) and closed.
    void admit(Endpoint& at, Connection conn) {
        {
            std::lock_guard lock(m_);
            if (at.served < kMaxConnections) {
                auto c = std::make_shared<ServedConnection>();
                c->conn = conn;
                try {
                    c->thread = std::thread([this, c, &at, id = ++next_connection_] { serve(*c, id, at); });
                } catch (const std::exception&) {
                    return;  // no thread to spare: the connection closes
                }
                ++at.served;
                connections_.push_back(c);
                return;
            }
        }
        try {
            conn.send(Reply{1, "ServerBusy", "server busy (" + std::to_string(kMaxConnections) + " connections)", {}});
        } catch (const Error&) {
        }
        conn.close();
    }

    // Joins the threads of connections that have ended.
    void reap() {
        std::vector<std::shared_ptr<ServedConnection>> ended;
        {
            std::lock_guard lock(m_);
            for (auto it = connections_.begin(); it != connections_.end();) {
                if ((*it)->done.load()) {
                    ended.push_back(*it);
                    it = connections_.erase(it);
                } else {
                    ++it;
                }
            }
        }
        for (auto& c : ended) c->thread.join();
    }

    void serve(ServedConnection& client, std::uint64_t id, Endpoint& at) {
        Connection conn = client.conn;
        try {
            conn.send(Reply{0, {}, {}, {}});  // admitted
            Caller caller(conn, stopping_, id);
            bool upgraded = false;
            while (!stopping_.load()) {
                if (!conn.poll(0.2)) continue;
                auto [object, method, args] = conn.recv<Request>();
                if (object.empty() && method == name_of(Op::upgrade) && at.local && !upgraded) {
                    Connection pipe = upgrade(conn);
                    std::lock_guard lock(client.m);
                    client.conn = conn = pipe;
                    upgraded = true;
                    continue;
                }
                Reply reply{0, {}, {}, {}};
                try {
                    std::get<3>(reply) = dispatch(object, method, args, caller);
                } catch (const Fail& f) {
                    reply = Reply{1, f.type, f.message, {}};
                } catch (const std::exception& e) {
                    reply = Reply{1, "Error", e.what(), {}};
                }
                conn.send(reply);
            }
        } catch (...) {
            // The client went away, or sent what is not a request (even one too big to hold):
            // that connection ends, and only it.
        }
        try {
            conn.close();
        } catch (...) {
        }
        {
            std::lock_guard lock(m_);
            for (auto& [oid, obj] : objects_) obj->left(id);
            --at.served;
        }
        client.done = true;
    }

    // A client on this machine asks to go on over shared memory: it gets one end of a new Pipe
    // through the Unix socket (SCM_RIGHTS), and the calls are served on the other end.
    static Connection upgrade(Connection& sock) {
        auto [mine, theirs] = Pipe();
        send_pipe_end(sock.fileno(), theirs);
        sock.close();
        return mine;
    }

    Results dispatch(const std::string& object, const std::string& method, const Results& args, Caller& caller) {
        const auto op = op_named(method);
        if (object.empty()) {
            if (op == Op::shutdown) {
                stopping_ = true;
                return {};
            }
            if (op == Op::local) return door_ ? Results{door_->listener.address()} : Results{};
            if (op == Op::release) {
                const std::string& name = args.at(0);
                std::shared_ptr<Object> gone;
                {
                    std::lock_guard lock(m_);
                    if (registered_.count(name))
                        throw Fail{"ValueError", "'" + name + "' is registered by the server: it stays"};
                    auto it = objects_.find(name);
                    if (it == objects_.end()) throw Fail{"KeyError", "the manager has no object '" + name + "'"};
                    gone = std::move(it->second);
                    objects_.erase(it);
                    kinds_.erase(name);
                }
                gone->released = true;
                gone->wake_all();  // its waiting calls end with KeyError
                return {};
            }
            if (op == Op::make) {
                const std::string& kind = args.at(0);
                const std::string& name = args.at(1);
                if (!name.empty() && name[0] == '#')
                    throw Fail{"ValueError", "names starting with '#' are the manager's"};
                std::lock_guard lock(m_);
                const std::string id = name.empty() ? "#" + std::to_string(++next_object_) : name;
                auto it = objects_.find(id);
                if (it == objects_.end() && registered_only_ && !name.empty())
                    throw Fail{"KeyError", "the manager has no object registered as '" + name + "'"};
                if (it == objects_.end()) {
                    it = objects_.emplace(id, make_kind(kind, Results(args.begin() + 2, args.end()))).first;
                    kinds_[id] = kind;
                } else if (kinds_[id] != kind) {
                    throw Fail{"TypeError", "'" + id + "' is a " + kinds_[id] + ", not a " + kind};
                }
                return {id};
            }
            throw Fail{"AttributeError", "the manager has no method '" + method + "'"};
        }
        std::shared_ptr<Object> obj;  // a call in progress keeps a released object alive
        {
            std::lock_guard lock(m_);
            auto it = objects_.find(object);
            if (it == objects_.end()) throw Fail{"KeyError", "the manager has no object '" + object + "'"};
            obj = it->second;
        }
        if (!op) obj->no_method(method);
        caller.watch(&obj->released);
        return obj->call(*op, args, caller);
    }

    Endpoint port_;
    // On TCP, a local door for clients on this machine: a random abstract Unix name, which only
    // processes of the same host and network namespace can reach. They move there, and on to
    // shared memory, so a manager reached at a loopback or own address is as fast as a local one.
    std::optional<Endpoint> door_;
    const bool registered_only_;
    std::atomic<bool> stopping_{false};
    std::mutex m_;
    std::map<std::string, std::shared_ptr<Object>> objects_;
    std::map<std::string, std::string> kinds_;
    std::set<std::string> registered_;  // the server's own names: never released
    std::list<std::shared_ptr<ServedConnection>> connections_;
    std::uint64_t next_connection_ = 0;
    std::uint64_t next_object_ = 0;
    platform::Fd owner_;  // a pidfd: the server ends with that process
};

// The process that starts a server, as a pidfd the server watches: it travels with the server's
// other arguments under every start method.
struct Owner {
    int pidfd = -1;
};

}  // namespace

template <>
struct SpawnArg<Owner> {
    static constexpr bool handle = true;
    static std::string write(SpawnArgs& args, const Owner& o) { return encode(std::int32_t{args.add_fd(o.pidfd)}); }
    static Owner read(const SpawnArgs& args, const std::string& blob) {
        const auto i = decode<std::int32_t>(blob);
        if (i < 0 || static_cast<std::size_t>(i) >= args.fds.size())
            throw DecodeError("a manager server's owner: no such descriptor");
        platform::Fd borrowed(args.fds[static_cast<std::size_t>(i)]);
        platform::Fd own = platform::dup_fd(borrowed);
        borrowed.release();
        return Owner{own.release()};
    }
};

namespace {

// A server that start() made: it ends when the process that started it does, however that ends.
void run_server(const std::string& address, const std::string& authkey, const std::vector<Declared>& registered,
                bool registered_only, Connection report, Owner owner) {
    platform::Fd watch(owner.pidfd);
    // Forked, it shares its owner's resource tracker, whose watch over the owner's named blocks
    // would then wait for the server too; it makes no named block, so it lets go.
    tracker_leave();
    Server server(address, authkey, registered, registered_only);
    server.end_with(std::move(watch));
    report.send(server.address());
    report.close();
    server.run();
}

}  // namespace

struct ServerHandle {
    template <class... A>
    explicit ServerHandle(A&&... a) : server(std::forward<A>(a)...) {}
    Server server;
};

}  // namespace detail

void BaseManager::start() {
    if (server_) throw ProcessError("the manager has already been started");
    auto [here, there] = Pipe();
    // A pidfd of this process, made while it lives, so that it cannot name another by the time the
    // server watches it (a pid could be reused).
    platform::Fd owner = platform::pidfd_open(platform::getpid());
    server_.emplace(detail::run_server, ProcessOptions{.name = "SyncManager", .start_method = options_.start_method},
                    address_, options_.authkey, registered_, options_.registered_only, there,
                    detail::Owner{owner.get()});
    server_->start();
    owner.reset();
    there.close();
    if (!here.poll(30.0)) throw ProcessError("the manager's server did not start listening within 30 s");
    address_ = here.recv<std::string>();
    if (!options_.authkey.empty()) remember_authkey(address_, options_.authkey);
    connected_ = true;
}

void BaseManager::serve_forever() {
    detail::Server server(address_, options_.authkey, registered_, options_.registered_only);
    address_ = server.address();
    if (!options_.authkey.empty()) remember_authkey(address_, options_.authkey);
    server.run();
}

ManagerServer BaseManager::get_server() {
    if (server_ || connected_) throw ProcessError("the manager has already been started or connected");
    ManagerServer s;
    s.handle_ =
        std::make_shared<detail::ServerHandle>(address_, options_.authkey, registered_, options_.registered_only);
    if (!options_.authkey.empty()) remember_authkey(s.address(), options_.authkey);
    return s;
}

const std::string& ManagerServer::address() const {
    return handle_->server.address();
}

void ManagerServer::serve_forever() {
    handle_->server.run();
}

void ManagerServer::stop() {
    handle_->server.stop();
}

}  // namespace mprocess
