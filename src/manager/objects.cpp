// SPDX-License-Identifier: Apache-2.0
#include "manager/objects.hpp"

#include <deque>
#include <map>
#include <vector>

namespace mprocess::detail {
namespace {

class QueueObject final : public Object {
public:
    std::string_view python_name() const override { return joinable_ ? "JoinableQueue" : "Queue"; }
    QueueObject(std::size_t maxsize, bool joinable) : maxsize_(maxsize), joinable_(joinable) {}
    Results call(Op m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == Op::put) {
            if (!c.wait(lock, cv_, timeout_of(a, 1), [&] { return maxsize_ == 0 || items_.size() < maxsize_; }))
                throw Fail{"Full", "the queue is full"};
            items_.push_back(a.at(0));
            ++unfinished_;
            cv_.notify_all();
            return {};
        }
        if (m == Op::get) {
            if (!c.wait(lock, cv_, timeout_of(a, 0), [&] { return !items_.empty(); }))
                throw Fail{"Empty", "the queue is empty"};
            std::string item = std::move(items_.front());
            items_.pop_front();
            cv_.notify_all();
            return {std::move(item)};
        }
        if (m == Op::qsize) return {encode(std::uint64_t{items_.size()})};
        if (m == Op::full) return {encode(maxsize_ != 0 && items_.size() >= maxsize_)};
        if (m == Op::task_done && joinable_) {
            if (unfinished_ == 0) throw Fail{"ValueError", "task_done() called too many times"};
            if (--unfinished_ == 0) cv_.notify_all();
            return {};
        }
        if (m == Op::join && joinable_) {
            c.wait(lock, cv_, forever, [&] { return unfinished_ == 0; });
            return {};
        }
        no_method(name_of(m));
    }
    void wake_all() override { cv_.notify_all(); }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::string> items_;
    const std::size_t maxsize_;
    const bool joinable_;
    std::size_t unfinished_ = 0;
};

class DictObject final : public Object {
public:
    std::string_view python_name() const override { return "dict"; }
    Results call(Op m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == Op::get || m == Op::get_or_none) {
            auto it = map_.find(a.at(0));
            if (it != map_.end()) return {it->second};
            if (m == Op::get_or_none) return {};
            throw Fail{"KeyError", "no such key in the dict"};
        }
        if (m == Op::set) {
            map_[a.at(0)] = a.at(1);
            return {};
        }
        if (m == Op::del) {
            if (map_.erase(a.at(0)) == 0) throw Fail{"KeyError", "no such key in the dict"};
            return {};
        }
        if (m == Op::contains) return {encode(map_.count(a.at(0)) != 0)};
        if (m == Op::len) return {encode(std::uint64_t{map_.size()})};
        if (m == Op::clear) {
            map_.clear();
            return {};
        }
        if (m == Op::items) {
            Results out;
            for (auto& [k, v] : map_) {
                out.push_back(k);
                out.push_back(v);
            }
            return out;
        }
        no_method(name_of(m));
    }

private:
    std::mutex m_;
    std::map<std::string, std::string> map_;  // keyed by the encoded key
};

class ListObject final : public Object {
public:
    std::string_view python_name() const override { return "list"; }
    Results call(Op m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == Op::append) {
            items_.push_back(a.at(0));
            return {};
        }
        if (m == Op::len) return {encode(std::uint64_t{items_.size()})};
        if (m == Op::values) return items_;
        if (m == Op::get || m == Op::set || m == Op::pop) {
            auto i = decode<std::int64_t>(a.at(0));
            const auto n = static_cast<std::int64_t>(items_.size());
            if (i < 0) i += n;
            if (i < 0 || i >= n) throw Fail{"IndexError", "list index out of range"};
            const auto at = static_cast<std::size_t>(i);
            if (m == Op::get) return {items_[at]};
            if (m == Op::set) {
                items_[at] = a.at(1);
                return {};
            }
            std::string item = std::move(items_[at]);
            items_.erase(items_.begin() + i);
            return {std::move(item)};
        }
        no_method(name_of(m));
    }

private:
    std::mutex m_;
    std::vector<std::string> items_;
};

