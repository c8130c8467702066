// kernels.cpp: the kernels of kernels/*.cu, compiled for the CPU emulator (dev/emu/cuda_emu.h,
// force-included), behind one call the fake driver (driver.cpp) launches them through by name.
// ENTRY(name) lines come from src/backend/cuda/kernels.rs ENTRY_POINTS (build.sh generates
// entries.inc), so every entry point the engine loads is here or the build fails.
#include "common.cuh"
#include "linear.cu"
#include "attention.cu"
#include "embeddings.cu"
#include "gather.cu"
#include "layernorm.cu"
#include "layernorm_t.cu"
#include "linear_mma.cu"
#include "attention_mma.cu"
#include "embeddings_project.cu"
#include "linear_wgmma.cu"
#include "linear_tma.cu"
#include "linear_mma_ln.cu"
#include "linear_mma_grid_ln.cu"
#include "layer_resident.cu"
float to_f32(f16 x) { return __half2float(__half{x.bits}); }
float round_f16(float x) { return __half2float(__float2half_rn(x)); }
unsigned dynamic_smem_bytes() { return unsigned(emu::dyn_smem_bytes); }

#include <functional>
#include <string>
#include <tuple>
#include <utility>

#include "fake_kernels.h"
static_assert(fake::kWholeGrid == emu::kCooperative, "the fake driver's cooperative launch is the emulator's");

namespace {

struct Launch { dim3 grid, block; size_t smem; void **params; unsigned cluster_x; };
template <typename... P> constexpr size_t arity(void (*)(P...)) { return sizeof...(P); }

// Copies the arguments (params[i] points at the i-th one's value: cuLaunchKernel's contract)
// into a closure that launches: a graph replays it after the caller's values are gone.
template <auto K, typename... P, size_t... I>
std::function<bool()> bind_unpacked(void (*)(P...), const Launch &l, std::index_sequence<I...>) {
    auto args = std::make_tuple(*static_cast<const std::remove_cv_t<P> *>(l.params[I])...);
    return [l, args] {
        return std::apply(
            [&](auto... a) { return emu::launch_in_clusters(l.cluster_x, K, l.grid, l.block, l.smem, a...); },
            args);
    };
}

struct Entry {
    const char *name;
    std::function<bool()> (*bind)(const Launch &);
    bool (*opt_in)(size_t bytes, size_t limit);
};

template <auto K> Entry entry(const char *name) {
    return Entry{
        name,
        [](const Launch &l) {
            return bind_unpacked<K>(K, l, std::make_index_sequence<arity(K)>{});
        },
        [](size_t bytes, size_t limit) { return emu::opt_in_dynamic_smem(K, bytes, limit); }};
}

#define ENTRY(name) entry<&name>(#name),
const Entry kEntries[] = {
#include "entries.inc"
};
#undef ENTRY

// What the emulator reported since the last call ("" if nothing), cleared.
std::string take_errors() {
    std::string msg;
    for (const std::string &s : emu::errors()) msg += (msg.empty() ? "" : "; ") + s;
    emu::errors().clear();
    return msg;
}

} // namespace

namespace fake {

const void *kernel(const char *name) {
    for (const Entry &e : kEntries)
        if (std::string(e.name) == name) return &e;
    return nullptr;
}

const char *kernel_name(const void *k) { return static_cast<const Entry *>(k)->name; }

std::function<std::string()> bind(const void *k, Dim grid, Dim block, size_t smem,
                                  void **params, unsigned cluster_x) {
    const Launch l{dim3(grid.x, grid.y, grid.z), dim3(block.x, block.y, block.z), smem, params,
                   cluster_x};
    std::function<bool()> run = static_cast<const Entry *>(k)->bind(l);
    return [run] {
        take_errors();
        const bool ok = run();
        std::string msg = take_errors();
        return ok || !msg.empty() ? msg : std::string("launch refused");
    };
}

const char *encode_tensor_map(void *map, unsigned elem_bytes, const void *addr,
                              const uint64_t dims[2], uint64_t stride_bytes, const uint32_t box[2],
                              unsigned swizzle_bytes) {
    return emu::encode_tensor_map_2d(map, elem_bytes, addr, dims, stride_bytes, box, swizzle_bytes);
}

std::string opt_in(const void *k, size_t bytes, size_t limit) {
    take_errors();
    const bool ok = static_cast<const Entry *>(k)->opt_in(bytes, limit);
    std::string msg = take_errors();
    return ok ? "" : (msg.empty() ? "opt-in refused" : msg);
}

} // namespace fake
