// SPDX-License-Identifier: Apache-2.0
/// @file
/// Managers: a server process owns shared objects; other processes, here or on other machines,
/// use them through proxies, as multiprocessing.managers has it.
///
/// @code{.cpp}
/// mp::Manager m;                        // a server process on a private socket, a random key
/// auto q = m.Queue<int>();              // a new queue, owned by the server
/// auto d = m.dict<std::string, int>();
/// mp::Process p(worker, q, d); ...      // proxies travel to children, under every start method
///
/// mp::BaseManager server("0.0.0.0:5000", {.authkey = "secret"});
/// server.serve_forever();               // on one machine
/// mp::BaseManager client("host:5000", {.authkey = "secret"});
/// client.connect();
/// auto jobs = client.Queue<Job>("jobs"); // named objects: everyone who asks gets the same one
/// @endcode
///
/// The server stores items as encoded messages, so it runs without knowing the item types, and
/// programs built separately (by g++ or clang alike) can share it; a proxy of the wrong type gets
/// TypeMismatch when it reads an item. A call that fails on the server throws a RemoteError here, whose source() is
/// `"manager <address>"`, as the subclass of its Python kind (RemoteKeyError, RemoteIndexError,
/// RemoteValueError, RemoteTypeError, RemoteAttributeError); Empty, Full and EOFError cross as
/// themselves; a lost server, EOFError or BrokenPipeError. A Lock held by a connection that ends (its
/// process died) is released by the server.
///
/// Keys. On a TCP address a manager needs an authkey (ValueError otherwise), unless told to serve
/// without one ({.insecure = true}); then its server warns on stderr that anyone who can reach
/// the address can use it. A Unix address (`"@name"`, `"/path"`) needs none: the Listener admits only
/// processes of the same user there.
///
/// Limits. Each address the server listens on serves at most 1,024 connections at once; only
/// those that passed the handshake count, so strangers that never authenticate lock nobody out. A
/// client beyond the limit gets ServerBusy ("server busy (1024 connections)").
///
/// Lifetime. A server that start() made ends when the process that started it ends, however that
/// ends (it watches that process), and holds nothing of that process's: its shared-memory blocks
/// are unlinked by their tracker as if the server had never been. shutdown() also drops every
/// thread's connection to the server, so nothing of a manager stays in the process after it.
#pragma once

#include "mprocess/export.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mprocess/detail/manager_protocol.hpp"
#include "mprocess/error.hpp"
#include "mprocess/listener.hpp"
#include "mprocess/process.hpp"
#include "mprocess/queue.hpp"
#include "mprocess/serialize.hpp"
#include "mprocess/start_method.hpp"
#include "mprocess/timeout.hpp"

namespace mprocess {

/// The keyword arguments of BaseManager and Manager.
struct ManagerOptions {
    std::string authkey{};  ///< required on a TCP address (ValueError); Manager(): a random one by default
    std::optional<StartMethod> start_method{};  ///< for start(): default get_start_method()
    /// Clients may reach only the objects the server registered (Python's registered typeids);
    /// otherwise a client's first request for a new name makes it.
    bool registered_only = false;
    /// Serve a TCP address without an authkey all the same: anyone who can reach it can use the
    /// manager and stop it. The server says so on stderr when it starts.
    bool insecure = false;
};

namespace detail {

// Where a proxy's object lives, enough to reach it from any process.
struct ObjectRef {
    std::string address;
    std::string authkey;
    std::string kind;  // name_of(Kind): "queue", "dict", ...
    std::string id;
    bool needs_key = false;  // the server has a key, and this process knew none for it

