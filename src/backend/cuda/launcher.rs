//! Kernel launches, optionally with the programmatic dependent launch attribute (PDL, sm_90+),
//! a thread block cluster dimension (sm_90+, the fused LayerNorm products) or the cooperative
//! attribute (the grid LayerNorm products, `Launch::cooperative`):
//! the next kernel's blocks may then be scheduled while this one's last blocks run, and do the
//! work that reads only constant data (the products stage their first weight tiles) before
//! they wait for it to complete (kernels/common.cuh `grid_dependency_enter`, called by every
//! kernel). PDL is off unless `CudaDevice::pdl` (ALBERT_CUDA_PDL=1 on a device whose loaded
//! modules all have the wait); then launches go through cuLaunchKernelEx with the attribute,
//! else through cudarc's own launch, exactly as before. A cluster launch (`Launch::cluster`)
//! always goes through cuLaunchKernelEx, with PDL as the device has it.
//!
//! `Launch` takes the launchers' `.arg(...)` calls like cudarc's `LaunchArgs`. With PDL an
//! argument is just its value (the context's event tracking is off, device.rs): buffers as
//! their device address, scalars as their bytes, tensor maps as their 128 bytes.

use std::ffi::c_void;

use cudarc::driver::sys::{self, CUlaunchAttributeID};

use super::tma::TensorMap;
use super::weights::{DeviceMatrix, DeviceView};
use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, DevicePtr, DevicePtrMut, DeviceRepr,
    DriverError, LaunchArgs, LaunchConfig, PushKernelArg,
};

pub(super) enum Launch<'a> {
    /// cudarc's launch (cuLaunchKernel): the default.
    Plain(LaunchArgs<'a>),
    /// cuLaunchKernelEx with the PDL attribute, a cluster dimension, or both.
    Pdl(PdlArgs<'a>),
}

impl<'a> Launch<'a> {
    pub fn new(func: &'a CudaFunction, stream: &'a std::sync::Arc<CudaStream>, pdl: bool) -> Self {
        match pdl {
            true => Self::cluster(func, stream, pdl, 1),
            false => Launch::Plain(stream.launch_builder(func)),
        }
    }

    /// A launch in clusters of `cluster_x` blocks along x (1: none), through cuLaunchKernelEx.
    pub fn cluster(
        func: &'a CudaFunction,
        stream: &'a std::sync::Arc<CudaStream>,
        pdl: bool,
        cluster_x: u32,
    ) -> Self {
        Launch::Pdl(PdlArgs {
            func,
            stream,
            slots: Vec::with_capacity(MAX_ARGS),
            pdl,
            cluster_x,
            cooperative: false,
        })
    }

    /// A cooperative launch (every block of the grid resident at once, or the driver refuses
    /// it: CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE), through cuLaunchKernelEx. Without the PDL
    /// attribute: the kernel starts once the previous one has completed (its wait is then a
    /// no-op), and the next kernel may still overlap its tail.
    pub fn cooperative(func: &'a CudaFunction, stream: &'a std::sync::Arc<CudaStream>) -> Self {
        Launch::Pdl(PdlArgs {
            func,
            stream,
            slots: Vec::with_capacity(MAX_ARGS),
            pdl: false,
            cluster_x: 1,
            cooperative: true,
        })
    }

    /// Enqueues the kernel on the stream.
    ///
    /// # Safety
    /// As cudarc's `LaunchArgs::launch`: the arguments must match the kernel's parameters in
    /// number, type and order, and every access the grid makes must be inside its buffers.
    pub unsafe fn launch(&mut self, cfg: LaunchConfig) -> Result<(), DriverError> {
        match self {
            // SAFETY: the caller's.
            Launch::Plain(b) => unsafe { b.launch(cfg) }.map(|_| ()),
            // SAFETY: the caller's.
            Launch::Pdl(p) => unsafe { p.launch(cfg) },
        }
    }
}

/// At most this many kernel arguments (the most any kernel takes is 15).
const MAX_ARGS: usize = 24;

pub(super) struct PdlArgs<'a> {
    func: &'a CudaFunction,
    stream: &'a CudaStream,
    slots: Vec<Slot>,
    /// The programmatic-stream-serialization attribute.
    pdl: bool,
    /// Blocks per cluster along x; 1: no cluster attribute.
    cluster_x: u32,
    /// The cooperative attribute.
    cooperative: bool,
}

