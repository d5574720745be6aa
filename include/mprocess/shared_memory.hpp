// SPDX-License-Identifier: Apache-2.0
/// @file
/// SharedMemory: a block of bytes shared between processes, as multiprocessing.shared_memory.
///
/// @code{.cpp}
/// mp::SharedMemory shm(std::nullopt, true, 1 << 20);       // anonymous, 1 MiB
/// mp::SharedMemory named("results", true, 4096);           // in /dev/shm as "results"
/// mp::SharedMemory other("results");                       // attach, in any process
/// std::span<std::byte> b = other.buf();
/// @endcode
///
/// A handle: copies are the same mapping; it passes to a child as a Process argument under every
/// start method (the descriptor travels, so the child needs no name).
///
/// Better than Python's:
///  - Without a name the block is anonymous memory that the kernel frees when the last process
///    lets go, even if every process was killed. (Python always makes a named one.)
///  - A named block is tracked for the process that created it (the creator's "resource tracker",
///    shared with its forked children): if the creator and its family end without unlink() (killed
///    with SIGKILL, say), the tracker unlinks the name once they have all ended. Attaching never
///    registers a block, so a process that only attached never unlinks one it did not create
///    (Python's tracker does, gh-82300).
///  - Attaching by name checks the block's owner: a block another user made is refused
///    (PermissionError) unless SharedMemoryOptions::allow_other_owner says otherwise, so that a
///    process (root, say) never takes a stranger's memory, perhaps writable by anyone, for its own.
#pragma once

#include "mprocess/export.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "mprocess/detail/spawn.hpp"
#include "mprocess/error.hpp"

namespace mprocess {

namespace detail {
struct SharedBlock;
}

/// SharedMemory's options beyond Python's arguments.
struct SharedMemoryOptions {
    /// Attach to a named block even if another user owns it. Only for a block whose owner you
    /// trust: its owner can change or resize it under you, and may have let anyone write to it.
    bool allow_other_owner = false;
};

/// Python's multiprocessing.shared_memory.SharedMemory: a block of bytes every process holding it
/// sees (see shared_memory.hpp).
class MPROCESS_EXPORT SharedMemory {
public:
    /// Python's SharedMemory(name=None, create=False, size=0). create = true makes a new block of
    /// `size` bytes (ValueError if 0; FileExistsError if the name is taken), anonymous when there
    /// is no name. create = false attaches to the named block (FileNotFoundError), at its size,
    /// if this process's user owns it (PermissionError naming the owner otherwise; see options).
    explicit SharedMemory(std::optional<std::string> name = std::nullopt, bool create = false, std::size_t size = 0,
                          SharedMemoryOptions options = {});
    /// The same, for a name written as a string literal.
    SharedMemory(const char* name, bool create = false, std::size_t size = 0, SharedMemoryOptions options = {})
        : SharedMemory(std::optional<std::string>(name), create, size, options) {}

    /// The block's bytes (Python's shm.buf); ValueError after close().
    std::span<std::byte> buf() const;
    /// The name given at creation (without a leading '/'); empty for an anonymous block.
    const std::string& name() const;
    /// The block's size in bytes.
    std::size_t size() const;
    /// This process stops using the block (every copy of the handle here): buf() then throws.
    void close();
    /// Removes the name, so that no one else can attach; the memory lives on until every process
    /// has closed it. FileNotFoundError if the name is already gone (unlinked before, here or by
    /// another process), as Python's. Nothing to do for an anonymous block.
    void unlink();

    /// Whether two handles are the same block.
    friend bool operator==(const SharedMemory& a, const SharedMemory& b) noexcept { return a.b_ == b.b_; }

private:
    template <class, bool>
    friend struct detail::MemberSpawnArg;
    std::string export_to(SpawnArgs& args) const;
    static SharedMemory import_from(const SpawnArgs& args, const std::string& blob);
    explicit SharedMemory(std::shared_ptr<detail::SharedBlock> b) : b_(std::move(b)) {}
    detail::SharedBlock& block() const;
    std::shared_ptr<detail::SharedBlock> b_;
};

namespace detail {
template <>  // not nestable: see NestableHandle
struct SpawnArg<SharedMemory> : MemberSpawnArg<SharedMemory, false> {};
}  // namespace detail

}  // namespace mprocess
