#!/usr/bin/env bash
# Mutation check of the emulator itself: breaks the kernels on purpose (one edit per copy, under
# dev/emu/build/mutants) and shows whether run.sh's tests notice. Not part of run.sh (slow).
#   dev/emu/mutants.sh            plain emulator
#   EMU_SAN=thread dev/emu/mutants.sh   with ThreadSanitizer (catches the pure races)
#   EMU_CP_EARLY=1 EMU_SAN=thread dev/emu/mutants.sh   ... with cp.async copies landing when issued
#   MUTANTS_ONLY=block_sum dev/emu/mutants.sh   only the mutants whose name contains this
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# name | file | sed expression | test group. The two "staging row" barriers are redundant (each
# thread reads back only the elements it wrote until block_sum's barrier), so those mutants are
# expected to survive: they are equivalent programs, not misses. So is attention_mma's "mask read
# past the length": padded keys score MASKED and get weight exactly 0 whether or not they are
# skipped (the skip is an optimisation, and this mutant shows it does not change results).
# attention_mma's "no barrier before restaging" is a pure race in the plain build (copies land
# at the wait, after the next staging barrier): EMU_SAN=thread catches it, and with
# EMU_CP_EARLY=1 (copies land when issued) as wrong values too (CI runs that group so).
mutants=(
  "block_sum: no barrier before scratch write|common.cuh|s#__syncthreads(); // scratch may still be read by a previous call##|layernorm"
  "block_sum: no barrier after scratch write|common.cuh|/scratch\[warp\] = v;/{n;s#__syncthreads();##}|layernorm"
  "layernorm: no barrier after staging (equiv.)|layernorm.cu|0,/__syncthreads();/s#__syncthreads();##|layernorm"
  "embeddings: no barrier after staging (equiv.)|embeddings.cu|0,/__syncthreads();/s#__syncthreads();##|embeddings"
  "linear: no barrier after loading tiles|linear.cu|0,/__syncthreads();/s#__syncthreads();##|linear"
  "linear: no barrier before next tile load|linear.cu|/acc\[i\]\[j\] += part/{n;s#__syncthreads();##}|linear"
  "linear: no k < K bound on inp|linear.cu|s/(m < M \&\& k < K)/(m < M)/|linear"
  "attention: no __syncwarp after qrow|attention.cu|0,/__syncwarp();/s#__syncwarp();##|attention"
  "attention: no __syncwarp after scores|attention.cu|s#__syncwarp(); // every lane.*##|attention"
  "linear_mma: A ldmatrix matrices 1 and 2 swapped|linear_mma.cu|s/8 \* (lmat \& 1) + lrow\]\[kk + 8 \* (lmat >> 1)\]/8 * (lmat >> 1) + lrow][kk + 8 * (lmat \& 1)]/|mma"
  "linear_mma: B ldmatrix k halves swapped|linear_mma.cu|s/lrow\]\[kk + 8 \* (lmat \& 1)\]/lrow][kk + 8 * (1 - (lmat \& 1))]/|mma"
  "linear_mma: B registers of j and j+1 swapped|linear_mma.cu|s/b\[j\]\[0\] = r\[0\], b\[j\]\[1\] = r\[1\], b\[j + 1\]\[0\] = r\[2\], b\[j + 1\]\[1\] = r\[3\]/b[j][0] = r[2], b[j][1] = r[3], b[j + 1][0] = r[0], b[j + 1][1] = r[1]/|mma"
  "linear_mma: C rows g and g+8 swapped|linear_mma.cu|s/group + 8 \* half/group + 8 * (1 - half)/|mma"
  "linear_mma: no barrier after loading tiles|linear_mma.cu|0,/__syncthreads();/s#__syncthreads();##|mma"
  "linear_mma: no barrier before next tile load|linear_mma.cu|/mma_m16n8k16<T>(acc/{n;n;s#__syncthreads();##}|mma"
  "linear_mma: no k < K bound on inp|linear_mma.cu|s/(m < M \&\& k < K)/(m < M)/|mma"
  "linear_mma: no k < K bound on staged tiles|linear_mma.cu|s/(row < R \&\& k < K)/(row < R)/|mma"
  "linear_mma: cp.async wait one group short|linear_mma.cu|s/cp_async_wait<S - 1>/cp_async_wait<S>/|mma"
  "linear_mma: multiplies the next W stage|linear_mma.cu|s/const int st = t % S,/const int st = (t + 1) % S,/|mma"
  "linear_mma: A prefetch of tile t, not t + 1|linear_mma.cu|s/if (t + 1 < tiles) load_a(t + 1);/if (t + 1 < tiles) load_a(t);/|mma"
  "linear_mma from T: multiplies the other A stage|linear_mma.cu|s/sa = a_async ? st : 0/sa = a_async ? (t + 1) % S : 0/|mma"
  "linear_mma from T: A tiles staged with the row bound N|linear_mma.cu|s/abits, m0, t, K, M, vec_a/abits, m0, t, K, N, vec_a/|mma"
  "linear_mma from T: A chunks by the weight's alignment|linear_mma.cu|s/abits, m0, t, K, M, vec_a/abits, m0, t, K, M, vec_w/|mma"
  "attention: reads q with the output's stride|attention.cu|s/q\[base + (long long)i \* ld + c\]/q[base + (long long)i * H + c]/|attention"
  "attention_mma: running sum not rescaled|attention_mma.cuh|s#row_sum\[r\] \*= alpha\[r\];##|attention_mma"
  "attention_mma: output not rescaled|attention_mma.cuh|s#o\[n\]\[c\] \*= alpha\[c >> 1\];##|attention_mma"
  "attention_mma: P registers 1 and 2 swapped|attention_mma.cuh|s/pa\[1\] =/pa[X] =/;s/pa\[2\] =/pa[1] =/;s/pa\[X\] =/pa[2] =/|attention_mma"
  "attention_mma: V ldmatrix key halves swapped|attention_mma.cuh|s/8 \* ((lane >> 3) \& 1)\]/8 * (1 - ((lane >> 3) \& 1))]/|attention_mma"
  "attention_mma: K ldmatrix d chunks 0/1 and 2/3 swapped|attention_mma.cuh|s/16 \* i + 4 \* (lane >> 3)\]/16 * i + 4 * ((lane >> 3) ^ 1)]/|attention_mma"
  "attention_mma: tiles not zeroed past the length|attention_mma.cuh|s/if (j0 + FA_BK > L) zero_past_length/if (false) zero_past_length/|attention_mma"
  "attention_mma: cp.async wait one group short|attention_mma.cuh|s/cp_async_wait<1>(); \/\/ this thread/cp_async_wait<2>(); \/\/ this thread/|attention_mma"
  "attention_mma: next tile copied into the other stage|attention_mma.cuh|s/issue_kv(Kt, Vt, kb, vb, j0 + FA_STAGES/issue_kv(Ks[(t + 1) % FA_STAGES], Vs[(t + 1) % FA_STAGES], kb, vb, j0 + FA_STAGES/|attention_mma"
  "attention_mma: no barrier after staging|attention_mma.cuh|s#__syncthreads(); // the tile is staged##|attention_mma"
  "attention_mma: no barrier before restaging|attention_mma.cuh|s#__syncthreads(); // every warp is done.*##|attention_mma"
  "attention_mma: all-masked sequence gets L = 0|attention_mma.cuh|s#if (L == 0) L = S;##|attention_mma"
  "attention_mma: mask read past the length (equiv.)|attention_mma.cuh|s/Ms\[tid\] = j < L ?/Ms[tid] = j < S ?/|attention_mma"
  "linear_mma_ln: no cluster barrier before the LayerNorm|linear_mma_ln.cu|s#^    cluster_sync(); // every block.*##|ln_fused"
  "linear_mma_ln: every block normalizes the first rows|linear_mma_ln.cu|s/r = int(cluster_ctarank()) \* warps + /r = /|ln_fused"
  "linear_mma_ln: residual added before the bias|linear_mma_ln.cu|s/const float pre0 = x0 + residual\[r + n\]/const float pre0 = (acc[i][j][2 * half] + residual[r + n]) + bv[j][0]/|ln_fused"
  "layernorm_warp: variance summed lane-wise (equiv. in practice)|layernorm_warp.cuh|s/q = warp_sum(q);/tot += q;/;s/if (lane == v) tot = q;//|ln_fused"
  "layernorm_warp: f32 output not written back|layernorm_warp.cuh|s/                row\[c\] = y;//|ln_fused"
  "linear_mma_grid_ln: no row-group barrier|linear_mma_grid_ln.cu|s#^    row_group_sync(sync + 2 \* blockIdx.y, blocks);.*##|grid_ln"
  "linear_mma_grid_ln: the residual added first|layernorm_warp.cuh|s/float x = __ldcg(p + c);/float x = res[c] + __ldcg(p + c);/;s/return x + res\[c\];/return x;/|grid_ln"
  "linear_mma_grid_ln: every block normalizes the first rows|linear_mma_grid_ln.cu|s/const int first = int(blockIdx.z \* gridDim.x + blockIdx.x) \* warps + /const int first = /|grid_ln"
  "layer_resident: no barrier after the attention|layer_resident.cu|/__syncthreads(); \/\/ the next item restages/{n;n;s#row_group_sync(a.sync, blocks);##}|resident"
  "layer_resident: no barrier before the next layer|layer_resident.cu|s#if (layer + 1 < a.layers) row_group_sync(a.sync, blocks);.*##|resident"
  "layer_resident: bias in every partial|layer_resident.cu|s/acc, z ? nullptr : P.bias, n0/acc, P.bias, n0/|resident"
  "layer_resident: slab k from 0, not the share's|layer_resident.cu|s/k0 = share.t0 \* RL_TK,/k0 = 0,/|resident"
  "layer_resident: slabs of one block adjacent|layer_resident.cu|s/j++, g += G) {/j++, g++) {/g|resident"
  "layer_resident: the attention LayerNorm's residual is attn|layer_resident.cu|s/layernorm(a.attn, a.attn_t, a.hidden,/layernorm(a.attn, a.attn_t, a.attn,/|resident"
  "layer_resident: the stage freed before every warp is done|layer_resident.cu|s#__syncthreads(); // every warp is done with stage t % ST##|resident"
  "grid_sync: the generation never advanced|grid_sync.cuh|s#^            grid_store_release(gen, g + 1u);##|grid_ln"
  "grid_sync: the count not reset|grid_sync.cuh|s#^            \*count = 0;.*##|grid_ln"
  "linear_wgmma: no fence.proxy.async after the copies|linear_wgmma.cu|s#fence_proxy_async_shared();##|wgmma"
  "linear_wgmma: no wgmma.fence before the products|linear_wgmma.cu|s#^        wgmma_fence();##|wgmma"
  "linear_wgmma: three groups left in flight, not one|linear_wgmma.cu|s/wgmma_wait<1>(); \/\/ the previous/wgmma_wait<3>(); \/\/ the previous/|wgmma"
  "linear_wgmma: accumulators read before the last wait|linear_wgmma.cu|s#^    wgmma_wait<0>();##|wgmma"
  "linear_tma: consumers do not wait for the tile to land|linear_tma.cu|s#mbar_wait(st.full(s), (g / S) \& 1); // k tile g has landed##|tma"
  "linear_tma: producer does not wait for a free stage|linear_tma.cu|s#if (g >= S) mbar_wait(st.empty(s), (g / S - 1) \& 1);##|tma"
  "linear_tma: releases the stage in use|linear_tma.cu|s#if (t > 0) mbar_arrive(st.empty((g - 1) % S));#mbar_arrive(st.empty(g % S));#;s#if (threadIdx.x % 32 == 0) mbar_arrive(st.empty((g0 + tiles - 1) % S));##|tma"
  "linear_tma: a tile's last stage never released|linear_tma.cu|s#if (threadIdx.x % 32 == 0) mbar_arrive(st.empty((g0 + tiles - 1) % S));##|tma"
  "linear_tma: one warp's release per warpgroup (count kept)|linear_tma.cu|s#if (t > 0) mbar_arrive(st.empty((g - 1) % S));#if (t > 0 \&\& threadIdx.x % 128 == 0) mbar_arrive(st.empty((g - 1) % S));#|tma"
  "linear_tma: consumers restart the ring at each tile|linear_tma.cu|s/tma_consume<C, T>(st, acc, i \* share.tiles,/tma_consume<C, T>(st, acc, 0,/|tma"
  "linear_tma: stage released two products early|linear_tma.cu|s/wgmma_wait<1>(); \/\/ k tile g - 1/wgmma_wait<2>(); \/\/ k tile g - 1/|tma"
  "linear_tma pingpong: second consumer skips its turn wait|linear_tma.cu|s#if (C::PINGPONG \&\& c == 1) mbar_wait(st.turn(1), j \& 1);##|tma"
  "linear_tma pingpong: first consumer skips its turn wait|linear_tma.cu|s#if (C::PINGPONG \&\& c == 0 \&\& j > 0) mbar_wait(st.turn(0), (j - 1) \& 1);##|tma"
  "linear_tma pingpong: turn never passed|linear_tma.cu|s#if (turn_done \&\& t == tiles - 1) mbar_arrive(turn_done);##|tma"
  "linear_tma pingpong: no turn on an empty share|linear_tma.cu|s#if (turn_done \&\& threadIdx.x % 32 == 0) mbar_arrive(turn_done);##|tma"
  "linear_tma pingpong: turn barrier counts one arrival, not four|linear_tma.cu|s/mbar_init(st.turn(0), 4)/mbar_init(st.turn(0), 1)/;s/mbar_init(st.turn(1), 4)/mbar_init(st.turn(1), 1)/|tma"
  "linear_tma pingpong: a stage awaits two releases|linear_tma.cu|s/RELEASES = 4 \* (PINGPONG ? 1 : W::WARPGROUPS)/RELEASES = 4 * W::WARPGROUPS/|tma"
)
rm -rf "$here/build/mutants"
for m in "${mutants[@]}"; do
  IFS='|' read -r name file expr group <<< "$m"
  [[ -n "${MUTANTS_ONLY:-}" && "$name" != *"$MUTANTS_ONLY"* ]] && continue
  dir="$here/build/mutants/${name//[^A-Za-z0-9]/_}"
  rm -rf "$dir"; mkdir -p "$dir"; cp "$root"/kernels/* "$dir"/
  sed -i "$expr" "$dir/$file"
  if cmp -s "$root/kernels/$file" "$dir/$file"; then echo "MUTANT NOT APPLIED: $name"; continue; fi
  out="$(EMU_KERNELS="$dir" timeout 600 "$here/run.sh" --quick --only="$group" 2>&1)"
  rc=$?
  fails=$(grep -c FAIL <<< "$out")
  races=$(grep -c "WARNING: ThreadSanitizer: data race" <<< "$out")
  asan=$(grep -c "ERROR: AddressSanitizer" <<< "$out")
  verdict=$([[ $rc -ne 0 || $fails -gt 0 || $races -gt 0 ]] && echo caught || echo MISSED)
  # A sed that applied only part of an edit can leave code that does not compile: not a mutant.
  grep -Eq "kernels/$file:[0-9]+:[0-9]+: error:" <<< "$out" && verdict="NO-BUILD"
  printf '%-45s %-7s rc=%-3s failed_checks=%-3s tsan_races=%-3s asan=%s\n' "$name" "$verdict" "$rc" "$fails" "$races" "$asan"
done