/// One argument's bytes: a pointer to the slot's value is a pointer to the argument.
enum Slot {
    /// Little-endian in 8 bytes: pointers, int, float, long long.
    Word(u64),
    /// A tensor map passed by value (kernels/tma.cuh), boxed so its address stays put.
    Map(Box<TensorMap>),
    /// A plain struct passed by value (layer_resident.rs `Args`): its bytes in 8-byte words,
    /// boxed so their address stays put and 8-byte aligned.
    Words(Box<[u64]>),
}

impl PdlArgs<'_> {
    fn push(&mut self, v: Slot) -> &mut Self {
        assert!(
            self.slots.len() < MAX_ARGS,
            "more than {MAX_ARGS} kernel arguments"
        );
        self.slots.push(v);
        self
    }

    /// # Safety
    /// As `Launch::launch`.
    unsafe fn launch(&mut self, cfg: LaunchConfig) -> Result<(), DriverError> {
        self.stream.context().bind_to_thread()?;
        let mut params: Vec<*mut c_void> = self
            .slots
            .iter_mut()
            .map(|s| match s {
                Slot::Word(w) => w as *mut u64 as *mut c_void,
                Slot::Map(m) => &mut **m as *mut TensorMap as *mut c_void,
                Slot::Words(w) => w.as_mut_ptr() as *mut c_void,
            })
            .collect();
        let mut attrs = Vec::with_capacity(3);
        if self.pdl {
            // SAFETY: a zeroed attribute is a valid value of this plain C struct; id and value
            // are set next.
            let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
            attr.id = CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
            attr.value.programmaticStreamSerializationAllowed = 1;
            attrs.push(attr);
        }
        if self.cluster_x > 1 {
            // SAFETY: as above.
            let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
            attr.id = CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
            attr.value.clusterDim.x = self.cluster_x;
            attr.value.clusterDim.y = 1;
            attr.value.clusterDim.z = 1;
            attrs.push(attr);
        }
        if self.cooperative {
            // SAFETY: as above.
            let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
            attr.id = CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
            attr.value.cooperative = 1;
            attrs.push(attr);
        }
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: self.stream.cu_stream(),
            attrs: attrs.as_mut_ptr(),
            numAttrs: attrs.len() as u32,
        };
        // SAFETY: `params` points at one live slot per argument for the duration of the call
        // (the driver copies the values); the caller vouches for the arguments themselves.
        unsafe {
            sys::cuLaunchKernelEx(
                &config,
                self.func.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
    }
}

impl<'a> Launch<'a> {
    /// One argument: `plain` pushes it to cudarc's builder, `value` gives its 8-byte slot.
    fn either(
        &mut self,
        plain: impl FnOnce(&mut LaunchArgs<'a>),
        value: impl FnOnce(&CudaStream) -> u64,
    ) -> &mut Self {
        match self {
            Launch::Plain(b) => plain(b),
            Launch::Pdl(p) => {
                let v = value(p.stream);
                p.push(Slot::Word(v));
            }
        }
        self
    }
}

impl<'a> Launch<'a> {
    /// A struct argument by value: `S` is the kernel parameter's C struct, with no padding
    /// (Pod) and an alignment of at most 8.
    pub fn arg_struct<'b: 'a, S: DeviceRepr + bytemuck::Pod>(&mut self, v: &'b S) -> &mut Self {
        const { assert!(std::mem::align_of::<S>() <= 8) };
        match self {
            Launch::Plain(b) => {
                b.arg(v);
            }
            Launch::Pdl(p) => {
                let bytes = bytemuck::bytes_of(v);
                let mut words = vec![0u64; bytes.len().div_ceil(8)].into_boxed_slice();
                bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()]
                    .copy_from_slice(bytes);
                p.push(Slot::Words(words));
            }
        }
        self
    }
}

