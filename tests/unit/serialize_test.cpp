// SPDX-License-Identifier: Apache-2.0
#include <mprocess/serialize.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "helpers/allocation_meter.hpp"

namespace mp = mprocess;

namespace {

struct Point {  // trivially copyable, no serialize(): travels as raw bytes, also inside containers
    int x;
    double y;
    bool operator==(const Point&) const = default;
};

struct Order {  // a user type with its own serialize()
    std::string customer;
    std::vector<Point> points;
    std::optional<std::map<std::string, int>> extras;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(customer, points, extras);
    }
    bool operator==(const Order&) const = default;
};

struct NoDefault {  // trivially copyable without a default constructor
    explicit NoDefault(int v) : value(v) {}
    int value;
};

template <class T>
T round_trip(const T& v) {
    return mp::decode<T>(mp::encode(v));
}

Order sample_order() {
    return Order{"ada", {{1, 2.5}, {3, -4.0}}, std::map<std::string, int>{{"gift", 1}, {"rush", 2}}};
}

}  // namespace

TEST(Serialize, TriviallyCopyableValuesTravelAsTheirOwnBytes) {
    EXPECT_EQ(round_trip(42), 42);
    EXPECT_EQ(round_trip(-1.5), -1.5);
    EXPECT_EQ(round_trip(Point{7, 8.25}), (Point{7, 8.25}));
    EXPECT_EQ(mp::encode(Point{1, 2}).size(), mp::tag_size + sizeof(Point));
    EXPECT_EQ(round_trip(NoDefault(9)).value, 9);
    std::array<int, 3> a{1, 2, 3};
    EXPECT_EQ(round_trip(a), a);
}

