// SPDX-License-Identifier: Apache-2.0
// Named blocks are POSIX shared memory objects (shm_open, in /dev/shm); anonymous ones memfds.
// The creator of a named block registers it with the resource tracker (resource_tracker.hpp)
// and unregisters it in unlink(), once.
#include "mprocess/shared_memory.hpp"

#include <atomic>
#include <cerrno>
#include <tuple>

#include "mprocess/serialize.hpp"
#include "platform/posix.hpp"
#include "platform/shm.hpp"
#include "start/popen.hpp"
#include "resource_tracker.hpp"

namespace mprocess {

namespace detail {

struct SharedBlock {
    std::string name;
    platform::Fd fd;
    void* base = nullptr;
    std::size_t size = 0;
    std::atomic<bool> tracked{false};  // created here and registered with the tracker, not yet unregistered
    bool closed = false;
    ~SharedBlock() { unmap(); }
    void unmap() noexcept {
        if (base != nullptr) platform::unmap(base, size);
        base = nullptr;
        fd.reset();
    }
};

namespace {

std::string checked_name(const std::string& name) {
    std::string n = name.size() > 0 && name[0] == '/' ? name.substr(1) : name;
    if (n.empty() || n.size() > 250 || n.find('/') != std::string::npos)
        throw ValueError("bad shared memory name '" + name + "': 1 to 250 characters, no '/' but a leading one");
    return n;
}

void map(SharedBlock& b) {
    // A zero-sized mapping is not possible; an attached block of size 0 has an empty buf().
    if (b.size != 0) b.base = platform::map_shared(b.fd.get(), b.size);
}

}  // namespace
}  // namespace detail

SharedMemory::SharedMemory(std::optional<std::string> name, bool create, std::size_t size, SharedMemoryOptions options)
    : b_(std::make_shared<detail::SharedBlock>()) {
    auto& b = *b_;
    if (create && size == 0) throw ValueError("'size' must be a positive number different from zero");
    if (!create && !name) throw ValueError("'name' can only be None if create=True");
    if (!name) {
        b.fd = platform::make_memfd("mprocess-shared-memory", size);
        b.size = size;
        detail::map(b);
        return;
    }
    b.name = detail::checked_name(*name);
    const std::string path = "/" + b.name;
    if (create) {
        b.fd = platform::shm_open(path.c_str(), true);
        if (!b.fd.valid() && errno == EEXIST) throw FileExistsError("shared memory '" + b.name + "' already exists");
        if (!b.fd.valid()) platform::throw_errno("shm_open of '" + b.name + "'");
        b.tracked = true;
        try {
            // Registered before anything else can fail or the process can die with the name taken.
            detail::tracker_register(b.name);
            platform::set_file_size(b.fd.get(), size, "'" + b.name + "'");
            b.size = size;
            detail::map(b);
        } catch (...) {
            platform::shm_unlink(path.c_str());
            detail::tracker_unregister(b.name);
            throw;
        }
        return;
    }
    b.fd = platform::shm_open(path.c_str(), false);
    if (!b.fd.valid() && errno == ENOENT) throw FileNotFoundError("no shared memory named '" + b.name + "'");
    if (!b.fd.valid()) platform::throw_errno("shm_open of '" + b.name + "'");
    const int fd = b.fd.get();
    // Whoever made the name: a block of another user's (made writable to all, perhaps) is not
    // taken for ours unless the caller says it trusts that user.
    if (const uid_t owner = platform::file_owner(fd); owner != platform::effective_uid() && !options.allow_other_owner)
        throw PermissionError("shared memory '" + b.name + "' belongs to user " + platform::describe_user(owner) +
                              ", not to this process's user " + platform::describe_user(platform::effective_uid()) +
                              ": attach with {.allow_other_owner = true} only if you trust its owner");
    b.size = platform::file_size(fd);
    detail::map(b);
}

detail::SharedBlock& SharedMemory::block() const {
    if (!b_) throw ValueError("empty SharedMemory handle");
    return *b_;
}

std::span<std::byte> SharedMemory::buf() const {
    auto& b = block();
    if (b.closed) throw ValueError("SharedMemory '" + b.name + "' is closed");
    return {static_cast<std::byte*>(b.base), b.size};
}

const std::string& SharedMemory::name() const {
    return block().name;
}

std::size_t SharedMemory::size() const {
    return block().size;
}

void SharedMemory::close() {
    auto& b = block();
    b.closed = true;
    b.unmap();
}

void SharedMemory::unlink() {
    auto& b = block();
    if (b.name.empty()) return;
    const int err = platform::shm_unlink(("/" + b.name).c_str()) ? 0 : errno;
    // Once the name is gone, by this call or by another process, it is no longer ours to track:
    // the tracker must not unlink a block made later under the same name. The exchange makes
    // that one record per block, however many copies of the handle call unlink().
    if ((err == 0 || err == ENOENT) && b.tracked.exchange(false)) detail::tracker_unregister(b.name);
    if (err == ENOENT) throw FileNotFoundError("no shared memory named '" + b.name + "': it has already been unlinked");
    if (err != 0) platform::throw_os_error(err, "shm_unlink of '" + b.name + "'");
}

using ExportedBlock = std::tuple<std::string, std::uint64_t, int>;  // name, size, descriptor index

std::string SharedMemory::export_to(SpawnArgs& args) const {
    auto& b = block();
    if (b.closed) throw ValueError("cannot pass a closed SharedMemory");
    return encode(ExportedBlock{b.name, b.size, args.add_fd(b.fd.get())});
}

SharedMemory SharedMemory::import_from(const SpawnArgs& args, const std::string& blob) {
    auto [name, size, index] = decode<ExportedBlock>(blob);
    auto b = std::make_shared<detail::SharedBlock>();
    b->fd = detail::copy_spawn_fd(args, index, "SharedMemory");
    if (size != platform::file_size(b->fd.get())) throw DecodeError("exported SharedMemory: size does not match");
    b->name = name;
    b->size = size;
    detail::map(*b);
    return SharedMemory(std::move(b));
}

}  // namespace mprocess
