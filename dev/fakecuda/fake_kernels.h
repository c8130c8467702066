// fake_kernels.h: what the fake driver (driver.cpp) needs from the emulated kernels
// (kernels.cpp); the two are separate translation units because cuda.h and cuda_emu.h both
// define CUDA's names.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace fake {

struct Dim { unsigned x, y, z; };

// The entry point called `name`, or null.
const void *kernel(const char *name);
const char *kernel_name(const void *kernel);
// A launch with its arguments copied (params as cuLaunchKernel's); calling it runs the kernel on
// the emulator and returns "" or what went wrong (refused launch, divergent barrier, write outside
// shared memory, ...).
std::function<std::string()> bind(const void *kernel, Dim grid, Dim block, size_t smem,
                                  void **params);
// cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES): "" or why refused.
std::string opt_in(const void *kernel, size_t bytes, size_t device_limit);

} // namespace fake