TEST(Serialize, StandardContainersAndVocabularyTypesRoundTrip) {
    EXPECT_EQ(round_trip(std::string("hello")), "hello");
    EXPECT_EQ(round_trip(std::string()), "");
    EXPECT_EQ(round_trip(std::vector<int>{1, 2, 3}), (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(round_trip(std::vector<int>{}), std::vector<int>{});
    std::map<std::string, int> m{{"a", 1}, {"b", 2}};
    EXPECT_EQ(round_trip(m), m);
    std::unordered_map<int, std::string> um{{1, "x"}, {2, "y"}};
    EXPECT_EQ(round_trip(um), um);
    std::set<std::string> s{"p", "q"};
    EXPECT_EQ(round_trip(s), s);
    EXPECT_EQ(round_trip(std::optional<std::string>("o")), std::optional<std::string>("o"));
    EXPECT_EQ(round_trip(std::optional<std::string>()), std::optional<std::string>());
    using V = std::variant<int, std::string, std::vector<double>>;
    EXPECT_EQ(round_trip(V(std::string("v"))), V(std::string("v")));
    EXPECT_EQ(round_trip(V(std::vector<double>{1.5})), V(std::vector<double>{1.5}));
    auto p = std::make_pair(std::string("k"), 3);
    EXPECT_EQ(round_trip(p), p);
    auto t = std::make_tuple(1, std::string("two"), 3.0);
    EXPECT_EQ(round_trip(t), t);
}

TEST(Serialize, EveryStandardContainerRoundTrips) {
    EXPECT_EQ(round_trip(std::deque<std::string>{"a", "", "c"}), (std::deque<std::string>{"a", "", "c"}));
    EXPECT_EQ(round_trip(std::list<int>{3, 1, 2}), (std::list<int>{3, 1, 2}));
    EXPECT_EQ(round_trip(std::vector<bool>{true, false, true}), (std::vector<bool>{true, false, true}));
    EXPECT_EQ(round_trip(std::u32string(U"\u00e9t\u00e9")), std::u32string(U"\u00e9t\u00e9"));
    std::multiset<std::string> ms{"b", "a", "b"};
    EXPECT_EQ(round_trip(ms), ms);
    std::unordered_multiset<int> ums{1, 1, 2};
    EXPECT_EQ(round_trip(ums), ums);
    std::unordered_multimap<int, std::string> umm{{1, "x"}, {1, "y"}};
    EXPECT_EQ(round_trip(umm).count(1), 2u);
    std::vector<std::optional<std::string>> opts{std::nullopt, "o"};
    EXPECT_EQ(round_trip(opts), opts);
    std::array<std::string, 2> strs{"p", "q"};
    EXPECT_EQ(round_trip(strs), strs);
    std::map<int, std::set<std::string>> nested{{1, {"x", "y"}}, {2, {}}};
    EXPECT_EQ(round_trip(nested), nested);
}

TEST(Serialize, EqualKeysOfAMultimapKeepTheirOrder) {
    std::multimap<int, std::string> m{{1, "a"}, {1, "b"}, {1, "c"}, {2, "d"}};
    EXPECT_EQ(round_trip(m), m);
}

TEST(Serialize, NestingAndUserTypesRoundTrip) {
    std::vector<std::map<std::string, std::vector<int>>> nested{{{"a", {1, 2}}, {"b", {}}}, {}};
    EXPECT_EQ(round_trip(nested), nested);
    EXPECT_EQ(round_trip(sample_order()), sample_order());
    std::vector<Point> pts{{1, 1}, {2, 2}};
    EXPECT_EQ(round_trip(pts), pts);
}

TEST(Serialize, ReceivingAsAnotherTypeThrowsTypeMismatch) {
    EXPECT_THROW(mp::decode<double>(mp::encode(1)), mp::TypeMismatch);
    EXPECT_THROW(mp::decode<std::vector<char>>(mp::encode(std::string("x"))), mp::TypeMismatch);
    EXPECT_THROW(mp::decode<Order>(mp::encode(Point{1, 2})), mp::TypeMismatch);
    try {
        mp::decode<std::string>(mp::encode(5));
        FAIL() << "no exception";
    } catch (const mp::TypeMismatch& e) {
        EXPECT_NE(std::string(e.what()).find("std::"), std::string::npos) << e.what();  // names the type
    }
}

TEST(Serialize, TooShortToCarryATagThrows) {
    EXPECT_THROW(mp::decode<int>(std::string_view("abc")), mp::TypeMismatch);
    EXPECT_THROW(mp::decode<int>(std::string_view()), mp::TypeMismatch);
}

TEST(Serialize, EveryTruncationThrowsDecodeErrorInsteadOfCrashing) {
    const std::string whole = mp::encode(sample_order());
    for (std::size_t n = 0; n < whole.size(); ++n)
        EXPECT_THROW(mp::decode<Order>(std::string_view(whole.data(), n)), mp::DecodeError) << "length " << n;
    const std::string raw = mp::encode(Point{1, 2});
    EXPECT_THROW(mp::decode<Point>(std::string_view(raw.data(), raw.size() - 1)), mp::DecodeError);
}

TEST(Serialize, TrailingBytesAreRejected) {
    std::string bytes = mp::encode(std::string("abc")) + "junk";
    EXPECT_THROW(mp::decode<std::string>(bytes), mp::DecodeError);
    EXPECT_THROW(mp::decode<int>(mp::encode(1) + "x"), mp::DecodeError);
}

TEST(Serialize, AHugeLengthIsRejectedBeforeAllocating) {
    std::string bytes = mp::encode(std::vector<std::uint64_t>{1});
    std::uint64_t huge = std::uint64_t{1} << 60;
    std::memcpy(bytes.data() + mp::tag_size, &huge, sizeof huge);  // the size tag follows the type tag
    EXPECT_THROW(mp::decode<std::vector<std::uint64_t>>(bytes), mp::DecodeError);
}

TEST(Serialize, AnOutOfRangeVariantIndexIsRejected) {
    using V = std::variant<int, std::string>;
    std::string bytes = mp::encode(V(1));
    std::int32_t bad = 7;
    std::memcpy(bytes.data() + mp::tag_size, &bad, sizeof bad);
    EXPECT_THROW(mp::decode<V>(bytes), mp::DecodeError);
}

TEST(Serialize, RandomCorruptionNeverCrashes) {
    const std::string whole = mp::encode(sample_order());
    std::mt19937 rng(1234);
    int decoded = 0, rejected = 0;
    for (int round = 0; round < 5000; ++round) {
        std::string bytes = whole;
        int flips = 1 + static_cast<int>(rng() % 4);
        for (int i = 0; i < flips; ++i) {
            std::size_t at = mp::tag_size + rng() % (bytes.size() - mp::tag_size);
            bytes[at] = static_cast<char>(rng());
        }
        try {
            mp::decode<Order>(bytes);
            ++decoded;
        } catch (const mp::DecodeError&) {
            ++rejected;
        }
    }
    EXPECT_EQ(decoded + rejected, 5000);
    EXPECT_GT(rejected, 0);
}

TEST(Serialize, SameTypeSameTagDifferentTypesDifferentTags) {
    EXPECT_EQ(mp::detail::type_tag<std::vector<int>>, mp::detail::type_tag<std::vector<int>>);
    EXPECT_NE(mp::detail::type_tag<std::vector<int>>, mp::detail::type_tag<std::vector<long>>);
    EXPECT_NE(mp::detail::type_tag<int>, mp::detail::type_tag<unsigned>);
    EXPECT_EQ(mp::detail::type_name<Point>().find("Point") != std::string_view::npos, true);
}

// Programs built by g++ and by clang share messages, so a type's name (the source of its tag) is
// one text, whichever compiler built the program: this file is compiled by g++ in the normal build
// and by clang in the sanitizer builds, and expects the same names in both.
TEST(TypeNames, StandardTypesAreNamedAsOneWritesThemUnderEitherCompiler) {
    using mp::detail::type_name_v;
    EXPECT_EQ(type_name_v<std::string>, "std::string");
    EXPECT_EQ(type_name_v<std::vector<std::string>>, "std::vector<std::string>");
    EXPECT_EQ((type_name_v<std::map<std::string, std::vector<int>>>), "std::map<std::string, std::vector<int>>");
    EXPECT_EQ((type_name_v<std::unordered_map<long, std::wstring>>), "std::unordered_map<long, std::wstring>");
    EXPECT_EQ((type_name_v<std::set<short, std::greater<short>>>), "std::set<short, std::greater<short>>");
    EXPECT_EQ(type_name_v<std::optional<unsigned long>>, "std::optional<unsigned long>");
    EXPECT_EQ((type_name_v<std::variant<std::monostate, long long, std::string>>),
              "std::variant<std::monostate, long long, std::string>");
    EXPECT_EQ((type_name_v<std::tuple<int, std::string, double>>), "std::tuple<int, std::string, double>");
    EXPECT_EQ((type_name_v<std::pair<const int, unsigned short>>), "std::pair<const int, unsigned short>");
    EXPECT_EQ((type_name_v<std::array<std::string, 2>>), "std::array<std::string, 2>");
    EXPECT_EQ(type_name_v<std::list<char>>, "std::list<char>");
    EXPECT_EQ(type_name_v<std::chrono::seconds>, "std::chrono::duration<long>");
    EXPECT_EQ(type_name_v<std::chrono::milliseconds>, "std::chrono::duration<long, std::ratio<1, 1000>>");
    EXPECT_EQ(
        type_name_v<std::chrono::system_clock::time_point>,
        "std::chrono::time_point<std::chrono::system_clock, std::chrono::duration<long, std::ratio<1, 1000000000>>>");
    EXPECT_EQ(type_name_v<const char*>, "const char*");
    EXPECT_EQ(type_name_v<int[3]>, "int[3]");
    EXPECT_EQ(type_name_v<std::vector<Point>>, "std::vector<(anonymous namespace)::Point>");
}

// Canonical names never merge two types: what was told apart before is told apart still.
TEST(TypeNames, DifferentTypesKeepDifferentNamesAndTags) {
    using mp::detail::type_tag;
    EXPECT_NE(type_tag<long>, type_tag<long long>);
    EXPECT_NE(type_tag<char>, type_tag<signed char>);
    EXPECT_NE(type_tag<std::set<int>>, (type_tag<std::set<int, std::greater<int>>>));
    EXPECT_NE(type_tag<std::string>, type_tag<std::vector<char>>);
    EXPECT_NE(type_tag<std::vector<std::string>>, type_tag<std::vector<std::wstring>>);
    EXPECT_NE(type_tag<std::chrono::seconds>, type_tag<std::chrono::milliseconds>);
    EXPECT_NE((type_tag<std::array<int, 2>>), (type_tag<std::array<int, 3>>));
    EXPECT_NE(type_tag<const int*>, type_tag<int*>);
}

namespace {
std::string canonical(std::string_view spelling) {
    std::string out(mp::detail::normalized_capacity(spelling.size()), '\0');
    out.resize(mp::detail::normalize(spelling, out.data()));
    return out;
}
}  // namespace

// What g++ 12 and clang 19 write for the same type (found by printing both for a few hundred
// types), and the one name both become.
TEST(TypeNames, TheNormalizerMakesOneNameOfWhatEitherCompilerWrites) {
    struct Case {
        std::string_view gcc, clang, name;
    };
    const Case cases[] = {
        {"std::__cxx11::basic_string<char>", "std::basic_string<char>", "std::string"},
        {"std::__cxx11::basic_string<char16_t>", "std::basic_string<char16_t>", "std::u16string"},
        {"std::vector<std::__cxx11::basic_string<char> >", "std::vector<std::basic_string<char>>",
         "std::vector<std::string>"},
        {"Box<std::__cxx11::basic_string<wchar_t> >", "Box<std::basic_string<wchar_t>>", "Box<std::wstring>"},
        {"std::__cxx11::list<char>", "std::list<char>", "std::list<char>"},
        {"long int", "long", "long"},
        {"long unsigned int", "unsigned long", "unsigned long"},
        {"short int", "short", "short"},
        {"short unsigned int", "unsigned short", "unsigned short"},
        {"long long unsigned int", "unsigned long long", "unsigned long long"},
        {"__int128 unsigned", "unsigned __int128", "unsigned __int128"},
        {"long double", "long double", "long double"},
        {"{anonymous}::Anon", "(anonymous namespace)::Anon", "(anonymous namespace)::Anon"},
        {"outer::{anonymous}::In", "outer::(anonymous namespace)::In", "outer::(anonymous namespace)::In"},
        {"main()::Local", "Local", "Local"},
        {"ns::S::g() const::Mem", "Mem", "Mem"},
        {"Box<ns::f(int)::Local>", "Box<Local>", "Box<Local>"},
        {"ns::deep::Tpl<Point, -3>", "ns::deep::Tpl<Point, -3>", "ns::deep::Tpl<Point, -3>"},
        {"Val<5>", "Val<5U>", "Val<5>"},
        {"Val<7>", "Val<7UL>", "Val<7>"},
        {"Val<-5>", "Val<-5LL>", "Val<-5>"},
        {"Val<3>", "Val<(unsigned short)3>", "Val<3>"},
        {"Val<-3>", "Val<(short)-3>", "Val<-3>"},
        {"Val<3>", "Val<(signed char)'\\x03'>", "Val<3>"},
        {"Val<'a'>", "Val<'a'>", "Val<97>"},
        {"Val<'\\000'>", "Val<'\\x00'>", "Val<0>"},
        {"Val<'\\012'>", "Val<'\\n'>", "Val<10>"},
        {"Val<'\\37777777710'>", "Val<'\\xc8'>", "Val<200>"},
        {"Val<120>", "Val<L'x'>", "Val<120>"},
        {"Val<(& g)>", "Val<&g>", "Val<&g>"},
        {"Val<(Scoped)9>", "Val<(Scoped)9>", "Val<(Scoped)9>"},
        {"Val<Scoped::a>", "Val<Scoped::a>", "Val<Scoped::a>"},
        {"Val<SP{1, 2}>", "Val<SP{1, 2}>", "Val<SP{1, 2}>"},
        {"TT<std::vector>", "TT<std::vector>", "TT<std::vector>"},
        {"const char* const", "const char *const", "const char*const"},
        {"void (*)(int, std::__cxx11::basic_string<char>)", "void (*)(int, std::basic_string<char>)",
         "void(*)(int, std::string)"},
        {"struct Point", "Point", "Point"},
        {"Mixed<std::variant<int, std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > "
         ">, 3>",
         "Mixed<std::variant<int, std::basic_string<char>>, 3>", "Mixed<std::variant<int, std::string>, 3>"},
        {"Mixed<std::tuple<std::map<int, std::__cxx11::basic_string<char, std::char_traits<char>, "
         "std::allocator<char> >, std::less<int>, std::allocator<std::pair<const int, "
         "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > > > > >, 1>",
         "Mixed<std::tuple<std::map<int, std::basic_string<char>>>, 1>",
         "Mixed<std::tuple<std::map<int, std::string>>, 1>"},
        {"Pack<std::unordered_map<int, int, std::hash<int>, std::equal_to<int>, std::allocator<std::pair<const int, "
         "int> > > >",
         "Pack<std::unordered_map<int, int>>", "Pack<std::unordered_map<int, int>>"},
        {"Mixed<std::tuple<std::chrono::duration<long int, std::ratio<1, 1> > >, 1>",
         "Mixed<std::tuple<std::chrono::duration<long>>, 1>", "Mixed<std::tuple<std::chrono::duration<long>>, 1>"},
        {"std::chrono::time_point<std::chrono::_V2::system_clock, std::chrono::duration<long int, std::ratio<1, "
         "1000000000> > >",
         "std::chrono::time_point<std::chrono::system_clock, std::chrono::duration<long, std::ratio<1, 1000000000>>>",
         "std::chrono::time_point<std::chrono::system_clock, std::chrono::duration<long, std::ratio<1, 1000000000>>>"},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(canonical(c.gcc), c.name) << "g++ writes " << c.gcc;
        EXPECT_EQ(canonical(c.clang), c.name) << "clang writes " << c.clang;
    }
}

namespace lib {
inline namespace v2 {
struct Renamed {  // g++ would write lib::v2::Renamed, clang lib::Renamed
    int x;
};
}  // namespace v2
}  // namespace lib

template <>
inline constexpr std::string_view mprocess::message_name<lib::Renamed> = "lib::Renamed";

TEST(TypeNames, AMessageNameNamesATypeTheSameForEveryCompiler) {
    EXPECT_EQ(mp::detail::type_name_v<lib::Renamed>, "lib::Renamed");
    EXPECT_EQ(mp::detail::type_name_v<std::vector<lib::Renamed>>, "std::vector<lib::Renamed>");
    EXPECT_EQ(mp::detail::type_tag<lib::Renamed>,
              mp::detail::fnv1a("lib::Renamed") ^ (std::uint64_t{sizeof(lib::Renamed)} << 56));
    EXPECT_EQ(mp::decode<lib::Renamed>(mp::encode(lib::Renamed{7})).x, 7);
}

namespace {
template <class T>
void expect_slices_encode_as_vectors(const std::vector<T>& v) {
    for (std::size_t b = 0; b <= v.size(); ++b)
        for (std::size_t e = b; e <= v.size(); ++e)
            EXPECT_EQ(mp::detail::encode_slice(v, b, e), mp::encode(std::vector<T>(v.begin() + b, v.begin() + e)))
                << "slice [" << b << ", " << e << ")";
}
}  // namespace

TEST(Serialize, ASliceEncodesAsTheVectorOfItsItems) {
    expect_slices_encode_as_vectors(std::vector<int>{1, 2, 3, 4, 5});
    expect_slices_encode_as_vectors(std::vector<double>{0.5, -1.0, 3.25});
    expect_slices_encode_as_vectors(std::vector<bool>{true, false, true, true});
    expect_slices_encode_as_vectors(std::vector<std::string>{"a", "", "ccc"});
    expect_slices_encode_as_vectors(std::vector<Point>{{1, 2.0}, {3, 4.0}});
    expect_slices_encode_as_vectors(std::vector<Order>{sample_order(), Order{}});
    expect_slices_encode_as_vectors(std::vector<std::tuple<std::string, int>>{{"x", 1}, {"y", 2}});
}

TEST(Serialize, DecodeAppendAddsTheItemsOfAnEncodedVector) {
    std::vector<int> out{7};
    mp::detail::decode_append(out, mp::encode(std::vector<int>{1, 2, 3}));
    mp::detail::decode_append(out, mp::encode(std::vector<int>{}));
    EXPECT_EQ(out, (std::vector<int>{7, 1, 2, 3}));
    std::vector<std::string> words{"a"};
    mp::detail::decode_append(words, mp::encode(std::vector<std::string>{"b", "c"}));
    EXPECT_EQ(words, (std::vector<std::string>{"a", "b", "c"}));

    const std::string good = mp::encode(std::vector<int>{1, 2, 3});
    for (std::size_t cut = 0; cut < good.size(); ++cut)
        EXPECT_THROW(mp::detail::decode_append(out, std::string_view(good).substr(0, cut)), mp::DecodeError) << cut;
    EXPECT_THROW(mp::detail::decode_append(out, good + "x"), mp::DecodeError);
    EXPECT_THROW(mp::detail::decode_append(out, mp::encode(std::vector<long>{1})), mp::TypeMismatch);
    EXPECT_EQ(out.size(), 4u);  // nothing added by the failures
}

// Amplification: a message that announces many elements must not make the receiver allocate for
// them before its bytes show they are there. Crafted messages: a count, then zero bytes (empty
// strings, zero numbers), as a hostile peer would send.
namespace {

struct Block {  // 4 KiB, trivially copyable: travels as raw bytes
    char bytes[4096];
};

struct Tile {  // a user type: its smallest encoding cannot be told from outside
    std::array<char, 4096> pixels{};
    template <class Archive>
    void serialize(Archive& ar) {
        ar(pixels);
    }
};

struct Nothing {  // a user type that encodes to no bytes at all
    template <class Archive>
    void serialize(Archive&) {}
    bool operator==(const Nothing&) const = default;
};

// The message for T whose first count claims `count` elements, followed by `fill` zero bytes.
template <class T>
std::string claiming(std::uint64_t count, std::size_t fill) {
    std::string bytes(mp::tag_size + sizeof count + fill, '\0');
    constexpr std::uint64_t tag = mp::detail::type_tag<T>;
    std::memcpy(bytes.data(), &tag, sizeof tag);
    std::memcpy(bytes.data() + mp::tag_size, &count, sizeof count);
    return bytes;
}

// Under `meter`: nothing refused, and at most `most` bytes allocated at any one time (where the
// meter can count).
void expect_at_most(const testing_support::AllocationMeter& meter, std::size_t most, std::string_view what) {
    if (!testing_support::AllocationMeter::available()) return;
    EXPECT_EQ(meter.refused(), 0u) << what;
    EXPECT_LE(meter.peak(), most) << what;
}

// Decodes `bytes` as T under a meter that refuses anything past 64 times the message; expects a
// DecodeError and at most `factor` times the message's size allocated at any one time.
template <class T>
void expect_rejected_within(const std::string& bytes, std::size_t factor) {
    testing_support::AllocationMeter meter(64 * bytes.size());
    EXPECT_THROW(mp::decode<T>(bytes), mp::DecodeError) << mp::detail::type_name_v<T>;
    expect_at_most(meter, factor * bytes.size(), mp::detail::type_name_v<T>);
}

// A count that only one byte per element would allow: rejected at once, nothing allocated but the
// error's text.
template <class T>
void expect_a_count_of_one_per_byte_rejected() {
    constexpr std::size_t fill = 64 * 1024;
    expect_rejected_within<T>(claiming<T>(fill, fill), 1);
}

}  // namespace

TEST(Serialize, AHugeCountIsCheckedAgainstTheSmallestEncodingOfAnElement) {
    expect_a_count_of_one_per_byte_rejected<std::vector<std::string>>();
    expect_a_count_of_one_per_byte_rejected<std::vector<std::uint64_t>>();
    expect_a_count_of_one_per_byte_rejected<std::vector<Block>>();
    expect_a_count_of_one_per_byte_rejected<std::vector<std::vector<std::string>>>();
    expect_a_count_of_one_per_byte_rejected<std::vector<std::variant<std::monostate, std::string>>>();
    expect_a_count_of_one_per_byte_rejected<std::vector<std::pair<std::int32_t, std::string>>>();
    expect_a_count_of_one_per_byte_rejected<std::deque<std::string>>();
    expect_a_count_of_one_per_byte_rejected<std::list<std::string>>();
    expect_a_count_of_one_per_byte_rejected<std::unordered_set<std::string>>();
    expect_a_count_of_one_per_byte_rejected<std::map<std::string, std::vector<double>>>();
    expect_a_count_of_one_per_byte_rejected<std::unordered_map<std::int64_t, std::string>>();
    expect_a_count_of_one_per_byte_rejected<std::u32string>();
    // and nothing honest is refused: the smallest messages of those shapes decode
    EXPECT_EQ(round_trip(std::vector<std::string>(1000)).size(), 1000u);
    EXPECT_EQ(round_trip(std::vector<std::vector<std::string>>(1000)).size(), 1000u);
    EXPECT_EQ(round_trip(std::vector<std::variant<std::monostate, std::string>>(1000)).size(), 1000u);
    EXPECT_EQ(round_trip(std::vector<Block>(3)).size(), 3u);
}

TEST(Serialize, ACountTheBytesCouldHoldIsNotAllocatedAheadOfItsElements) {
    // Each Tile takes 4 KiB of the message, which the decoder cannot know: the count passes, and
    // the vector must grow with the tiles that arrive, not with the count.
    constexpr std::size_t fill = 64 * 1024;
    expect_rejected_within<std::vector<Tile>>(claiming<std::vector<Tile>>(fill, fill), 8);
    // A count right at the bound, the last string broken: memory for what did arrive, no more.
    std::string strings = claiming<std::vector<std::string>>(fill / 8, fill);
    const std::uint64_t huge = std::uint64_t{1} << 40;
    std::memcpy(strings.data() + strings.size() - sizeof huge, &huge, sizeof huge);
    expect_rejected_within<std::vector<std::string>>(strings, 8);
}

TEST(Serialize, ElementsThatEncodeToNothingAreBoundedByABudgetOfTheirOwn) {
    // They decode: a message may hold some of them...
    EXPECT_EQ(round_trip(std::vector<std::monostate>(1000)).size(), 1000u);
    EXPECT_EQ(round_trip(std::vector<Nothing>(10)), std::vector<Nothing>(10));
    EXPECT_EQ(round_trip(std::list<std::tuple<>>(10)).size(), 10u);
    // ...but no more than the budget (in bytes of memory: a monostate takes one), however many
    // containers share it.
    const std::uint64_t too_many = mp::detail::empty_elements_budget + 1;
    EXPECT_THROW(mp::decode<std::vector<std::monostate>>(claiming<std::vector<std::monostate>>(too_many, 0)),
                 mp::DecodeError);
    EXPECT_THROW(mp::decode<std::vector<Nothing>>(claiming<std::vector<Nothing>>(std::uint64_t{1} << 60, 0)),
                 mp::DecodeError);
    // Many inner vectors, each claiming as many Nothings as there are bytes left.
    constexpr std::size_t inner = 2048;
    std::string nested = claiming<std::vector<std::vector<Nothing>>>(inner, inner * 8);
    for (std::size_t i = 0; i < inner; ++i) {
        const std::uint64_t left = (inner - i - 1) * 8;
        std::memcpy(nested.data() + mp::tag_size + 8 + i * 8, &left, sizeof left);
    }
    testing_support::AllocationMeter meter(64 * mp::detail::empty_elements_budget);
    EXPECT_THROW(mp::decode<std::vector<std::vector<Nothing>>>(nested), mp::DecodeError);
    expect_at_most(meter, 4 * mp::detail::empty_elements_budget, "nested vectors of Nothing");
}

namespace {
// Has room for four elements, and says so.
template <class T>
struct RoomForFour : std::allocator<T> {
    using value_type = T;
    RoomForFour() = default;
    template <class U>
    RoomForFour(const RoomForFour<U>&) noexcept {}
    template <class U>
    struct rebind {
        using other = RoomForFour<U>;
    };
    std::size_t max_size() const noexcept { return 4; }
};
}  // namespace

TEST(Serialize, AnAllocationFailureWhileDecodingIsADecodeErrorNamingTheType) {
    // More elements than the container can hold at all: std::length_error inside.
    using Small = std::vector<int, RoomForFour<int>>;
    std::string ten = claiming<Small>(10, 10 * sizeof(int));
    try {
        mp::decode<Small>(ten);
        ADD_FAILURE() << "ten ints in room for four";
    } catch (const mp::DecodeError& e) {
        EXPECT_NE(std::string(e.what()).find("RoomForFour"), std::string::npos) << e.what();
    }
    // No memory left: std::bad_alloc inside.
    if (!testing_support::AllocationMeter::available())
        GTEST_SKIP() << "operator new cannot be made to fail under this sanitizer";
    const std::string bytes = mp::encode(std::vector<std::string>(100, std::string(200, 'x')));
    try {
        testing_support::AllocationMeter meter(4096);
        mp::decode<std::vector<std::string>>(bytes);
        ADD_FAILURE() << "decoded with 4 KiB to spare";
    } catch (const mp::DecodeError& e) {
        EXPECT_NE(std::string(e.what()).find("std::vector<"), std::string::npos) << e.what();
    }
}