// Each argument type the launchers pass: buffers as their device address, scalars as the bytes of
// their C type, low bytes first.
unsafe impl<'a, 'b: 'a, T> PushKernelArg<&'b CudaSlice<T>> for Launch<'a> {
    fn arg(&mut self, s: &'b CudaSlice<T>) -> &mut Self {
        self.either(
            |b| {
                b.arg(s);
            },
            |st| s.device_ptr(st).0,
        )
    }
}

unsafe impl<'a, 'b: 'a, T> PushKernelArg<&'b mut CudaSlice<T>> for Launch<'a> {
    fn arg(&mut self, s: &'b mut CudaSlice<T>) -> &mut Self {
        match self {
            Launch::Plain(b) => {
                b.arg(s);
            }
            Launch::Pdl(p) => {
                let v = s.device_ptr_mut(p.stream).0;
                p.push(Slot::Word(v));
            }
        }
        self
    }
}

unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b CudaView<'c, T>> for Launch<'a> {
    fn arg(&mut self, s: &'b CudaView<'c, T>) -> &mut Self {
        self.either(
            |b| {
                b.arg(s);
            },
            |st| s.device_ptr(st).0,
        )
    }
}

macro_rules! scalar_arg {
    ($t:ty, $bits:expr) => {
        unsafe impl<'a, 'b: 'a> PushKernelArg<&'b $t> for Launch<'a> {
            fn arg(&mut self, v: &'b $t) -> &mut Self {
                self.either(
                    |b| {
                        b.arg(v);
                    },
                    |_| $bits(*v),
                )
            }
        }
    };
}
scalar_arg!(i32, |v: i32| v as u32 as u64);
scalar_arg!(i64, |v: i64| v as u64);
scalar_arg!(u64, |v: u64| v);
scalar_arg!(f32, |v: f32| v.to_bits() as u64);

unsafe impl<'a, 'b: 'a> PushKernelArg<&'b TensorMap> for Launch<'a> {
    fn arg(&mut self, m: &'b TensorMap) -> &mut Self {
        match self {
            Launch::Plain(b) => {
                b.arg(m);
            }
            Launch::Pdl(p) => {
                p.push(Slot::Map(Box::new(*m)));
            }
        }
        self
    }
}

// The engine's typed device buffers: the slice or view inside, whatever its element type (the
// launchers check the type against the kernel's before they push it).
unsafe impl<'a, 'b: 'a> PushKernelArg<&'b DeviceMatrix> for Launch<'a> {
    fn arg(&mut self, m: &'b DeviceMatrix) -> &mut Self {
        match m {
            DeviceMatrix::F32(s) => self.arg(s),
            DeviceMatrix::BF16(s) => self.arg(s),
            DeviceMatrix::F16(s) => self.arg(s),
        }
    }
}

unsafe impl<'a, 'b: 'a> PushKernelArg<&'b mut DeviceMatrix> for Launch<'a> {
    fn arg(&mut self, m: &'b mut DeviceMatrix) -> &mut Self {
        match m {
            DeviceMatrix::F32(s) => self.arg(s),
            DeviceMatrix::BF16(s) => self.arg(s),
            DeviceMatrix::F16(s) => self.arg(s),
        }
    }
}

unsafe impl<'a, 'b: 'a, 'c: 'b> PushKernelArg<&'b DeviceView<'c>> for Launch<'a> {
    fn arg(&mut self, v: &'b DeviceView<'c>) -> &mut Self {
        match v {
            DeviceView::F32(x) => self.arg(x),
            DeviceView::BF16(x) => self.arg(x),
            DeviceView::F16(x) => self.arg(x),
        }
    }
}

/// A null device pointer, for an optional buffer the kernel tests (a bias).
static NULL: u64 = 0;

/// An optional f32 buffer (a bias): its address, or a 64-bit zero the kernel reads as null.
unsafe impl<'a, 'b: 'a> PushKernelArg<Option<&'b CudaSlice<f32>>> for Launch<'a> {
    fn arg(&mut self, s: Option<&'b CudaSlice<f32>>) -> &mut Self {
        match s {
            Some(s) => self.arg(s),
            None => self.arg(&NULL),
        }
    }
}
