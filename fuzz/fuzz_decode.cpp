// SPDX-License-Identifier: Apache-2.0
// Bytes from a hostile peer, decoded as a message of the type the first byte picks: strings,
// vectors of raw structs and of user types, maps, variants, nested containers, elements that
// encode to nothing. The rest of the input is the payload; the harness adds the type's tag, which
// a peer would copy from any honest message.
//
// A finding is a crash, a sanitizer report, an exception that is not an mprocess::Error, or memory
// out of proportion to the input: while one message decodes, the bytes allocated and not yet freed
// may never exceed kPerByte times its size plus kSlack (plus the budget for elements that encode
// to nothing, where the type has such). Honest messages of these types stay well under that;
// a decoder that allocates for a count before its elements arrive does not.
#include <sanitizer/allocator_interface.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "mprocess/serialize.hpp"

namespace mp = mprocess;

namespace {

struct Block {  // trivially copyable: raw bytes, 1 KiB each (a few fit in an input)
    char bytes[1024];
};

struct Record {  // a user type: the decoder cannot tell its smallest encoding
    std::int64_t id = 0;
    std::string name;
    std::optional<std::vector<std::int32_t>> tags;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(id, name, tags);
    }
};

struct Nothing {  // encodes to no bytes at all
    template <class Archive>
    void serialize(Archive&) {}
};

// Memory per byte of the message that a decode may hold at once, and a constant for the error's
// text and the containers' first blocks. Fuzzing the decoder as it is finds at most 6 bytes per
// byte plus 1.3 KiB (a deque's first block and an error); a decoder that sizes a vector<string> by
// a count of one element per byte takes 32 bytes per byte, a vector of Block 1024.
constexpr std::int64_t kPerByte = 16;
constexpr std::int64_t kSlack = 3 * 1024;

// The bytes this thread has allocated and not freed while `metering`, and their high mark.
bool metering = false;
std::int64_t live = 0;
std::int64_t high = 0;

void on_malloc(const volatile void*, std::size_t size) {
    if (!metering) return;
    live += static_cast<std::int64_t>(size);
    high = std::max(high, live);
}

void on_free(const volatile void* p) {
    if (metering && p) live -= static_cast<std::int64_t>(__sanitizer_get_allocated_size(p));
}

template <class T>
void decode_as(std::string_view payload, bool empty_elements) {
    std::string bytes(mp::tag_size, '\0');
    constexpr std::uint64_t tag = mp::detail::type_tag<T>;
    std::memcpy(bytes.data(), &tag, sizeof tag);
    bytes.append(payload);
    live = high = 0;
    metering = true;
    try {
        (void)mp::decode<T>(bytes);
    } catch (const mp::Error&) {
    }
    metering = false;
    const std::int64_t limit = kPerByte * static_cast<std::int64_t>(bytes.size()) + kSlack +
                               (empty_elements ? 4 * static_cast<std::int64_t>(mp::detail::empty_elements_budget) : 0);
    if (high > limit) {
        std::fprintf(stderr, "decoding a %zu-byte %.*s held %lld bytes at once, more than the %lld allowed\n",
                     bytes.size(), static_cast<int>(mp::detail::type_name_v<T>.size()),
                     mp::detail::type_name_v<T>.data(), static_cast<long long>(high), static_cast<long long>(limit));
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 11) {
        case 0:
            decode_as<std::string>(payload, false);
            break;
        case 1:
            decode_as<std::vector<std::string>>(payload, false);
            break;
        case 2:
            decode_as<std::vector<Block>>(payload, false);
            break;
        case 3:
            decode_as<std::vector<Record>>(payload, false);
            break;
        case 4:
            decode_as<std::map<std::string, std::vector<double>>>(payload, false);
            break;
        case 5:
            decode_as<std::vector<std::variant<std::int64_t, std::string, std::vector<double>>>>(payload, false);
            break;
        case 6:
            decode_as<std::vector<std::vector<std::string>>>(payload, false);
            break;
        case 7:
            decode_as<std::unordered_map<std::int64_t, std::string>>(payload, false);
            break;
        case 8:
            decode_as<std::deque<std::string>>(payload, false);
            break;
        case 9:
            decode_as<std::vector<std::vector<Nothing>>>(payload, true);
            break;
        default:
            decode_as<std::tuple<std::set<std::string>, std::optional<std::string>, std::vector<bool>>>(payload, false);
            break;
    }
    return 0;
}