    // The key never travels with the proxy (a queue item, a reply over the network); the receiver
    // uses the key it knows for that address (see authkey_for in process.hpp).
    template <class Archive>
    void serialize(Archive& ar) {
        enum : std::uint8_t { no_key, withheld };
        std::uint8_t key_state = authkey.empty() && !needs_key ? no_key : withheld;
        ar(address, key_state, kind, id);
        if constexpr (Archive::is_loading::value) {
            if (key_state > withheld) throw DecodeError("a manager proxy with an unknown key state");
            auto key = key_state == no_key ? std::optional<std::string>("") : authkey_for(address);
            authkey = key.value_or("");
            needs_key = !key;  // looked up again at each call: the key may be learned later
        }
    }
};

// An object the server makes before it serves: (kind, name, constructor arguments).
using Declared = std::tuple<std::string, std::string, std::vector<std::string>>;

// A wait's timeout on the wire: Timeout's own count of nanoseconds (its largest is forever); not
// blocking is a timeout of zero.
inline std::string timeout_arg(bool block, const Timeout& t) {
    return encode(std::int64_t{(block ? t : Timeout(0.0)).duration().count()});
}

}  // namespace detail

/// What every proxy is made of (Python's multiprocessing.managers.BaseProxy): where its object
/// lives, and one call of a method on it, a round trip to the server.
class MPROCESS_EXPORT BaseProxy {
public:
    /// The object's id on its server.
    const std::string& id() const noexcept { return ref_.id; }
    /// A proxy travels as its reference, never with the authkey (see authkey_for()).
    template <class Archive>
    void serialize(Archive& ar) {
        ar(ref_);
    }

protected:
    /// @cond INTERNAL
    using Op = detail::Op;
    /// @endcond
    /// A proxy of nothing: every call fails.
    BaseProxy() = default;
    /// A proxy of the object at `ref`.
    explicit BaseProxy(detail::ObjectRef ref) : ref_(std::move(ref)) {}
    /// Calls `method` with encoded arguments; returns the encoded results.
    std::vector<std::string> call(Op method, std::vector<std::string> args = {}) const {
        return call_method(detail::name_of(method), std::move(args));
    }
    /// call() of a method with one result, decoded as an R.
    template <class R>
    R call1(Op method, std::vector<std::string> args = {}) const {
        return decode<R>(call(method, std::move(args)).at(0));
    }
    /// Calls the method of this name; errors on the server come back as RemoteError.
    std::vector<std::string> call_method(std::string_view method, std::vector<std::string> args) const;

