#!/usr/bin/env bash
# gemv-sass.sh — static instruction counts of the NVFP4 GEMV's main loop, per weight tile (16 × 64, 576
# bytes), for every kernel variant: a figure of merit that needs no GPU. Hopper issues one warp-instruction
# per clock per scheduler (4 per SM) and integer logic at half that rate; at 4.8 TB/s an H200 SM receives a
# tile every ~31 clocks, so a GEMV above ~120 instructions per tile cannot reach full bandwidth whatever
# its memory pipeline does. Run from the repository root:
#   scripts/gemv-sass.sh [ARCH]        ARCH defaults to sm_90a
# It compiles ggml-fp4/cuda/gemv.cu to a cubin with the build's nvcc and disassembles it with nvdisasm:
# the CUDA toolkit's own when present, else the one in Debian's non-free nvidia-cuda-toolkit (CUDA 11.8),
# fetched once into build/sass-tools; that older nvdisasm reads the cubin once its ELF header is rewritten
# in the old format (the machine code is the same).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-sm_90a}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
TOOLS=build/sass-tools
mkdir -p "$TOOLS"

NVDISASM=$(command -v nvdisasm || ls "$(dirname "$NVCC")/nvdisasm" 2> /dev/null || true)
PATCH_HEADER=0
if [ -z "$NVDISASM" ]; then
    NVDISASM=$TOOLS/deb/usr/bin/nvdisasm
    PATCH_HEADER=1
    if [ ! -x "$NVDISASM" ]; then
        echo "fetching nvdisasm from Debian's nvidia-cuda-toolkit (non-free) into $TOOLS" >&2
        mkdir -p "$TOOLS/lists/partial" "$TOOLS/cache/archives/partial"
        keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        echo "deb [signed-by=$keyring] http://deb.debian.org/debian bookworm non-free" > "$TOOLS/sources.list"
        apt=(apt-get -qq -o Dir::Etc::SourceList="$PWD/$TOOLS/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o Dir::State::Lists="$PWD/$TOOLS/lists" -o Dir::Cache="$PWD/$TOOLS/cache")
        "${apt[@]}" update
        (cd "$TOOLS" && "${apt[@]}" download nvidia-cuda-toolkit 2> /dev/null)
        dpkg-deb -x "$TOOLS"/nvidia-cuda-toolkit_*.deb "$TOOLS/deb"
    fi
fi

CUBIN=$TOOLS/gemv.$ARCH.cubin
"$NVCC" -cubin -arch="$ARCH" -std=c++17 --expt-relaxed-constexpr -I ggml-fp4 -Xptxas -v -o "$CUBIN" \
    ggml-fp4/cuda/gemv.cu 2> "$TOOLS/ptxas.log"
if [ $PATCH_HEADER = 1 ]; then
    # Old CUDA ELF: OS/ABI 0x33, ABI version 7, e_flags = virtual SM << 16 | 64-bit | unified | SM.
    sm=$(od -An -tu1 -j 49 -N 1 "$CUBIN" | tr -d ' ')
    flags=$(( (sm << 16) | 0x500 | sm ))
    printf '\x33\x07' | dd of="$CUBIN" bs=1 seek=7 conv=notrunc status=none
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((flags & 255)) $((flags >> 8 & 255)) $((flags >> 16 & 255)) \
        $((flags >> 24 & 255)))" | dd of="$CUBIN" bs=1 seek=48 conv=notrunc status=none
fi

# Registers and spills from ptxas, keyed by kernel name.
awk '/Compiling entry function/ { match($0, /_Z[A-Za-z0-9_]+/); k = substr($0, RSTART, RLENGTH) }
     /spill stores/ { sp[k] = $5 "+" $9 }
     /Used [0-9]+ registers/ { match($0, /Used [0-9]+/); print k, substr($0, RSTART + 5, RLENGTH - 5), sp[k] }' \
    "$TOOLS/ptxas.log" > "$TOOLS/regs.txt"

printf '%-34s %5s %6s %8s %s\n' "kernel <NB,R,P,epilogue,norm,x>" regs spill per-tile " most frequent, per tile"
"$NVDISASM" -c "$CUBIN" | awk -v regs="$TOOLS/regs.txt" '
function flush(   i, k, lo, hi, h, best, bh, nb, tiles, op, line, n, top, o, label, targs, p) {
    if (fname !~ /gemv_nvfp4_kernel/) return
    best = 0; bh = 0
    for (i = 1; i <= nbr; i++) {  # the backward branch whose loop holds the most MMAs: the main loop
        lo = lab[brt[i]]; hi = bra[i]
        if (lo == "" || lo >= hi) continue
        h = 0; for (k = lo; k <= hi; k++) if (ins[k] ~ /^HMMA/) h++
        if (h > bh) { bh = h; best = i }
    }
    if (!best) return
    lo = lab[brt[best]]; hi = bra[best]
    match(fname, /ILi[0-9]+ELi[0-9]+ELi[0-9]+ELNS0_8EpilogueE[0-9]ELb[01]ELb[01]/)
    targs = substr(fname, RSTART, RLENGTH); sub(/NS0_8Epilogue/, "", targs)
    split(targs, p, /[^0-9]+/)  # p[2..7]: NB, R, P, epilogue, norm, BF16 activations
    nb = p[2]; tiles = bh / (4 * nb)  # each tile is 4 MMAs per 8 activation rows
    delete cnt; n = 0
    for (k = lo; k <= hi; k++) { op = ins[k]; sub(/[ .].*/, "", op); cnt[op]++; n++ }
    line = ""
    for (top = 0; top < 6; top++) {
        o = ""; for (op in cnt) if (o == "" || cnt[op] > cnt[o]) o = op
        line = line sprintf(" %s %.1f", o, cnt[o] / tiles); delete cnt[o]
    }
    label = sprintf("<%s,%s,%s,%s,%s,%s>", p[2], p[3], p[4], p[5] == 0 ? "store" : p[5] == 1 ? "add" : "swiglu",
                    p[6] ? "norm" : "-", p[7] ? "bf16" : "f32")
    printf "%-34s %5s %6s %8.1f %s\n", label, reg[fname], spill[fname], n / tiles, line
}
BEGIN { while ((getline l < regs) > 0) { split(l, f, " "); reg[f[1]] = f[2]; spill[f[1]] = f[3] } }
/^\.text\./ { flush(); fname = $0; sub(/^\.text\./, "", fname); sub(/:$/, "", fname)
              nins = 0; nbr = 0; delete lab; delete ins; delete bra; delete brt; next }
/^\.L_x_[0-9]+:/ { l = $1; sub(/:$/, "", l); lab[l] = nins + 1; next }
/\/\*[0-9a-f]+\*\// {
    s = $0; sub(/^[ \t]*\/\*[0-9a-f]+\*\/[ \t]*/, "", s); sub(/[ \t]*;.*$/, "", s); sub(/^@!?U?P[0-9T]+ +/, "", s)
    if (s == "" || s ~ /^NOP/) next
    ins[++nins] = s
    if (s ~ /^BRA/ && match(s, /\.L_x_[0-9]+/)) { bra[++nbr] = nins; brt[nbr] = substr(s, RSTART, RLENGTH) }
}
END { flush() }'
