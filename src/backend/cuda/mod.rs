//! The CUDA backend: kernels/*.cu built to cubins and PTX by build.rs (registry in `kernels`),
//! loaded with cudarc (driver loaded dynamically, so a machine without CUDA builds and runs on
//! the CPU); typed launchers in `launch`, `attention`, `linear_t` (the products on activations
//! stored as T) and `embeddings_t` (the fused embeddings + projection); the weights resident on
//! the device in `weights`; the scheduler that runs the forward pass in `forward` (the layers in
//! `forward/layer.rs`), replaying it as CUDA graphs (`graphs`); `costs`: each launch's FLOPs and
//! bytes, for the per-kernel floors; `tma`: the tensor maps of the TMA products;
//! `layer_resident`: every layer application of a small batch in one launch (ALBERT_CUDA_RESIDENT).

mod arena;
mod attention;
pub mod costs;
pub mod cublas;
pub mod device;
mod embeddings_t;
pub mod forward;
pub mod graphs;
pub mod kernels;
pub mod launch;
mod launcher;
mod layer_resident;
mod linear_grid_ln;
mod linear_ln;
mod linear_t;
mod tma;
pub mod weights;

pub use device::{probe, CudaDevice};
pub use forward::CudaAlbert;
