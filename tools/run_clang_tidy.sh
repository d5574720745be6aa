#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# clang-tidy with the project's .clang-tidy over every source of the library (src/, and through them
# the headers its HeaderFilterRegex names), one file per core. .clang-tidy makes every finding an
# error, so this fails on any. The version is pinned like clang-format's: Debian 12's clang-tidy-14.
#   tools/run_clang_tidy.sh BUILD_DIR    a build with compile_commands.json (the release preset's)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
if [ ! -f "$build/compile_commands.json" ]; then
    echo "$build/compile_commands.json: missing (configure with CMAKE_EXPORT_COMPILE_COMMANDS=ON)" >&2
    exit 2
fi
root_re=$(printf '%s' "$root" | sed 's/[][\.*^$+?(){}|]/\\&/g')
# The database is g++'s: clang-tidy reads a copy without the flags clang does not know (GCC's own).
gcc_only=(-fno-gnu-unique)
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
sed_args=()
for flag in "${gcc_only[@]}"; do sed_args+=(-e "s/ $flag\([ \"]\)/\1/g"); done
sed "${sed_args[@]}" "$build/compile_commands.json" >"$db/compile_commands.json"
# Only the findings matter, not the command line run-clang-tidy echoes for each file nor clang-tidy's
# count of what it left out; unbuffered, so that each file's findings stay together.
PYTHONUNBUFFERED=1 run-clang-tidy-14 -clang-tidy-binary clang-tidy-14 -p "$db" -j "$(nproc)" -quiet \
    "^$root_re/src/.*\.cpp\$" 2>&1 | sed -e '/^clang-tidy-14 /d' -e '/[0-9] warnings\? generated\.$/d'
