#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The project's one entry point.
#   ./dev.sh demo    install what is missing, build, run the demo: a scripted session of the tickets
#                    app (the lecture's Controller and Dispatcher)
#   ./dev.sh examples  the same, then the lecture's example programs in turn
#   ./dev.sh test    install what is missing, build, run the whole test suite: a normal build (with
#                    the tickets app's end-to-end tests and mpi::Pool under mpirun), a
#                    consumer project against the installed package, a shared library build (the
#                    public API's tests, its exports, its package), the reference manual (as
#                    ./dev.sh docs, so an undocumented public name fails), the whole suite again
#                    in an ASan+UBSan build and in a TSan build (clang 19: see cmake/helpers.cmake;
#                    each runs every test it defines, bar those a CMake rule keeps out with its
#                    reason), and a bounded libFuzzer run on the socket frame and message decoders
#   ./dev.sh bench   install what is missing, build, compare mprocess with Python's multiprocessing,
#                    like for like (bench/fair/run.py; its options pass through: --runs 9, --only queue),
#                    with the latency table, and draw both into build/bench/*.png
#   ./dev.sh docs    install doxygen if missing, build the reference manual from the public headers
#                    into build/docs/html; any warning (an undocumented public name) fails it
set -euo pipefail
cd "$(dirname "$0")"
jobs=$(nproc 2>/dev/null || echo 2)

