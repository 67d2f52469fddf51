#!/usr/bin/env bash
# device-check.sh — the one script for a GPU machine: build with the CUDA backend for sm_90a, run the
# backend parity tests, the golden tests and the benchmarks that exist, and print a summary table.
# Run from the repository root:
#   scripts/device-check.sh          on the GPU machine (logs under $OUT when set, else build/device-check/;
#                                    summary.txt there gets each step's line as it ends)
#   scripts/device-check.sh pack     on a build machine with the Debian -dev packages: copies the headers and
#                                    libraries the build needs into build-deps/ (carry it to a machine that has
#                                    no package registry; this script uses it when apt cannot install them)
# Environment: FP4_BENCH_CONFIG (config.json for bench --synthetic), FP4_CUDA_ARCHS (default 90a),
# FP4_BENCH_REPS (bench repetitions, default 2), FP4_SKIP_BENCH=1 (correctness only),
# FP4_KERNEL_BENCH=1 (also time each GEMV shape alone at M = 1..32, ~90 s), FP4_FOLD_BENCH=1 (batch 1 with
# the RMSNorm never folded into the GEMVs, -np 32 with it always folded, and with F32 activations between
# the fused groups), FP4_NCU=1 (Nsight Compute's
# throughput, pipe utilisation, instruction mix and warp stalls for the NVFP4 GEMV, when ncu is installed:
# is it memory-, integer-pipe- or latency-bound? By count, ~60 of its ~124 instructions per tile are
# integer decode, and Hopper issues 2 integer warp-instructions per clock per SM against the ~36 clocks per
# 576-byte tile that full bandwidth leaves).
# The five speed-ups (FP4_CUDA_FUSE, FP4_CUDA_PDL, FP4_CUDA_FLASH, FP4_CUDA_GRAPHS, and FP4_CUDA_BF16_X, which
# acts within fused groups) and the BF16 KV cache are the defaults; "plain" runs set them off (=0, --kv-type
# f32) for the baseline. test_backend_ops checks each speed-up against the plain backend. Before a GPU: `make test-cuda-emu` runs the same tests on the CPU.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DEPS=$ROOT/build-deps

