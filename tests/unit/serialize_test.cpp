#include <mprocess/serialize.hpp>

#include <array>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

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