    /// Where the object lives.
    detail::ObjectRef ref_;
};

// Proxies. Each is serializable (it travels to child processes and reconnects there) and cheap to
// copy; all copies use the same object.

/// A queue on a manager's server (BaseManager::Queue, BaseManager::JoinableQueue), with
/// multiprocessing.Queue's calls. Like every proxy it is serializable (it travels to child
/// processes, or in a message, and reconnects there) and cheap to copy; all copies use the same
/// object. Each call is a round trip to the server; a lost server throws EOFError or BrokenPipeError.
template <class T>
class QueueProxy : public BaseProxy {
public:
    /// A proxy of nothing, to assign one to; every call fails until then.
    QueueProxy() = default;
    /// Waits while a bounded queue is full (up to `timeout`), then Full; block = false: Full at once.
    void put(const T& item, bool block = true, Timeout timeout = forever) {
        call(Op::put, {encode(item), detail::timeout_arg(block, timeout)});
    }
    /// put(item, false).
    void put_nowait(const T& item) { put(item, false); }
    /// Waits for an item (up to `timeout`), then Empty; block = false: Empty at once. TypeMismatch
    /// if the item is not a T (another program put it).
    T get(bool block = true, Timeout timeout = forever) {
        return decode<T>(call(Op::get, {detail::timeout_arg(block, timeout)}).at(0));
    }
    /// get(false).
    T get_nowait() { return get(false); }
    /// The number of items in the queue now.
    std::size_t qsize() const { return call1<std::uint64_t>(Op::qsize); }
    /// True if the queue holds no item now.
    bool empty() const { return qsize() == 0; }
    /// True if a bounded queue is full now.
    bool full() const { return call1<bool>(Op::full); }
    /// JoinableQueue's: one task done. On a plain Queue it throws RemoteAttributeError, as
    /// join() does.
    void task_done() { call(Op::task_done); }
    /// JoinableQueue's: waits until every item put has been marked task_done().
    void join() { call(Op::join); }

private:
    friend class BaseManager;
    using BaseProxy::BaseProxy;
};

/// A dict on a manager's server (BaseManager::dict), with Python's `d[k]`, `d[k] = v`, `del d[k]`,
/// `k in d`, `len(d)`, `d.items()` and `d.clear()` as calls. A proxy, as QueueProxy says.
template <class K, class V>
class DictProxy : public BaseProxy {
public:
    /// A proxy of nothing, to assign one to; every call fails until then.
    DictProxy() = default;
    /// RemoteKeyError for a missing key, as dict[k] raises KeyError.
    V get(const K& key) const { return decode<V>(call(Op::get, {encode(key)}).at(0)); }
    /// Python's d.get(k): the value, or nullopt for a missing key.
    std::optional<V> get(const K& key, std::nullopt_t) const {
        auto r = call(Op::get_or_none, {encode(key)});
        if (r.empty()) return std::nullopt;
        return decode<V>(r.at(0));
    }
    /// d[k] = v.
    void set(const K& key, const V& value) { call(Op::set, {encode(key), encode(value)}); }
    /// del d[k]: RemoteKeyError for a missing key.
    void erase(const K& key) { call(Op::del, {encode(key)}); }
    /// k in d.
    bool contains(const K& key) const { return call1<bool>(Op::contains, {encode(key)}); }
    /// len(d).
    std::size_t size() const { return call1<std::uint64_t>(Op::len); }
    /// A copy of every item, in one round trip.
    std::map<K, V> items() const {
        auto r = call(Op::items);
        std::map<K, V> out;
        for (std::size_t i = 0; i + 1 < r.size(); i += 2) out.emplace(decode<K>(r[i]), decode<V>(r[i + 1]));
        return out;
    }
    /// Removes every item.
    void clear() { call(Op::clear); }

private:
    friend class BaseManager;
    using BaseProxy::BaseProxy;
};

/// A list on a manager's server (BaseManager::list). A proxy, as QueueProxy says.
template <class T>
class ListProxy : public BaseProxy {
public:
    /// A proxy of nothing, to assign one to; every call fails until then.
    ListProxy() = default;
    /// l.append(item).
    void append(const T& item) { call(Op::append, {encode(item)}); }
    /// Python's indexes: negative counts from the end; RemoteIndexError out of range.
    T get(std::int64_t i) const { return decode<T>(call(Op::get, {encode(i)}).at(0)); }
    /// l[i] = item; indexes as get()'s.
    void set(std::int64_t i, const T& item) { call(Op::set, {encode(i), encode(item)}); }
    /// l.pop(i): removes and returns the item (the last by default); RemoteIndexError out of range.
    T pop(std::int64_t i = -1) { return decode<T>(call(Op::pop, {encode(i)}).at(0)); }
    /// len(l).
    std::size_t size() const { return call1<std::uint64_t>(Op::len); }
    /// l[:]: a copy of every item, in one round trip.
    std::vector<T> values() const {
        std::vector<T> out;
        for (auto& b : call(Op::values)) out.push_back(decode<T>(b));
        return out;
    }

private:
    friend class BaseManager;
    using BaseProxy::BaseProxy;
};

/// A value on a manager's server (BaseManager::Value): Python's `v.value`. A proxy, as QueueProxy
/// says. Each call is atomic on the server; a read-modify-write needs a LockProxy around it.
template <class T>
class ValueProxy : public BaseProxy {
public:
    /// A proxy of nothing, to assign one to; every call fails until then.
    ValueProxy() = default;
    /// Reads v.value.
    T value() const { return decode<T>(call(Op::get).at(0)); }
    /// v.value = v.
    void set_value(const T& v) { call(Op::set, {encode(v)}); }

private:
    friend class BaseManager;
    using BaseProxy::BaseProxy;
};

/// A lock on the server. The server releases it if the connection that holds it ends.
/// BasicLockable, so std::lock_guard works.
class LockProxy : public BaseProxy {
public:
    /// A proxy of nothing, to assign one to; every call fails until then.
    LockProxy() = default;
    /// Python's acquire(block=True, timeout=None): true once held, false on timeout.
    bool acquire(bool block = true, Timeout timeout = forever) {
        return call1<bool>(Op::acquire, {detail::timeout_arg(block, timeout)});
    }
    /// Releases it; RemoteValueError if it is not held.
    void release() { call(Op::release); }
    /// acquire(), for std::lock_guard.
    void lock() { acquire(); }
    /// release(), for std::lock_guard.
    void unlock() { release(); }

private:
    friend class BaseManager;
    using BaseProxy::BaseProxy;
};

/// An event on the server (BaseManager::Event), with threading.Event's calls. A proxy, as
/// QueueProxy says.
class EventProxy : public BaseProxy {
public:
    /// A proxy of nothing, to assign one to; every call fails until then.
    EventProxy() = default;
    /// Sets the flag and wakes every waiter.
    void set() { call(Op::set); }
    /// Clears the flag.
    void clear() { call(Op::clear); }
    /// The flag.
    bool is_set() const { return call1<bool>(Op::is_set); }
    /// Returns the flag: true once set, false if the timeout passed first.
    bool wait(Timeout timeout = forever) { return call1<bool>(Op::wait, {detail::timeout_arg(true, timeout)}); }

private:
    friend class BaseManager;
    using BaseProxy::BaseProxy;
};

/// Python's Namespace: attributes by name, each of any serializable type.
class NamespaceProxy : public BaseProxy {
public:
    /// A proxy of nothing, to assign one to; every call fails until then.
    NamespaceProxy() = default;
    /// ns.name, as a T. RemoteAttributeError if it has none of that name; TypeMismatch if it is
    /// not a T.
    template <class T>
    T get(const std::string& name) const {
        return decode<T>(call(Op::get, {encode(name)}).at(0));
    }
    /// ns.name = value; the attribute may change type.
    template <class T>
    void set(const std::string& name, const T& value) {
        call(Op::set, {encode(name), encode(value)});
    }
    /// hasattr(ns, name).
    bool has(const std::string& name) const { return call1<bool>(Op::has, {encode(name)}); }
    /// del ns.name: RemoteAttributeError if it has none of that name.
    void erase(const std::string& name) { call(Op::del, {encode(name)}); }

private:
    friend class BaseManager;
    using BaseProxy::BaseProxy;
};

namespace detail {
struct ServerHandle;
}

/// Python's BaseManager.get_server(): a server that listens already (so its address is known) and
/// serves in this process, in whichever thread calls serve_forever().
class MPROCESS_EXPORT ManagerServer {
public:
    /// Where it listens, with the port the system picked.
    const std::string& address() const;
    /// Serves until a client calls shutdown(), or stop() is called from another thread.
    void serve_forever();
    /// Makes serve_forever() return, from another thread.
    void stop();

private:
    friend class BaseManager;
    ManagerServer() = default;
    std::shared_ptr<detail::ServerHandle> handle_;
};

/// multiprocessing.managers.BaseManager: a server of shared objects at an address, started here
/// (start(), serve_forever(), get_server()) or elsewhere (connect()), and the factories of proxies
/// to its objects.
class MPROCESS_EXPORT BaseManager {
public:
    /// address: where the server listens or is (see listener.hpp; a Unix socket for one machine).
    /// ValueError for a TCP address without an authkey, unless options.insecure.
    explicit BaseManager(std::string address, ManagerOptions options = {});
    /// shutdown() for a server that start() made; a connected client leaves its server running.
    ~BaseManager();
    BaseManager(const BaseManager&) = delete;             ///< one owner of the server it started
    BaseManager& operator=(const BaseManager&) = delete;  ///< one owner of the server it started

