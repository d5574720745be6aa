// SPDX-License-Identifier: Apache-2.0
/// @file
/// The lecture's map, filter and reduce, spread over a Pool's processes.
///
/// @code{.cpp}
/// mp::Pool pool;
/// auto f = mp::parallel_map(pool, to_fahrenheit, temps);        // [f(x) for x in temps]
/// auto even = mp::parallel_filter(pool, is_even, numbers);      // [x for x in numbers if is_even(x)]
/// long sum = mp::parallel_reduce(pool, add, numbers);           // functools.reduce(add, numbers)
/// @endcode
///
/// parallel_reduce combines neighbours in a tree: each worker folds a run of neighbouring items,
/// then the runs' results are folded in order. The order of the items is kept, so f needs to be
/// associative, f(f(a, b), c) == f(a, f(b, c)), not commutative. For an f that is not associative
/// (subtraction, say), pass {.associative = false}: the items are then folded from the left, one by
/// one, in this process, exactly as functools.reduce does.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "mprocess/pool.hpp"

namespace mprocess {

/// Pool::map: the results in order, or nothing for an f that returns void. A task's error is
/// thrown here once every chunk is done, as by Pool::map.
template <class F, class T>
auto parallel_map(Pool& pool, F f, const std::vector<T>& items, std::size_t chunksize = 0,
                  const Progress& progress = {}) {
    return pool.map(f, items, chunksize, progress);
}

/// The items for which pred is true, in their order. Only the verdicts travel back.
template <class F, class T>
std::vector<T> parallel_filter(Pool& pool, F pred, const std::vector<T>& items, std::size_t chunksize = 0) {
    const auto keep = pool.map(pred, items, chunksize);
    std::vector<T> out;
    for (std::size_t i = 0; i < items.size(); ++i)
        if (keep[i]) out.push_back(items[i]);
    return out;
}

/// How parallel_reduce folds.
struct ReduceOptions {
    bool associative = true;    ///< false: fold sequentially here, as functools.reduce
    std::size_t chunksize = 0;  ///< items per worker task; 0: ceil(n / (4 * workers))
};

/// functools.reduce(f, items): ValueError for no items. f is a plain function or a lambda without
/// captures taking two T and returning a T (a compile error says so otherwise).
template <class F, class T>
T parallel_reduce(Pool& pool, F f, std::vector<T> items, ReduceOptions options = {}) {
    using Fp = detail::function_pointer_t<F>;
    static_assert(!std::is_void_v<Fp>, "mprocess: a Pool task must be a plain function or a lambda without captures");
    static_assert(std::is_convertible_v<std::invoke_result_t<Fp, T, T>, T>, "mprocess: reduce needs f(T, T) -> T");
    if (items.empty()) throw ValueError("reduce() of an empty sequence with no initial value");
    if (!options.associative) return detail::fold_left(Fp(f), std::move(items));
    // A level on the pool while there is enough to share; the last few results are folded here.
    const std::size_t workers = pool.processes();
    while (items.size() > 2 * workers) {
        std::size_t chunksize = options.chunksize;
        if (chunksize < 2) chunksize = std::max<std::size_t>(2, (items.size() + 4 * workers - 1) / (4 * workers));
        std::vector<AsyncResult<T>> parts;
        for (std::size_t i = 0; i < items.size(); i += chunksize)
            parts.push_back(
                detail::PoolAccess::fold_async(pool, Fp(f), items, i, std::min(items.size(), i + chunksize)));
        std::vector<T> next;
        next.reserve(parts.size());
        for (auto& p : parts) next.push_back(p.get());
        items = std::move(next);
    }
    return detail::fold_left(Fp(f), std::move(items));
}

/// functools.reduce(f, items, initial): initial for no items.
template <class F, class T>
T parallel_reduce(Pool& pool, F f, std::vector<T> items, T initial, ReduceOptions options = {}) {
    using Fp = detail::function_pointer_t<F>;
    if (items.empty()) return initial;
    if (!options.associative) {
        items.insert(items.begin(), std::move(initial));
        return detail::fold_left(Fp(f), std::move(items));
    }
    return Fp(f)(std::move(initial), parallel_reduce(pool, f, std::move(items), options));
}

}  // namespace mprocess
