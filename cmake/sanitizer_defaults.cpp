// SPDX-License-Identifier: Apache-2.0
// Linked into every program of an ASan or TSan build (mprocess_sanitizer_defaults() in helpers.cmake).
//
// ASan's quarantine (freed blocks held back to catch a use after free) has a lock that the
// runtime's fork handler does not take (checked in LLVM 19 and 22; GCC 12's runtime takes none): a
// child forked while another thread drains its quarantine blocks forever on its first free, and
// the fork-method Pool forks its replacement workers from its manager thread while other threads
// free. Without a quarantine a free goes straight to the allocator, whose locks the handler takes.
// The price: a use after free is caught until the block is allocated again, not long after.
// tests/toolchain/fork_from_threads.cpp shows the hang without this (and under GCC's runtime).

extern "C" __attribute__((visibility("default"), used)) const char* __asan_default_options() {
    return "quarantine_size_mb=0";
}

// TSan cannot see the reference count of an exception held by std::exception_ptr: libstdc++ counts
// it with atomics in its own, uninstrumented code. So when a thread that caught a pool task's error
// (a RemoteError rethrown from the task's state) has let go of it, and the manager thread then
// drops the last reference and frees it, TSan reports the catcher's earlier reads as racing with
// the free, though the count's acquire-release orders them. Only such frees are let through: any
// race with a stack through the release of an exception_ptr.
extern "C" __attribute__((visibility("default"), used)) const char* __tsan_default_suppressions() {
    return "race:std::__exception_ptr::exception_ptr::_M_release\n";
}