    /// Starts the server in a child process; returns once it listens. ProcessError if started
    /// already, or if the server does not listen within 30 s.
    void start();
    /// Runs the server in this process until a client calls shutdown().
    void serve_forever();
    /// The server, listening, to run in this process (see ManagerServer). ProcessError once this
    /// manager has started or connected.
    ManagerServer get_server();
    /// Uses a server someone else started. Fails here if it cannot reach it or authenticate (the
    /// errors of Client()), not at the first call.
    void connect();
    /// Stops the server (and, if start() made it, waits for its process).
    void shutdown();
    /// Where the server listens (with the port it picked, after start()).
    const std::string& address() const noexcept { return address_; }

    /// On the server's side, before start() or serve_forever(): a queue it makes at once, under
    /// this name, for clients to reach with Queue(name) (Python's register()). ValueError after
    /// start() or for an empty name, as for every register_...() call.
    void register_queue(const std::string& name, std::size_t maxsize = 0) {
        declare(Kind::queue, name, {encode(std::uint64_t{maxsize})});
    }
    /// A JoinableQueue the server makes, as register_queue().
    void register_joinable_queue(const std::string& name, std::size_t maxsize = 0) {
        declare(Kind::joinable_queue, name, {encode(std::uint64_t{maxsize})});
    }
    /// A dict the server makes, as register_queue().
    void register_dict(const std::string& name) { declare(Kind::dict, name, {}); }
    /// A list the server makes, as register_queue().
    void register_list(const std::string& name) { declare(Kind::list, name, {}); }
    /// A Value the server makes, holding `initial`, as register_queue().
    template <class T>
    void register_value(const std::string& name, const T& initial) {
        declare(Kind::value, name, {encode(initial)});
    }
    /// A Lock the server makes, as register_queue().
    void register_lock(const std::string& name) { declare(Kind::lock, name, {}); }
    /// An Event the server makes, as register_queue().
    void register_event(const std::string& name) { declare(Kind::event, name, {}); }
    /// A Namespace the server makes, as register_queue().
    void register_namespace(const std::string& name) { declare(Kind::namespace_, name, {}); }

