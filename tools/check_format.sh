#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks that every C++ file of the project is as clang-format leaves it (.clang-format). The version
# is pinned, Debian 12's clang-format-14: another one formats some constructs differently. Names each
# file that is not and exits 1 if there is one.
#   tools/check_format.sh [CLANG_FORMAT]    (clang-format-14 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
clang_format=${1:-clang-format-14}
if ! command -v "$clang_format" >/dev/null; then
    echo "$clang_format: not found (Debian 12: apt-get install clang-format-14)" >&2
    exit 2
fi
# Build trees (build*/) hold no sources of ours; a tarball has no git, so walk rather than ask git.
bad=()
while IFS= read -r -d '' file; do
    "$clang_format" --dry-run --Werror "$file" >/dev/null 2>&1 || bad+=("${file#./}")
done < <(find . \( -name 'build*' -o -name .git \) -prune -o -type f \( -name '*.cpp' -o -name '*.hpp' \) -print0 |
    sort -z)
if ((${#bad[@]} > 0)); then
    printf '%s: not formatted\n' "${bad[@]}"
    echo "fix: $clang_format -i ${bad[*]}"
    exit 1
fi
