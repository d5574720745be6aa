// SPDX-License-Identifier: Apache-2.0
// Linked into every program of an ASan build (mprocess_sanitizer_defaults() in helpers.cmake).
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