    /// Objects: a new one for each call without a name; with a name, the one of that name,
    /// created by the first who asks. ValueError before start() or connect(), as for every
    /// factory; with registered_only, a RemoteError for a name the server did not register.
    template <class T>
    QueueProxy<T> Queue(const std::string& name = "", std::size_t maxsize = 0) {
        return QueueProxy<T>(make(Kind::queue, name, {encode(std::uint64_t{maxsize})}));
    }
    /// A JoinableQueue on the server, as Queue() makes one.
    template <class T>
    QueueProxy<T> JoinableQueue(const std::string& name = "", std::size_t maxsize = 0) {
        return QueueProxy<T>(make(Kind::joinable_queue, name, {encode(std::uint64_t{maxsize})}));
    }
    /// A dict on the server, as Queue() makes one.
    template <class K, class V>
    DictProxy<K, V> dict(const std::string& name = "") {
        return DictProxy<K, V>(make(Kind::dict, name, {}));
    }
    /// A list on the server, as Queue() makes one.
    template <class T>
    ListProxy<T> list(const std::string& name = "") {
        return ListProxy<T>(make(Kind::list, name, {}));
    }
    /// A value on the server holding `initial` (a named one that exists keeps its own), as
    /// Queue() makes one.
    template <class T>
    ValueProxy<T> Value(const T& initial, const std::string& name = "") {
        return ValueProxy<T>(make(Kind::value, name, {encode(initial)}));
    }
    /// Frees a named object that a client made (the server's registered ones stay): its memory
    /// goes, and later calls through its proxies fail with RemoteKeyError. Objects are
    /// otherwise kept until the server stops; nothing counts proxies (see docs/architecture.md).
    void release(const std::string& name);

    /// A lock on the server, as Queue() makes one.
    LockProxy Lock(const std::string& name = "") { return LockProxy(make(Kind::lock, name, {})); }
    /// An event on the server, as Queue() makes one.
    EventProxy Event(const std::string& name = "") { return EventProxy(make(Kind::event, name, {})); }
    /// A namespace on the server, as Queue() makes one.
    NamespaceProxy Namespace(const std::string& name = "") { return NamespaceProxy(make(Kind::namespace_, name, {})); }

private:
    using Kind = detail::Kind;
    detail::ObjectRef make(Kind kind, const std::string& name, std::vector<std::string> args) {
        return make_named(detail::name_of(kind), name, std::move(args));
    }
    void declare(Kind kind, const std::string& name, std::vector<std::string> args) {
        declare_named(detail::name_of(kind), name, std::move(args));
    }
    // By the kind's name (the exported functions take only the library's public types).
    detail::ObjectRef make_named(std::string_view kind, const std::string& name, std::vector<std::string> args);
    void declare_named(std::string_view kind, const std::string& name, std::vector<std::string> args);

    std::vector<detail::Declared> registered_;
    std::string address_;
    ManagerOptions options_;
    std::optional<Process> server_;
    bool connected_ = false;
};

/// multiprocessing.Manager(): a BaseManager started at once on a private Unix socket with a random
/// authkey, shut down when it goes out of scope.
class MPROCESS_EXPORT Manager : public BaseManager {
public:
    /// Starts the server (options.authkey, if given, instead of a random key).
    explicit Manager(ManagerOptions options = {});
    /// Shuts the server down.
    ~Manager();
};

}  // namespace mprocess
