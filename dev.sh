#!/usr/bin/env bash
# The project's one entry point.
#   ./dev.sh demo    install what is missing, build, run the demo: a scripted session of the tickets
#                    app (the lecture's Controller and Dispatcher)
#   ./dev.sh examples  the same, then the lecture's example programs in turn
#   ./dev.sh test    install what is missing, build, run the whole test suite: a normal build (with
#                    the tickets app's end-to-end tests and mpi::Pool under mpirun), a
#                    consumer project against the installed package, an ASan+UBSan build, and a
#                    TSan build of the tests where threads share connections, locks and pools, and a
#                    bounded libFuzzer run on the socket frame and message decoder
#   ./dev.sh bench   install what is missing, build, compare mprocess with Python's multiprocessing
set -euo pipefail
cd "$(dirname "$0")"
jobs=$(nproc 2>/dev/null || echo 2)

install_deps() {
    local pkgs=(g++ cmake make pkg-config libcereal-dev libssl-dev libgmp-dev iproute2 libopenmpi-dev openmpi-bin clang libgtest-dev libgmock-dev libbenchmark-dev python3)
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

# build DIR [cmake options...]
build() {
    local dir=$1
    shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
}

run_tests() {
    local dir=$1
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 300
}

demo() {
    build build/release
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

consumer() {
    echo "== consumer project against the installed package"
    rm -rf build/install build/consumer
    cmake --install build/release --prefix "$PWD/build/install" >/dev/null
    cmake -S tests/consumer -B build/consumer -DCMAKE_PREFIX_PATH="$PWD/build/install" >/dev/null
    cmake --build build/consumer -j "$jobs"
    build/consumer/consumer
    echo "== pkg-config"
    local pc="$PWD/build/install/lib/pkgconfig"
    [ -d "$pc" ] || pc="$(dirname "$(find "$PWD/build/install" -name mprocess.pc | head -n1)")"
    # shellcheck disable=SC2046
    g++ tests/consumer/main.cpp -o build/consumer/consumer_pc $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs mprocess)
    build/consumer/consumer_pc
}

tests() {
    echo "== normal build"
    build build/release
    run_tests build/release
    consumer
    echo "== ASan+UBSan build"
    build build/asan -DMPROCESS_SANITIZE="address;undefined" -DMPROCESS_BUILD_BENCH=OFF -DMPROCESS_WITH_MPI=OFF
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_tests build/asan
    echo "== TSan build: the tests that share connections, queues and locks between threads and processes"
    cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROCESS_SANITIZE=thread \
        -DMPROCESS_BUILD_BENCH=OFF -DMPROCESS_BUILD_EXAMPLES=OFF -DMPROCESS_WITH_MPI=OFF >/dev/null
    cmake --build build/tsan -j "$jobs" --target connection_test shm_lock_test queue_test synchronize_test pool_test listener_test manager_test
    TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build/tsan --output-on-failure -j "$jobs" --timeout 300 \
        -R '^(ConnectionTest|ShmLockTest|QueueTest|SyncTest|PoolTest|ProgressLine|ListenerTest|ManagerTest|EveryStartMethod/(ConnectionMethods|QueueMethods|SyncMethods|PoolMethods|ListenerMethods|ManagerMethods))\.'
    echo "== libFuzzer on the receiving side of a connection (frames, message decoding), 60 s"
    cmake -S . -B build/fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DMPROCESS_BUILD_TESTS=OFF -DMPROCESS_BUILD_EXAMPLES=OFF -DMPROCESS_BUILD_BENCH=OFF -DMPROCESS_BUILD_APPS=OFF \
        -DMPROCESS_WITH_MPI=OFF -DMPROCESS_BUILD_FUZZ=ON \
        -DMPROCESS_SANITIZE="address;undefined;fuzzer-no-link" >/dev/null
    cmake --build build/fuzz -j "$jobs" --target fuzz_frames
    rm -rf build/fuzz/corpus && cp -r fuzz/corpus/frames build/fuzz/corpus  # the seeds stay as committed
    build/fuzz/fuzz/fuzz_frames -max_total_time=60 -max_len=4096 -print_final_stats=1 build/fuzz/corpus
    echo "== all test runs passed"
}

bench() {
    build build/release
    python3 bench/compare.py --bench build/release/bench/bench_pipe "$@"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    demo) install_deps && demo ;;
    examples) install_deps && examples ;;
    test) install_deps && tests ;;
    bench) install_deps && bench "$@" ;;
    *) echo "usage: $0 demo|examples|test|bench" >&2; exit 2 ;;
esac
