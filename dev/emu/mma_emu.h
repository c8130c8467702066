// mma_emu.h: the warp-collective tensor-core instruction
//   mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32  d, a, b, c
// for the CPU emulator. Included at the end of cuda_emu.h (it needs emu::Warp).
//
// Kernels declare `template <typename T> void mma_m16n8k16(float *c, const unsigned *a,
// const unsigned *b)` and, on the host, the specialisations for bf16 and f16 (kernels/
// linear_mma.cu); this file defines them. c is both C (in) and D (out), as the kernel's asm does.
//
// Fragment layout, written from the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating
// point type", section 9.7.14.5.8 of docs.nvidia.com/cuda/parallel-thread-execution, figures
// 79, 81 and 83), NOT from the kernel. groupID g = lane >> 2,
// threadID_in_group t = lane % 4; elements are numbered low to high, two 16-bit elements per
// 32-bit register, the lower-numbered one in the low half:
//   A 16x16 (row):   a0,a1 = A[g][2t+(0,1)]      a2,a3 = A[g+8][2t+(0,1)]
//                    a4,a5 = A[g][2t+8+(0,1)]    a6,a7 = A[g+8][2t+8+(0,1)]
//                    registers a[0..3] = (a0,a1), (a2,a3), (a4,a5), (a6,a7)
//   B 16x8 (col):    b0,b1 = B[2t+(0,1)][g]      b2,b3 = B[2t+8+(0,1)][g]
//                    registers b[0..1] = (b0,b1), (b2,b3)
//   C, D 16x8 (f32): c0,c1 = C[g][2t+(0,1)]      c2,c3 = C[g+8][2t+(0,1)]
//
// Semantics: every lane publishes its fragments in the warp's exchange, one checked warp barrier
// (all 32 lanes must arrive, from the same mma call site: `.aligned` / `.sync` with a full warp),
// then every lane assembles the whole 16x16 A, 16x8 B and 16x8 C from all 32 lanes' fragments
// and computes its own 4 elements of D = A B + C.
// Numerics (our choice; the ISA does not fix the internal order or precision): the 16 products
// (exact in float and in double) are summed in double, C is added in double, and the result is
// rounded to float once. A GPU's tensor cores may order and round the sum differently; such
// differences are of the order of f32 rounding, far below the kernel tests' 1e-5 tolerance.
//
// The exchange is double-buffered on the parity of the warp barrier's phase, so one barrier per
// mma is enough: a lane can only write the same buffer again after a later barrier, which every
// lane reaches only after it has finished reading this one. As for shuffles, the TSan build hides
// this barrier (a register exchange does not order shared-memory accesses on the GPU).
//
// Call sites: the specialisations' signature is fixed by the kernel, so they cannot take a
// std::source_location. They are always_inline and call a noinline function that uses its
// return address (a pc in the kernel) as the "call site"
// (shown as <mma_m16n8k16 call, return pc>:<low 32 bits>), so lanes of one warp that reach
// different mma instructions in the same phase are reported as divergent.
#pragma once

struct bf16; // kernels/common.cuh
struct f16;
template <typename T> void mma_m16n8k16(float *c, const unsigned *a, const unsigned *b);

