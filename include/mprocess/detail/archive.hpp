// cereal archives that write into a byte string and read from a bounds-checked span.
//
// Why not cereal's own BinaryInputArchive: it trusts the lengths it reads, so a corrupt size
// could make it allocate terabytes before failing. Here every container size is checked against
// the bytes that remain (each element occupies at least one byte; containers of empty types are
// the one case this rejects), and every read is checked against the end of the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include <cereal/archives/binary.hpp>
#include <cereal/cereal.hpp>

#include "mprocess/error.hpp"

namespace mprocess::detail {

struct SpawnArgs;

// No context: the archives of messages, where only plain data may travel.
struct NoContext {};

// Ctx is what an archive carries besides bytes. The archives of process arguments carry the
// SpawnArgs whose descriptors handles (queues, locks, connections, ...) refer to; handles have
// save and load functions for those archives only, so a handle inside a message does not
// compile, while a handle inside a container or a user type given to a process travels.
template <class Ctx>
class BasicOutArchive : public cereal::OutputArchive<BasicOutArchive<Ctx>, cereal::AllowEmptyClassElision> {
public:
    explicit BasicOutArchive(std::string& out, Ctx* ctx = nullptr)
        : cereal::OutputArchive<BasicOutArchive, cereal::AllowEmptyClassElision>(this), out_(out), ctx_(ctx) {}
    void saveBinary(const void* data, std::size_t size) {
        if (size != 0) out_.append(static_cast<const char*>(data), size);
    }
    Ctx& context() const noexcept { return *ctx_; }

private:
    std::string& out_;
    Ctx* ctx_;
};

template <class Ctx>
class BasicInArchive : public cereal::InputArchive<BasicInArchive<Ctx>, cereal::AllowEmptyClassElision> {
public:
    BasicInArchive(const char* data, std::size_t size, const Ctx* ctx = nullptr)
        : cereal::InputArchive<BasicInArchive, cereal::AllowEmptyClassElision>(this),
          pos_(data),
          end_(data + size),
          ctx_(ctx) {}

    void loadBinary(void* data, std::size_t size) {
        if (size > remaining())
            throw DecodeError("truncated message: needed " + std::to_string(size) + " more bytes, only " +
                              std::to_string(remaining()) + " remain");
        if (size == 0) return;  // data may be null (an empty container)
        std::memcpy(data, pos_, size);
        pos_ += size;
    }
    std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }
    const Ctx& context() const noexcept { return *ctx_; }

private:
    const char* pos_;
    const char* end_;
    const Ctx* ctx_;
};

using OutArchive = BasicOutArchive<NoContext>;
using InArchive = BasicInArchive<NoContext>;
using SpawnOutArchive = BasicOutArchive<SpawnArgs>;
using SpawnInArchive = BasicInArchive<SpawnArgs>;

template <class Ctx, class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, const T& t) {
    ar.saveBinary(std::addressof(t), sizeof(t));
}
template <class Ctx, class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, T& t) {
    if constexpr (std::is_same_v<T, bool>) {
        // Any byte but 0 or 1 in a bool is undefined behaviour: reject it here.
        unsigned char b = 0;
        ar.loadBinary(&b, 1);
        if (b > 1) throw DecodeError("corrupt message: a bool holds " + std::to_string(b));
        t = b != 0;
    } else {
        ar.loadBinary(std::addressof(t), sizeof(t));
    }
}

template <class Ctx, class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, cereal::NameValuePair<T>& t) {
    ar(t.value);
}
template <class Ctx, class T>
void CEREAL_SERIALIZE_FUNCTION_NAME(BasicInArchive<Ctx>& ar, cereal::NameValuePair<T>& t) {
    ar(t.value);
}

template <class Ctx, class T>
void CEREAL_SAVE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, const cereal::SizeTag<T>& t) {
    std::uint64_t n = t.size;
    ar.saveBinary(&n, sizeof n);
}
template <class Ctx, class T>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, cereal::SizeTag<T>& t) {
    std::uint64_t n = 0;
    ar.loadBinary(&n, sizeof n);
    if (n > ar.remaining())
        throw DecodeError("corrupt message: a container claims " + std::to_string(n) + " elements but only " +
                          std::to_string(ar.remaining()) + " bytes remain");
    t.size = static_cast<std::remove_reference_t<T>>(n);
}

template <class Ctx, class T>
void CEREAL_SAVE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, const cereal::BinaryData<T>& bd) {
    ar.saveBinary(bd.data, static_cast<std::size_t>(bd.size));
}
template <class Ctx, class T>
void CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, cereal::BinaryData<T>& bd) {
    ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

// A trivially copyable struct without serialization functions of its own travels as raw bytes,
// also when nested inside containers. Types cereal already knows (std::array, std::optional, ...)
// keep cereal's functions: asking cereal's own binary archive tells which those are.
template <class T>
inline constexpr bool raw_class_v =
    std::is_class_v<T>&& std::is_trivially_copyable_v<T> && !std::is_empty_v<T> &&
    cereal::traits::detail::count_output_serializers<T, cereal::BinaryOutputArchive>::value == 0;

template <class Ctx, class T>
std::enable_if_t<raw_class_v<T>> CEREAL_SAVE_FUNCTION_NAME(BasicOutArchive<Ctx>& ar, const T& t) {
    ar.saveBinary(std::addressof(t), sizeof(T));
}
template <class Ctx, class T>
std::enable_if_t<raw_class_v<T>> CEREAL_LOAD_FUNCTION_NAME(BasicInArchive<Ctx>& ar, T& t) {
    ar.loadBinary(std::addressof(t), sizeof(T));
}

}  // namespace mprocess::detail

CEREAL_SETUP_ARCHIVE_TRAITS(mprocess::detail::InArchive, mprocess::detail::OutArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(mprocess::detail::SpawnInArchive, mprocess::detail::SpawnOutArchive)
