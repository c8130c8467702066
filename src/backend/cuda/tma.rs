//! Tensor maps for the TMA products (kernels/linear_tma.cu, tma.cuh): the driver's
//! `cuTensorMapEncodeTiled` describes a 2-D [rows, K] matrix of 16-bit elements to the copy
//! engine, with the box one k tile of the product copies (64 k x `box_rows` rows), the 128-byte
//! swizzle the wgmma descriptors read, and zeros for elements outside the matrix. The 128 bytes
//! travel by value as a kernel argument (`const __grid_constant__`), so a CUDA graph keeps the
//! maps it captured, like every other argument.

use std::ffi::c_void;

use cudarc::driver::sys::{
    self, CUtensorMapDataType, CUtensorMapFloatOOBfill, CUtensorMapInterleave,
    CUtensorMapL2promotion, CUtensorMapSwizzle,
};
use cudarc::driver::DeviceRepr;

use super::device::CudaDevice;
use crate::dtype::DType;
use crate::error::Result;

/// kernels/tma.cuh `TensorMap`: CUtensorMap's opaque bytes, 64-byte aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub struct TensorMap([u64; 16]);

// SAFETY: plain bytes with the layout of the kernel parameter (kernels/tma.cuh TensorMap:
// 16 x u64, 64-byte aligned); the driver copies them into the launch's parameter space.
unsafe impl DeviceRepr for TensorMap {}

/// k per box: one k tile of the wgmma products (kernels/wgmma_tile.cuh WG_BK), 128 bytes of
/// 16-bit elements, the 128-byte swizzle's span.
const BOX_K: u32 = 64;

/// Whether a [rows, K] matrix of 16-bit elements at `addr` can be described by a tensor map: the
/// driver needs a 16-byte aligned address and a row stride (2 K bytes) that is a multiple of 16.
pub fn describable(addr: u64, k: usize) -> bool {
    addr.is_multiple_of(16) && (2 * k).is_multiple_of(16) && k > 0
}

/// What a tensor map is a function of (with the device): the matrix's address, element type,
/// [rows, k] and the box's rows.
pub(super) type MapKey = (u64, DType, usize, usize, u32);

/// At most this many maps are kept (`CudaDevice::maps`); a full cache is emptied. A pass of
/// albert-base needs about 10 (4 products, the arena's buffers and the shared weights).
const MAX_MAPS: usize = 1024;

impl CudaDevice {
    /// The tensor map of the [rows, k] matrix of `dtype` (bf16/f16) at device address `addr`,
    /// copied in boxes of 64 k x `box_rows` rows; `what` names it in an error (the kernel and
    /// the operand). The caller checked `describable`. Encoded once per key: the map depends on
    /// nothing else, so a buffer freed and another allocated at the same address with the same
    /// shape gets the same bytes, and an eager pass (every launch) asks the driver nothing.
    pub(super) fn tensor_map(
        &self,
        what: &str,
        addr: u64,
        dtype: DType,
        (rows, k): (usize, usize),
        box_rows: u32,
    ) -> Result<TensorMap> {
        let key = (addr, dtype, rows, k, box_rows);
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = maps.get(&key) {
            return Ok(*map);
        }
        let map = self.encode_tensor_map(what, key)?;
        if maps.len() >= MAX_MAPS {
            maps.clear();
        }
        maps.insert(key, map);
        Ok(map)
    }

    /// `tensor_map` without the cache: cuTensorMapEncodeTiled.
    fn encode_tensor_map(
        &self,
        what: &str,
        (addr, dtype, rows, k, box_rows): MapKey,
    ) -> Result<TensorMap> {
        let data_type = match dtype {
            DType::BF16 => CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            DType::F16 => CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
            DType::F32 => {
                return Err(self.err(what, "tensor maps are built for 16-bit operands only"))
            }
        };
        let dims: [u64; 2] = [k as u64, rows as u64];
        let strides: [u64; 1] = [2 * k as u64]; // bytes from one row to the next
        let boxes: [u32; 2] = [BOX_K, box_rows];
        let element_strides: [u32; 2] = [1, 1];
        let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
        // SAFETY: every pointer refers to a live local of the length the rank (2) asks for; the
        // driver writes the 128-byte map into `map` and reads nothing past these arrays.
        unsafe {
            sys::cuTensorMapEncodeTiled(
                map.as_mut_ptr(),
                data_type,
                2,
                addr as *mut c_void,
                dims.as_ptr(),
                strides.as_ptr(),
                boxes.as_ptr(),
                element_strides.as_ptr(),
                CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
                CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        }
        .result()
        .map_err(|e| {
            self.err(
                what,
                format!("cuTensorMapEncodeTiled [{rows}, {k}] box [{box_rows}, {BOX_K}]: {e}"),
            )
        })?;
        // SAFETY: the driver filled the map (zeroed before: no uninitialised bytes either way).
        let map = unsafe { map.assume_init() };
        Ok(TensorMap(map.opaque))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describable_needs_aligned_rows() {
        assert!(describable(0x1000, 768));
        assert!(describable(0x1010, 8));
        assert!(!describable(0x1008, 768)); // 8-byte aligned address
        assert!(!describable(0x1000, 77)); // 154-byte rows
        assert!(!describable(0x1000, 0));
        assert_eq!(std::mem::size_of::<TensorMap>(), 128);
        assert_eq!(std::mem::align_of::<TensorMap>(), 64);
    }
}
