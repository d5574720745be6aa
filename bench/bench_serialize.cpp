// SPDX-License-Identifier: Apache-2.0
// Decoding messages in this process, no transport: what the decoder's checks of every count and
// length cost on the shapes that have many small elements.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <mprocess/serialize.hpp>

namespace mp = mprocess;

namespace {

struct Row {  // a user type: its elements go through its own serialize()
    std::int64_t id = 0;
    std::string name;
    std::vector<double> values;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(id, name, values);
    }
};

template <class T>
void decode_each_iteration(benchmark::State& state, const T& value) {
    const std::string bytes = mp::encode(value);
    for (auto _ : state) benchmark::DoNotOptimize(mp::decode<T>(bytes));
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
}

void BM_DecodeShortStrings(benchmark::State& state) {
    std::vector<std::string> v;
    for (int i = 0; i < 1'000'000; ++i) v.push_back("item" + std::to_string(i));
    decode_each_iteration(state, v);
}

void BM_DecodeStructs(benchmark::State& state) {
    std::vector<Row> v;
    for (int i = 0; i < 100'000; ++i) v.push_back(Row{i, "row" + std::to_string(i), {0.5, 1.5}});
    decode_each_iteration(state, v);
}

void BM_DecodeMap(benchmark::State& state) {
    std::map<std::string, std::int32_t> m;
    for (int i = 0; i < 100'000; ++i) m.emplace("key" + std::to_string(i), i);
    decode_each_iteration(state, m);
}

}  // namespace

BENCHMARK(BM_DecodeShortStrings)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_DecodeStructs)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_DecodeMap)->Unit(benchmark::kMillisecond)->MinTime(1.0);

BENCHMARK_MAIN();
