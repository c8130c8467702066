#!/usr/bin/env bash
# Builds the fake CUDA driver (driver.cpp + the kernels on the CPU emulator, kernels.cpp) as
# dev/fakecuda/build/libcuda.so.1 (+ libcuda.so), for run.sh. Needs g++ and cuda.h (the pip
# CUDA headers that scripts/cuda-env installs; CUDA_INCLUDE overrides). Prints the folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$here/build"
include="${CUDA_INCLUDE:-}"
if [[ -z "$include" && -f "$root/.cuda/home" ]]; then include="$(cat "$root/.cuda/home")/include"; fi
[[ -f "$include/cuda.h" ]] || { echo "fakecuda: no cuda.h (set CUDA_INCLUDE or run scripts/cuda-env)" >&2; exit 1; }
flags=(-O2 -std=c++20 -pthread -fPIC -fno-strict-aliasing -fvisibility=hidden -Wall
    -Wno-unused-function -Wno-unknown-pragmas -Wno-psabi)
mkdir -p "$build"
# One build at a time (.ci/run starts run.sh twice side by side), and none when nothing it reads
# has changed since the last: a hash of the kernels, the emulator, this folder's sources, the
# entry-point list, cuda.h, the compiler and the flags.
exec 9>"$build/.lock"
flock 9
stamp=$(cat "$root"/kernels/*.cu "$root"/kernels/*.cuh "$root"/dev/emu/*.h "$root"/dev/emu/*.sh \
    "$root"/dev/emu/fake_include/*.h "$here"/*.cpp "$here"/*.h "$here"/build.sh \
    "$root/src/backend/cuda/kernels.rs" "$include/cuda.h" <(g++ --version; echo "${flags[*]}") |
    sha256sum | cut -d' ' -f1)
if [[ -f "$build/libcuda.so.1" && "$(cat "$build/stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "$build"
    exit 0
fi
rm -f "$build/stamp"
"$root/dev/emu/copy-kernels.sh" "$root/kernels" "$build/kernels"
# The entry points the engine loads (src/backend/cuda/kernels.rs ENTRY_POINTS), one ENTRY each.
python3 - "$root/src/backend/cuda/kernels.rs" > "$build/entries.inc.new" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
block = src[src.index("const ENTRY_POINTS"):]
block = block[: block.index("];")]
for module in re.finditer(r'\(\s*"\w+",\s*&\[(.*?)\]', block, re.S):
    for name in re.findall(r'"(\w+)"', module.group(1)):
        print(f"ENTRY({name})")
PY
cmp -s "$build/entries.inc.new" "$build/entries.inc" 2>/dev/null || mv "$build/entries.inc.new" "$build/entries.inc"
rm -f "$build/entries.inc.new"
g++ "${flags[@]}" -c -I "$build/kernels" -I "$build" -I "$here" -I "$root/dev/emu/fake_include" \
    -include "$root/dev/emu/cuda_emu.h" "$here/kernels.cpp" -o "$build/kernels.o" &
g++ "${flags[@]}" -c -I "$include" -I "$here" "$here/driver.cpp" -o "$build/driver.o"
wait $!
# Linked beside, then renamed: a test still running keeps the library it mapped.
g++ -shared -pthread -Wl,-soname,libcuda.so.1 "$build/driver.o" "$build/kernels.o" -o "$build/libcuda.so.1.new"
mv -f "$build/libcuda.so.1.new" "$build/libcuda.so.1"
ln -sf libcuda.so.1 "$build/libcuda.so"
echo "$stamp" > "$build/stamp"
echo "$build"