if [ "${1:-}" = pack ]; then
    rm -rf "$DEPS" && mkdir -p "$DEPS"/include "$DEPS"/lib/pkgconfig "$DEPS"/share/cmake "$DEPS"/bin
    # Only what the build reads: the working tree and what it carries travel within 64 MiB.
    cp -r /usr/include/nlohmann /usr/include/CLI /usr/include/doctest /usr/include/pcre2.h /usr/include/webp \
        /usr/include/jpeglib.h /usr/include/jerror.h /usr/include/jmorecfg.h \
        /usr/include/x86_64-linux-gnu/jconfig.h "$DEPS"/include/
    mkdir -p "$DEPS"/include/stb && cp /usr/include/stb/stb_image.h "$DEPS"/include/stb/
    cp -r /usr/share/cmake/nlohmann_json "$DEPS"/share/cmake/
    # Each pkg-config library: its shared object (under the soname it is loaded by) and its .pc, relocated.
    for pair in libpcre2-8:pcre2-8 libwebp:webp libwebpdemux:webpdemux libwebpmux:webpmux libjpeg:jpeg; do
        pc=${pair%%:*} so=/usr/lib/x86_64-linux-gnu/lib${pair#*:}.so
        soname=$(basename "$(readlink "$so")" | sed 's/^\(lib[^.]*\.so\.[0-9]*\).*/\1/')
        cp -L "$so" "$DEPS/lib/$soname" && ln -s "$soname" "$DEPS/lib/$(basename "$so")"
        sed 's|^prefix=.*|prefix=${pcfiledir}/../..|; s|^libdir=.*|libdir=${prefix}/lib|; s|^includedir=.*|includedir=${prefix}/include|' \
            /usr/lib/x86_64-linux-gnu/pkgconfig/$pc.pc > "$DEPS"/lib/pkgconfig/$pc.pc
    done
    cp -L "$(command -v pkg-config)" "$DEPS"/bin/pkg-config
    cp -L /lib/x86_64-linux-gnu/libpkgconf.so.3 "$DEPS"/lib/ 2>/dev/null
    du -sh "$DEPS"
    exit 0
fi

LOG=${OUT:-$ROOT/build/device-check}
mkdir -p "$LOG"
rm -f "$LOG/summary.txt"
JOBS=$(nproc)
SUMMARY=()
step() {  # step NAME TIMEOUT_S COMMAND...: runs with a timeout, logs to $LOG/NAME.log, records status and time
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "=== $name: $*"
    timeout "$limit" "$@" > "$LOG/$name.log" 2>&1
    local rc=$?
    local status=ok
    [ $rc -eq 124 ] && status="TIMEOUT(${limit}s)"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="FAIL(rc=$rc)"
    tail -n 40 "$LOG/$name.log"
    SUMMARY+=("$(printf '%-22s %-16s %5ds' "$name" "$status" $((SECONDS - t0)))")
    printf '%s\n' "${SUMMARY[-1]}" >> "$LOG/summary.txt"  # kept if the whole run is cut short
    return $rc
}

nvidia-smi --query-gpu=name,memory.total --format=csv
nvidia-smi --query-gpu=clocks.max.sm,clocks.max.mem,driver_version --format=csv,noheader

# Build dependencies: the Debian packages if present or installable, else the carried build-deps/.
need_deps() {
    for h in nlohmann/json.hpp CLI/CLI.hpp doctest/doctest.h stb/stb_image.h pcre2.h webp/demux.h jpeglib.h; do
        [ -e /usr/include/$h ] || return 0
    done
    command -v pkg-config > /dev/null || return 0
    return 1
}
CMAKE_EXTRA=()
if need_deps; then
    if [ -d "$DEPS" ]; then
        echo "=== build dependencies: using the carried $DEPS"
        export PATH=$DEPS/bin:$PATH LD_LIBRARY_PATH=$DEPS/lib:${LD_LIBRARY_PATH:-} PKG_CONFIG_PATH=$DEPS/lib/pkgconfig
        CMAKE_EXTRA+=(-DCMAKE_PREFIX_PATH="$DEPS" -DCMAKE_INCLUDE_PATH="$DEPS/include")
    elif timeout 60 apt-get update > "$LOG/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive timeout 150 apt-get install -y cmake g++ pkg-config libcli11-dev libstb-dev \
            doctest-dev nlohmann-json3-dev libpcre2-dev libjpeg-dev libwebp-dev >> "$LOG/apt.log" 2>&1; then
        echo "=== build dependencies: installed with apt-get"
    else
        echo "apt-get unavailable and no build-deps/: run 'scripts/device-check.sh pack' where the packages exist"
        echo "and carry build-deps/ along"
    fi
fi

GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
# A build folder configured elsewhere (another path, or without CUDA) is started afresh.
if [ -f build/CMakeCache.txt ] && { ! grep -q "^FP4_CUDA:BOOL=ON" build/CMakeCache.txt ||
    ! grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT\$" build/CMakeCache.txt; }; then
    rm -rf build
fi
step configure 60 cmake -S . -B build "${GEN[@]}" -DFP4_CUDA=ON -DFP4_CUDA_ARCHS="${FP4_CUDA_ARCHS:-90a}" \
    "${CMAKE_EXTRA[@]}"
step build 240 cmake --build build -j "$JOBS"

PLAIN=(env FP4_CUDA_FUSE=0 FP4_CUDA_PDL=0 FP4_CUDA_FLASH=0 FP4_CUDA_GRAPHS=0 FP4_CUDA_BF16_X=0)
if [ -x build/tests/test_backend_ops ]; then
    step backend_ops 120 build/tests/test_backend_ops
fi
if [ -d build ]; then
    step ctest_golden 120 ctest --test-dir build -R "golden" --output-on-failure
    golden_rc=$?
    # The same goldens with the speed-ups off; if only the defaults fail, each speed-up off alone says which
    # is at fault (no second device session needed to bisect).
    step ctest_golden_plain 120 "${PLAIN[@]}" ctest --test-dir build -R "golden" --output-on-failure
    plain_rc=$?
    if [ $golden_rc -ne 0 ] && [ $plain_rc -eq 0 ]; then
        for v in FUSE PDL FLASH GRAPHS BF16_X; do
            step "golden_without_$v" 120 env "FP4_CUDA_$v=0" ctest --test-dir build -R "golden" --output-on-failure
        done
    fi
fi

# The demo on the GPU: the psalm continuation and the six shape_* pictures named by colour.
if [ -x build/bin/chat ]; then
    chat_cuda() {
        local m=tests/data/tiny-kjv/nvfp4
        build/bin/chat -m $m --device cuda --temp 0 -n 48 -p "Psalms 23" 2> /dev/null
        for s in red_circle blue_square green_triangle yellow_cross purple_circle orange_square; do
            printf '%-16s ' "$s"
            build/bin/chat -m $m --device cuda --temp 0 -n 16 -p "What is in the image?" \
                --image tests/data/tiny-kjv/images/$s.png 2> /dev/null
        done
    }
    export -f chat_cuda
    step chat_cuda 120 bash -c chat_cuda
fi

if [ -x build/bin/bench ] && [ -z "${FP4_SKIP_BENCH:-}" ]; then
    CFG=${FP4_BENCH_CONFIG:-tests/data/configs/mistral-small-3.2-24b-nvfp4a16.config.json}
    # Plain backend: the baseline of this card (last figures, H200: pp512 7,773, tg128 85.9, -np 32 712 t/s),
    # with its per-kernel table (H200 then: gate/up GEMV 52 us, down 64-75 us, BF16 lm_head 313 us).
    step bench_24b_plain 200 "${PLAIN[@]}" build/bin/bench --device cuda --synthetic "$CFG" -p 512 -n 128 \
        -r ${FP4_BENCH_REPS:-2} --image-size 1024 --kv-type f32 --profile --progress
    # The defaults (all speed-ups, BF16 KV cache): the same tests, also after 8192 tokens in the cache
    # (decode attention's share), and the design's 32 sequences of ~1,024 tokens (target 3,000 t/s on an
    # H200; the last figure, 712, was with 512-token prompts), with the per-kernel breakdown of both decodes
    # and of img1024 (7.46 TFLOP: the 60 ms target is 124 TFLOP/s; its row gives it against cuBLAS's rate).
    # pp2048 runs in passes of 512 tokens (chat's -ub, llama-bench's) and in one pass: each pass expands every
    # NVFP4 weight to BF16 for cuBLAS (~100 GB of traffic, about a third of a 512-token pass by bytes), so the
    # two say what a larger chat -ub would gain (pp512 with -ub 2048 is the same one pass, a repeat).
    step bench_24b 240 build/bin/bench --device cuda --synthetic "$CFG" -p 512,2048 -ub 512,2048 -n 128 -d 0,8192 \
        -r ${FP4_BENCH_REPS:-2} -np 32 --prompt-len 1024 --image-size 1024 --profile --progress
    # What a decode pass of 1-8 rows of one sequence costs (TTFT column): chat --draft N sends N + 1 rows per
    # pass on a GPU, worth it while 8 rows cost about what one does.
    step bench_rows 90 build/bin/bench --device cuda --synthetic "$CFG" -p 1,2,4,8 -n 0 -d 512 -r 3
    # Where the RMSNorm folds into its products (FP4_CUDA_FOLD_NORM_ROWS, default 8): never (batch 1 then
    # pays a norm kernel per group, which hands BF16 over, and its GEMVs run at 72-79 instructions per weight
    # tile instead of 97-127), and at every row count (-np 32 then runs the folded GEMVs of 176-272
    # instructions per tile): compare with bench_24b.
    if [ -n "${FP4_FOLD_BENCH:-}" ]; then
        step bench_fold_never 120 env FP4_CUDA_FOLD_NORM_ROWS=0 build/bin/bench --device cuda --synthetic "$CFG" \
            -p 0 -n 128 -r ${FP4_BENCH_REPS:-2} --profile
        step bench_fold_always 150 env FP4_CUDA_FOLD_NORM_ROWS=32 build/bin/bench --device cuda --synthetic "$CFG" \
            -p 0 -n 128 -r 1 -np 32 --prompt-len 1024 --profile
        # And the 32 sequences with F32 activations between the groups (FP4_CUDA_BF16_X=0): the GEMVs of
        # 17-32 rows at 144 instructions per weight tile instead of 104, twice the activation bytes.
        step bench_f32_links 150 env FP4_CUDA_BF16_X=0 build/bin/bench --device cuda --synthetic "$CFG" \
            -p 0 -n 128 -r 1 -np 32 --prompt-len 1024 --profile
    fi
fi
# Per-kernel figures on the 24B shapes (GEMV at M = 1..32, prefill GEMM, lm_head).
if [ -x build/tests/test_backend_ops ] && [ -n "${FP4_KERNEL_BENCH:-}" ] && [ -z "${FP4_SKIP_BENCH:-}" ]; then
    step kernel_bench 90 build/tests/test_backend_ops --no-skip -tc="bench*" -s
fi
# One decoder layer's seven GEMVs (q, k, v, o, gate, up, down) of the second decoded token.
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2> /dev/null)
if [ -n "${FP4_NCU:-}" ] && [ -n "$NCU" ] && [ -x build/bin/bench ]; then
    step ncu_gemv 300 "$NCU" --kernel-name regex:gemv_nvfp4 --launch-skip 300 --launch-count 7 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
        --section ComputeWorkloadAnalysis --section InstructionStats \
        build/bin/bench --device cuda --synthetic "${FP4_BENCH_CONFIG:-tests/data/configs/mistral-small-3.2-24b-nvfp4a16.config.json}" \
        -p 0 -n 4 -r 1
fi

echo
echo "=== summary (logs in $LOG)"
printf '%s\n' "${SUMMARY[@]}"
