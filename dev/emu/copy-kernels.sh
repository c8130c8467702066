#!/usr/bin/env bash
# copy-kernels.sh SRC DST: copies kernels/*.cu and *.cuh from SRC to DST for a host build with
# cuda_emu.h, with one rewrite: `extern __shared__ [__align__(N)] T x[];` becomes
# EMU_DYNAMIC_SHARED(T, x) (not expressible with a macro; see cuda_emu.h).
set -euo pipefail
mkdir -p "$2"
for f in "$1"/*.cu "$1"/*.cuh; do
    sed -E 's/extern[[:space:]]+__shared__[[:space:]]+(__align__\([0-9]+\)[[:space:]]+)?([A-Za-z_][A-Za-z_0-9]*( short| int)?)[[:space:]]+([A-Za-z_][A-Za-z_0-9]*)[[:space:]]*\[[[:space:]]*\][[:space:]]*;/EMU_DYNAMIC_SHARED(\2, \4);/' \
        "$f" > "$2/$(basename "$f")"
done
