// Empty on purpose: cuda_emu.h defines what the kernels use from <cuda_fp16.h>.