# install_deps [package...]: the packages named, or everything the project needs.
install_deps() {
    # clang 19 for the sanitizer and fuzz builds: its ASan and TSan runtimes hold their allocator's
    # locks across fork() (GCC 12's do not); llvm-19 for their symbolizer.
    local pkgs=(g++ cmake make pkg-config libcereal-dev libssl-dev libgmp-dev iproute2 libopenmpi-dev openmpi-bin
        clang-19 libclang-rt-19-dev llvm-19 libgtest-dev libgmock-dev libbenchmark-dev python3 doxygen
        clang-format-14 clang-tidy-14)
    (($# > 0)) && pkgs=("$@")
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    echo "== installing: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The builds are CMakePresets.json's (each in build/<preset>), the sanitizer runs' options included.
# build PRESET
build() {
    cmake --preset "$1" >/dev/null
    cmake --build --preset "$1" -j "$jobs"
}

run_tests() {
    ctest --preset "$1" -j "$jobs"
}

symbolizer=/usr/lib/llvm-19/bin/llvm-symbolizer  # the fuzz run's (the test presets name it for the test runs)

demo() {
    build release
    local input=$'4\n7\n-3\nhello\n2.5\n'"$(printf '9%.0s' {1..60})"$'\n-12345678901234567890\n1_000_000\n'
    echo
    echo "======== tickets: a controller, a dispatcher and its workers, on this machine ========"
    echo "input, one per line (even, odd, negative, not integers, huge):"
    printf '%s' "$input" | sed 's/^/    /'
    echo "---- output"
    # From a here-string, not a pipe: under pipefail a writer that outlives its reader fails.
    build/release/apps/tickets/tickets <<<"$input"
    echo
    echo "Interactive: build/release/apps/tickets/tickets   Across machines: tickets --help"
}

examples() {
    demo
    for ex in process1 perf1 mprocess1 pipe_exchange subprocess2 spawn_methods mprocessQueue3 powerof \
        mprocessShared1 mprocessShared2 value_race counter_lock pool_squares mapReduce1 pool_primes pool_pi net_echo remote_queue; do
        echo
        echo "======== $ex ========"
        "build/release/examples/$ex"
    done
}

# consumer PREFIX BUILD [cmake options...]: the consumer project built against an installed package.
consumer_of() {
    local prefix=$1 dir=$2
    shift 2
    rm -rf "$dir"
    cmake -S tests/consumer -B "$dir" -DCMAKE_PREFIX_PATH="$prefix" "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
    "$dir/consumer"
}

consumer() {
    echo "== consumer project against the installed package (static, with the mpi component, in C++23)"
    rm -rf build/install
    cmake --install build/release --prefix "$PWD/build/install" >/dev/null
    consumer_of "$PWD/build/install" build/consumer -DCONSUMER_WITH_MPI=ON -DCONSUMER_CXX_STANDARD=23
    mpirun --allow-run-as-root --oversubscribe -np 3 build/consumer/consumer_mpi
    echo "== pkg-config (static: --static brings libcrypto)"
    local pc="$PWD/build/install/lib/pkgconfig"
    [ -d "$pc" ] || pc="$(dirname "$(find "$PWD/build/install" -name mprocess.pc | head -n1)")"
    # shellcheck disable=SC2046
    g++ -std=c++20 tests/consumer/main.cpp -o build/consumer/consumer_pc \
        $(PKG_CONFIG_PATH="$pc" pkg-config --static --cflags --libs mprocess)
    build/consumer/consumer_pc
}

# The shared library: its tests of the public API under every start method, what it exports, and a
# consumer of its installed package, which has no MPI part: asking for it must fail, saying so.
shared() {
    echo "== shared library build: the public API's tests, the exports, a consumer"
    build shared
    run_tests shared
    rm -rf build/install-shared
    cmake --install build/shared --prefix "$PWD/build/install-shared" >/dev/null
    consumer_of "$PWD/build/install-shared" build/consumer-shared
    local out
    if out=$(cmake -S tests/consumer -B build/consumer-shared-mpi -DCMAKE_PREFIX_PATH="$PWD/build/install-shared" \
        -DCONSUMER_WITH_MPI=ON 2>&1); then
        echo "find_package(mprocess COMPONENTS mpi) succeeded on a package built without MPI" >&2
        return 1
    fi
    # CMake wraps the reason: read it as one line.
    tr -s ' \n' ' ' <<<"$out" | grep -q "built without its MPI part" || { echo "$out" >&2; return 1; }
    echo "find_package(mprocess COMPONENTS mpi) without the MPI part: refused, saying why"
}

docs() {
    echo "== reference manual (doxygen)"
    rm -rf build/docs && mkdir -p build/docs
    # Configuring generates <mprocess/version.hpp>, which the manual documents too.
    cmake --preset release >/dev/null
    { cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = build/docs"
      echo "INPUT += build/release/include/mprocess/version.hpp"; } | doxygen -
    echo "reference manual: $PWD/build/docs/html/index.html"
}

tests() {
    echo "== normal build"
    build release
    run_tests release
    echo "== clang-tidy on the library's sources"
    tools/run_clang_tidy.sh build/release
    consumer
    shared
    docs
    # The sanitizer builds: every test, example and app, no MPI (whose runtime is not instrumented)
    # and no benchmarks (no tests); the tests they do not run are disabled in CMake, with the reason.
    echo "== ASan+UBSan build: the whole suite"
    build asan
    run_tests asan
    echo "== TSan build: the whole suite"
    build tsan
    run_tests tsan
    echo "== libFuzzer on the receiving side of a connection (frames; messages alone, with a memory bound), 60 s"
    build fuzz
    rm -rf build/fuzz/corpus && mkdir -p build/fuzz/corpus
    local target
    for target in frames decode; do
        cp -r "fuzz/corpus/$target" build/fuzz/corpus/  # the seeds stay as committed
        # Findings besides crashes: a single allocation of 8 MB (an input of 4 KiB needs 2 MB at
        # most: the budget of elements that take no bytes, grown), a process over 1.5 GB (ASan's
        # quarantine holds 256 MB), and in fuzz_decode any message holding memory out of
        # proportion to its size.
        ASAN_SYMBOLIZER_PATH="$symbolizer" \
            "build/fuzz/fuzz/fuzz_$target" -max_total_time=30 -max_len=4096 -malloc_limit_mb=8 -rss_limit_mb=1536 \
            -print_final_stats=1 "build/fuzz/corpus/$target"
    done
    echo "== all test runs passed"
}

bench() {
    build release
    echo "== like for like: every run a fresh process on both sides, interleaved, checked (bench/fair/run.py)"
    local status=0
    python3 bench/fair/run.py --latency --json build/bench/fair.json "$@" || status=$?
    # Debian's matplotlib is the system interpreter's, whichever python3 comes first on PATH.
    /usr/bin/python3 bench/fair/plot.py build/bench/fair.json build/bench
    echo
    echo "== the micro benchmarks beside the machine's limits (bench/compare.py); its Python figures (network,"
    echo "   manager, tickets rows, until bench/fair/ has them) are not like for like"
    python3 bench/compare.py --bench build/release/bench/bench_pipe
    return "$status"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    demo) install_deps && demo ;;
    examples) install_deps && examples ;;
    test) install_deps && tests ;;
    bench) install_deps && install_deps python3-matplotlib && bench "$@" ;;
    docs) install_deps doxygen && docs ;;
    *) echo "usage: $0 demo|examples|test|bench|docs" >&2; exit 2 ;;
esac
