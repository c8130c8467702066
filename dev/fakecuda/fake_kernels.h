// fake_kernels.h: what the fake driver (driver.cpp) needs from the emulated kernels
// (kernels.cpp); the two are separate translation units because cuda.h and cuda_emu.h both
// define CUDA's names.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace fake {

struct Dim { unsigned x, y, z; };

// The entry point called `name`, or null.
const void *kernel(const char *name);
const char *kernel_name(const void *kernel);
// `cluster_x` of a cooperative launch: every block of the grid at once (emu::kCooperative).
constexpr unsigned kWholeGrid = 0;
// A launch with its arguments copied (params as cuLaunchKernel's), in clusters of `cluster_x`
// blocks along x (1: none; kWholeGrid: cooperative); calling it runs the kernel on the emulator
// and returns "" or what went wrong (refused launch, divergent barrier, write outside shared
// memory, ...).
std::function<std::string()> bind(const void *kernel, Dim grid, Dim block, size_t smem,
                                  void **params, unsigned cluster_x);
// cuTensorMapEncodeTiled for a 2-D map of 16-bit elements (dev/emu/tma_emu.h's encoding, which the
// emulated cp.async.bulk.tensor reads): null, or what the driver would refuse.
const char *encode_tensor_map(void *map, unsigned elem_bytes, const void *addr,
                              const uint64_t dims[2], uint64_t stride_bytes, const uint32_t box[2],
                              unsigned swizzle_bytes);
// cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES): "" or why refused.
std::string opt_in(const void *kernel, size_t bytes, size_t device_limit);

} // namespace fake
