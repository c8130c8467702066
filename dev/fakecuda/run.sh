#!/usr/bin/env bash
# Runs the GPU tests (tests/gpu/) on the fake CUDA driver: the engine's real CUDA backend
# (cudarc, launchers, arena, graphs, PDL launches) with every kernel on the CPU emulator of
# dev/emu. What it proves and what it cannot: README.md in this folder.
#   dev/fakecuda/run.sh                     every GPU test, as an H100/H200 (sm_90, 132 SMs)
#   dev/fakecuda/run.sh model_ graph        the tests whose names contain "model_" or "graph"
#   FAKECUDA_CC=86 dev/fakecuda/run.sh      as an sm_86 card (99 KB of shared memory per block)
#   ALBERT_CUDA_PDL=1 ... / ALBERT_CUDA_WGMMA=1 ...   the engine's switches work as on a GPU
# Extra cargo flags: CARGO_TEST_FLAGS (e.g. --release; the dev profile is optimised too, and is
# what `cargo test` has built already).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="$("$here/build.sh")"
cd "$root"
# shellcheck disable=SC2086
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    cargo test ${CARGO_TEST_FLAGS:-} --test gpu -- "$@"
