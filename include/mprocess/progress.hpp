// SPDX-License-Identifier: Apache-2.0
/// @file
/// A ready-made Progress for Pool::map: a live line on a terminal, plain lines elsewhere.
///
/// @code{.cpp}
/// pool.map(count_primes, ranges, 1, mp::ProgressLine("counting"));
/// @endcode
///
/// On a terminal it redraws one line, `counting [#########...........]  45% 45/100`, and ends it
/// when the map is done. Into a pipe or a file it writes a plain line at each tenth of the way, so
/// logs stay readable.
#pragma once

#include "mprocess/export.hpp"

#include <cstddef>
#include <cstdio>
#include <string>

namespace mprocess {

/// A Progress that draws `label`, a bar and the count on `out` (see progress.hpp).
class MPROCESS_EXPORT ProgressLine {
public:
    /// Live on a terminal, plain lines otherwise, as `out` is.
    explicit ProgressLine(std::string label = "progress", std::FILE* out = stderr);
    /// As a terminal or not, regardless of what `out` is (for tests and for forcing a style).
    ProgressLine(std::string label, std::FILE* out, bool live);

    /// Shows `done` items out of `total`; only a change of what is shown is written.
    void operator()(std::size_t done, std::size_t total);

private:
    std::string label_;
    std::FILE* out_;
    bool live_;
    int shown_ = -1;  // the last percentage (live) or tenth (plain) written
};

}  // namespace mprocess
