// Empty on purpose: cuda_emu.h defines what the kernels use from <cuda_bf16.h>.