namespace emu {

inline float widen_bf16(uint16_t h) { return emu_float(uint32_t(h) << 16); }
inline float widen_f16(uint16_t h) { return __half2float(__half{h}); }

// The A (16 x 16), B (16 x 8) and C (16 x 8) tiles of one mma from the 32 lanes' fragments.
inline void mma_assemble(const std::atomic<uint32_t> (*xchg)[10], float (*widen)(uint16_t),
                         MmaTile &tile) {
    auto &A = tile.A;
    auto &B = tile.B, &C = tile.C;
    for (unsigned src = 0; src < 32; src++) {
        const std::atomic<uint32_t> *f = xchg[src];
        const unsigned g = src >> 2, t = src & 3;
        for (unsigned r = 0; r < 4; r++) { // a[r] = (a_{2r}, a_{2r+1})
            const uint32_t v = f[r].load(std::memory_order_relaxed);
            const unsigned row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
            A[row][col] = widen(uint16_t(v & 0xffffu));
            A[row][col + 1] = widen(uint16_t(v >> 16));
        }
        for (unsigned r = 0; r < 2; r++) { // b[r] = (b_{2r}, b_{2r+1})
            const uint32_t v = f[4 + r].load(std::memory_order_relaxed);
            const unsigned k = 2 * t + 8 * r;
            B[k][g] = widen(uint16_t(v & 0xffffu));
            B[k + 1][g] = widen(uint16_t(v >> 16));
        }
        for (unsigned i = 0; i < 4; i++)
            C[g + 8 * (i >> 1)][2 * t + (i & 1)] = emu_float(f[6 + i].load(std::memory_order_relaxed));
    }
}

// One warp's mma.m16n8k16 with f32 accumulators; widen converts a 16-bit element to float.
inline void mma_m16n8k16_warp(float *c, const unsigned *a, const unsigned *b,
                              float (*widen)(uint16_t), const void *ret_pc) {
    Warp &w = *ctx.block->warps[ctx.tid / 32];
    const unsigned lane = ctx.tid % 32;
    EMU_IGNORE_SYNC_BEGIN();
    ignoring_sync++;
    // The phase of the barrier this lane is about to join (it cannot advance before we arrive).
    const unsigned phase = w.group.phase.load(), buf = phase & 1u;
    std::atomic<uint32_t> *mine = w.mma_xchg[buf][lane];
    for (int r = 0; r < 4; r++) mine[r].store(a[r], std::memory_order_relaxed);
    for (int r = 0; r < 2; r++) mine[4 + r].store(b[r], std::memory_order_relaxed);
    for (int i = 0; i < 4; i++) mine[6 + i].store(emu_bits(c[i]), std::memory_order_relaxed);
    w.group.wait(lane, Site{"<mma_m16n8k16 call, return pc>", unsigned(uintptr_t(ret_pc))});

    // Assemble the whole tile from all lanes, per the ISA layout above: with fibers once per warp
    // and phase (the first lane to pass the barrier), with threads by every lane (no lock whose
    // ordering would hide a missing __syncwarp from the TSan build).
#if EMU_FIBERS
    MmaTile &tile = w.mma_tile[buf];
    if (tile.phase != phase) {
        mma_assemble(w.mma_xchg[buf], widen, tile);
        tile.phase = phase;
    }
#else
    MmaTile tile;
    mma_assemble(w.mma_xchg[buf], widen, tile);
#endif
    const auto &A = tile.A;
    const auto &B = tile.B, &C = tile.C;
    // c[i]: row g + 8 (i / 2), column 2 t + i % 2; four independent chains in registers, each
    // summed in k order.
    const unsigned g = lane >> 2, c0 = 2 * (lane & 3), c1 = c0 + 1;
    double s00 = 0.0, s01 = 0.0, s10 = 0.0, s11 = 0.0;
    for (unsigned k = 0; k < 16; k++) {
        const double x0 = A[g][k], x1 = A[g + 8][k], y0 = B[k][c0], y1 = B[k][c1];
        s00 += x0 * y0;
        s01 += x0 * y1;
        s10 += x1 * y0;
        s11 += x1 * y1;
    }
    c[0] = float(s00 + double(C[g][c0]));
    c[1] = float(s01 + double(C[g][c1]));
    c[2] = float(s10 + double(C[g + 8][c0]));
    c[3] = float(s11 + double(C[g + 8][c1]));
    ignoring_sync--;
    EMU_IGNORE_SYNC_END();
}

// One warp's ldmatrix.sync.aligned.m8n8.x4.shared.b16 (PTX ISA, "Warp-level matrix load
// instruction: ldmatrix"): lane 8m + r supplies the address of row r of matrix m; lane l gets,
// for each m, the 32-bit word l % 4 of row l / 4 of matrix m. With .trans (`trans`), each
// matrix is transposed first: lane l gets the 16-bit element l / 4 of rows 2(l % 4) and
// 2(l % 4) + 1 of matrix m, the first in the low half. The addresses go through the same
// double-buffered exchange and checked warp barrier as the mma (the first two words of the slot).
inline void ldmatrix_x4_warp(unsigned *d, const void *row, const void *ret_pc, bool trans) {
    Warp &w = *ctx.block->warps[ctx.tid / 32];
    const unsigned lane = ctx.tid % 32;
    if (uintptr_t(row) & 15u) report("ldmatrix: row address not 16-byte aligned");
    EMU_IGNORE_SYNC_BEGIN();
    ignoring_sync++;
    const unsigned buf = w.group.phase.load() & 1u;
    const uint64_t a = uint64_t(uintptr_t(row));
    w.mma_xchg[buf][lane][0].store(uint32_t(a), std::memory_order_relaxed);
    w.mma_xchg[buf][lane][1].store(uint32_t(a >> 32), std::memory_order_relaxed);
    w.group.wait(lane, Site{"<ldmatrix_x4 call, return pc>", unsigned(uintptr_t(ret_pc))});
    auto row_of = [&](unsigned src) { // the address lane src gave
        const uint64_t p = uint64_t(w.mma_xchg[buf][src][0].load(std::memory_order_relaxed)) |
                           (uint64_t(w.mma_xchg[buf][src][1].load(std::memory_order_relaxed)) << 32);
        return reinterpret_cast<const unsigned char *>(uintptr_t(p));
    };
    for (unsigned m = 0; m < 4; m++) {
        if (!trans) {
            std::memcpy(&d[m], row_of(8 * m + lane / 4) + 4 * (lane % 4), 4);
            continue;
        }
        uint16_t lo, hi; // element lane / 4 of rows 2 (lane % 4) and 2 (lane % 4) + 1
        std::memcpy(&lo, row_of(8 * m + 2 * (lane % 4)) + 2 * (lane / 4), 2);
        std::memcpy(&hi, row_of(8 * m + 2 * (lane % 4) + 1) + 2 * (lane / 4), 2);
        d[m] = unsigned(lo) | (unsigned(hi) << 16);
    }
    ignoring_sync--;
    EMU_IGNORE_SYNC_END();
}

} // namespace emu