class ValueObject final : public Object {
public:
    std::string_view python_name() const override { return "Value"; }
    explicit ValueObject(std::string v) : value_(std::move(v)) {}
    Results call(Op m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        if (m == Op::get) return {value_};
        if (m == Op::set) {
            value_ = a.at(0);
            return {};
        }
        no_method(name_of(m));
    }

private:
    std::mutex m_;
    std::string value_;
};

class LockObject final : public Object {
public:
    std::string_view python_name() const override { return "Lock"; }
    Results call(Op m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == Op::acquire) {
            const bool got = c.wait(lock, cv_, timeout_of(a, 0), [&] { return owner_ == 0; });
            if (got) owner_ = c.id();
            return {encode(got)};
        }
        if (m == Op::release) {
            if (owner_ == 0) throw Fail{"ValueError", "release of an unlocked lock"};
            owner_ = 0;
            cv_.notify_one();
            return {};
        }
        no_method(name_of(m));
    }
    // The connection that held it ended: its process died or let go. The lock is free again.
    void left(std::uint64_t connection) override {
        std::lock_guard lock(m_);
        if (owner_ == connection) {
            owner_ = 0;
            cv_.notify_one();
        }
    }
    void wake_all() override { cv_.notify_all(); }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::uint64_t owner_ = 0;  // a connection id; 0: free
};

class EventObject final : public Object {
public:
    std::string_view python_name() const override { return "Event"; }
    Results call(Op m, const Results& a, Caller& c) override {
        std::unique_lock lock(m_);
        if (m == Op::set) {
            set_ = true;
            cv_.notify_all();
            return {};
        }
        if (m == Op::clear) {
            set_ = false;
            return {};
        }
        if (m == Op::is_set) return {encode(set_)};
        if (m == Op::wait) {
            return {encode(c.wait(lock, cv_, timeout_of(a, 0), [&] { return set_; }))};
        }
        no_method(name_of(m));
    }
    void wake_all() override { cv_.notify_all(); }

private:
    std::mutex m_;
    std::condition_variable cv_;
    bool set_ = false;
};

class NamespaceObject final : public Object {
public:
    std::string_view python_name() const override { return "Namespace"; }
    Results call(Op m, const Results& a, Caller&) override {
        std::lock_guard lock(m_);
        const std::string name = decode<std::string>(a.at(0));
        if (m == Op::get) {
            auto it = attrs_.find(name);
            if (it == attrs_.end()) throw Fail{"AttributeError", "'Namespace' object has no attribute '" + name + "'"};
            return {it->second};
        }
        if (m == Op::set) {
            attrs_[name] = a.at(1);
            return {};
        }
        if (m == Op::has) return {encode(attrs_.count(name) != 0)};
        if (m == Op::del) {
            if (attrs_.erase(name) == 0)
                throw Fail{"AttributeError", "'Namespace' object has no attribute '" + name + "'"};
            return {};
        }
        no_method(name_of(m));
    }

private:
    std::mutex m_;
    std::map<std::string, std::string> attrs_;
};

}  // namespace

std::unique_ptr<Object> make_kind(const std::string& name, const Results& a) {
    const auto kind = kind_named(name);
    if (!kind) throw Fail{"ValueError", "no kind of shared object is called '" + name + "'"};
    switch (*kind) {
        case Kind::queue:
        case Kind::joinable_queue:
            return std::make_unique<QueueObject>(static_cast<std::size_t>(decode<std::uint64_t>(a.at(0))),
                                                 kind == Kind::joinable_queue);
        case Kind::dict:
            return std::make_unique<DictObject>();
        case Kind::list:
            return std::make_unique<ListObject>();
        case Kind::value:
            return std::make_unique<ValueObject>(a.at(0));
        case Kind::lock:
            return std::make_unique<LockObject>();
        case Kind::event:
            return std::make_unique<EventObject>();
        case Kind::namespace_:
            return std::make_unique<NamespaceObject>();
    }
    throw Fail{"ValueError", "no kind of shared object is called '" + name + "'"};
}

}  // namespace mprocess::detail
