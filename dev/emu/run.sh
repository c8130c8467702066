#!/usr/bin/env bash
# Builds and runs the CPU emulator tests of the CUDA kernels (see cuda_emu.h, emu_test.cpp).
#   dev/emu/run.sh                 plain build (-O2)
#   EMU_SAN=address,undefined dev/emu/run.sh   with AddressSanitizer + UBSan
#   EMU_SAN=thread dev/emu/run.sh  with ThreadSanitizer (races between emulated threads)
#   dev/emu/run.sh --quick         fewer activations at the large linear shapes, small mma shapes
#   dev/emu/run.sh --only=GROUP[,GROUP]  conversions, emulator, linear, mma, wgmma, tma, embeddings, ...
# Kernel sources are copied to dev/emu/build/.../kernels by copy-kernels.sh (one rewrite).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
san="${EMU_SAN:-}"
src_dir="${EMU_KERNELS:-$root/kernels}" # EMU_KERNELS: test another copy (e.g. a mutant)
# One build folder per configuration, so that runs with different settings can overlap.
build="$here/build/${EMU_KERNELS:+mutant-$$-}${san:-plain}"
build="${build//,/_}"
"$here/copy-kernels.sh" "$src_dir" "$build/kernels"
"$here/copy-kernels.sh" "$root/dev/probes" "$build/probes" # dev/probes/resident.cuh (probe_test.h)
# -fno-strict-aliasing: CUDA code reads 16-bit shared arrays through 32-bit pointers (linear_mma.cu).
flags=(-O2 -std=c++20 -pthread -fno-strict-aliasing -Wall -Wno-unused-function -Wno-unknown-pragmas -Wno-psabi)
exe="$build/emu_test"
if [[ -n "$san" ]]; then
    flags+=(-g -fno-omit-frame-pointer "-fsanitize=$san")
    [[ "$san" == *undefined* ]] && flags+=(-fno-sanitize-recover=undefined)
fi
g++ "${flags[@]}" -I "$build/kernels" -I "$build/probes" -I "$here/fake_include" -include "$here/cuda_emu.h" \
    "$here/emu_test.cpp" -o "$exe"
if [[ -n "${EMU_KERNELS:-}" ]]; then # a throw-away mutant build
    status=0; "$exe" "$@" || status=$?; rm -rf "$build"; exit $status
fi
exec "$exe" "$@"