namespace emu {
[[gnu::noinline]] static void ldmatrix_x4_at_caller(unsigned *d, const void *row) {
    ldmatrix_x4_warp(d, row, __builtin_return_address(0), false);
}
[[gnu::noinline]] static void ldmatrix_x4_trans_at_caller(unsigned *d, const void *row) {
    ldmatrix_x4_warp(d, row, __builtin_return_address(0), true);
}
// noinline with internal linkage: __builtin_return_address(0) is then the kernel's call site
// (the always_inline specialisations below vanish into the caller).
[[gnu::noinline]] static void mma_bf16_at_caller(float *c, const unsigned *a, const unsigned *b) {
    mma_m16n8k16_warp(c, a, b, widen_bf16, __builtin_return_address(0));
}
[[gnu::noinline]] static void mma_f16_at_caller(float *c, const unsigned *a, const unsigned *b) {
    mma_m16n8k16_warp(c, a, b, widen_f16, __builtin_return_address(0));
}
} // namespace emu

template <> [[gnu::always_inline]] inline void mma_m16n8k16<bf16>(float *c, const unsigned *a,
                                                                  const unsigned *b) {
    emu::mma_bf16_at_caller(c, a, b);
}
template <> [[gnu::always_inline]] inline void mma_m16n8k16<f16>(float *c, const unsigned *a,
                                                                 const unsigned *b) {
    emu::mma_f16_at_caller(c, a, b);
}
[[gnu::always_inline]] inline void ldmatrix_x4(unsigned *d, const void *row) {
    emu::ldmatrix_x4_at_caller(d, row);
}
[[gnu::always_inline]] inline void ldmatrix_x4_trans(unsigned *d, const void *row) {
    emu::ldmatrix_x4_trans_at_caller(d, row);
}
