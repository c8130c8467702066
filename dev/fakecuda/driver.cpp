// driver.cpp: a fake libcuda.so.1 that runs the engine's real CUDA backend (cudarc, the
// launchers, the arena, graphs, PDL launches) on the CPU emulator of the kernels
// (dev/emu/cuda_emu.h), so that the GPU tests (tests/gpu/) run on a machine without a GPU. It
// implements the driver calls the engine makes (run.sh lists any other as cudarc's "Missing
// symbol"), with these semantics:
//  * One device, "Fake CUDA device (CPU emulator)", compute capability FAKECUDA_CC (default 9.0),
//    FAKECUDA_SMS multiprocessors (default 132), FAKECUDA_MEM_MB of memory (default 8192; an
//    allocation past it is CUDA_ERROR_OUT_OF_MEMORY).
//  * Device memory is host memory; a new allocation is filled with 0xff bytes (NaN in every
//    float type), so a kernel reading memory nobody wrote produces NaN instead of a plausible 0,
//    and ends at an inaccessible page, so a kernel reading or writing past its end (beyond
//    CUDA's 256-byte rounding) faults. Copies and memsets must stay inside one allocation (else
//    CUDA_ERROR_INVALID_VALUE, with a message on stderr).
//  * Everything runs synchronously, in call order, under one lock: a valid schedule of any
//    stream program. Launches check their configuration as CUDA does (the emulator's launch()),
//    dynamic shared memory above 48 KB needs cuFuncSetAttribute first, and what the emulator
//    finds (divergent barriers, writes outside shared memory, ...) fails the launch with
//    CUDA_ERROR_LAUNCH_FAILED and a message on stderr.
//  * Stream capture records launches, copies and memsets into a graph that cuGraphLaunch
//    replays (arguments copied at capture, host buffers read at replay, as CUDA does). During
//    a capture, what CUDA forbids fails and invalidates it: synchronizing, allocating or freeing
//    from the capturing thread, copying from or to pageable host memory, waiting on an event
//    recorded outside the capture.
#include <cuda.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "fake_kernels.h"

#define API extern "C" __attribute__((visibility("default")))

namespace {

std::recursive_mutex mu; // everything below, and the emulator (not reentrant)

int env_int(const char *name, int fallback) {
    const char *v = std::getenv(name);
    return v && *v ? std::atoi(v) : fallback;
}
// FAKECUDA_CC: "90" -> (9, 0), "80" -> (8, 0), "86" -> (8, 6).
int cc() { return env_int("FAKECUDA_CC", 90); }
size_t mem_limit() { return size_t(env_int("FAKECUDA_MEM_MB", 8192)) << 20; }
bool verbose() { return env_int("FAKECUDA_VERBOSE", 0) != 0; }

void complain(const std::string &what) { std::fprintf(stderr, "fakecuda: %s\n", what.c_str()); }

// ---- memory --------------------------------------------------------------------------------
// Each device allocation ends (rounded up to 256 bytes, CUDA's alignment) at a PROT_NONE page,
// so a kernel reading or writing past its buffer faults (SIGSEGV) instead of going unseen.
struct Mapping { void *base; size_t bytes; };
std::map<uintptr_t, Mapping> mappings;     // device pointer -> its mmap
std::map<uintptr_t, size_t> device_blocks; // base -> bytes
std::map<uintptr_t, size_t> pinned_blocks;
size_t device_used = 0;

bool inside(const std::map<uintptr_t, size_t> &blocks, uintptr_t p, size_t n) {
    auto it = blocks.upper_bound(p);
    if (it == blocks.begin()) return false;
    --it;
    return p >= it->first && p + n <= it->first + it->second;
}
bool device_range(CUdeviceptr p, size_t n, const char *what) {
    if (n == 0 || inside(device_blocks, uintptr_t(p), n)) return true;
    complain(std::string(what) + ": device range of " + std::to_string(n) +
             " bytes not inside one allocation");
    return false;
}

// ---- streams, events, graphs ---------------------------------------------------------------
using Op = std::function<CUresult()>;

struct Graph {
    std::vector<Op> ops;
};

struct Stream {
    bool capturing = false;
    bool invalidated = false;
    std::string why; // what invalidated the capture
    Graph *graph = nullptr;
    std::set<const void *> events; // recorded during this capture
};
std::set<Stream *> streams;
thread_local Stream *capturing_here = nullptr; // the capture this thread began, if any

struct Event {
    bool recorded = false;
};

Stream *as_stream(CUstream s) {
    Stream *st = reinterpret_cast<Stream *>(s);
    return streams.count(st) ? st : nullptr; // null: the default stream
}

CUresult invalidate(Stream *s, const std::string &why) {
    complain("capture invalidated: " + why);
    s->invalidated = true;
    s->why = why;
    return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
}

// A call that may not happen while this thread captures (synchronize, allocate, free).
CUresult forbidden_in_capture(const char *what) {
    if (!capturing_here) return CUDA_SUCCESS;
    invalidate(capturing_here, std::string(what) + " during stream capture");
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

// Runs `op` now, or records it when `stream` captures.
CUresult enqueue(CUstream stream, Op op) {
    Stream *s = as_stream(stream);
    if (s && s->capturing) {
        if (s->invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        s->graph->ops.push_back(std::move(op));
        return CUDA_SUCCESS;
    }
    return op();
}

CUresult copy_op(CUstream stream, void *dst, const void *src, size_t n) {
    return enqueue(stream, [=] {
        std::memcpy(dst, src, n);
        return CUDA_SUCCESS;
    });
}

// Host memory a captured copy touches must be pinned (CUDA refuses pageable memory there).
CUresult check_host(CUstream stream, const void *host, size_t n) {
    Stream *s = as_stream(stream);
    if (s && s->capturing && !inside(pinned_blocks, uintptr_t(host), n))
        return invalidate(s, "copy with pageable host memory");
    return CUDA_SUCCESS;
}

// ---- modules and launches ------------------------------------------------------------------
struct Function {
    const void *kernel;
};
std::map<std::string, std::unique_ptr<Function>> functions;

CUresult launch(CUfunction f, fake::Dim grid, fake::Dim block, unsigned smem, CUstream stream,
                void **params, void **extra, unsigned cluster_x = 1) {
    if (!f) return CUDA_ERROR_INVALID_HANDLE;
    if (extra) {
        complain("cuLaunchKernel `extra` is not supported");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    const void *k = reinterpret_cast<Function *>(f)->kernel;
    std::function<std::string()> run = fake::bind(k, grid, block, smem, params, cluster_x);
    const std::string name = fake::kernel_name(k);
    return enqueue(stream, [run, name, grid, block, smem] {
        if (verbose())
            std::fprintf(stderr, "fakecuda: %s grid (%u, %u, %u) block (%u, %u, %u) smem %u\n",
                         name.c_str(), grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
        const std::string err = run();
        if (err.empty()) return CUDA_SUCCESS;
        complain(name + ": " + err);
        return CUDA_ERROR_LAUNCH_FAILED;
    });
}

char fake_context; // the one context's handle points here

} // namespace

#define LOCK std::lock_guard<std::recursive_mutex> lock_(mu)

// ---- initialisation, device, context -------------------------------------------------------
API CUresult cuInit(unsigned int) { return CUDA_SUCCESS; }
API CUresult cuDriverGetVersion(int *v) {
    *v = 13000;
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGetCount(int *n) {
    *n = 1;
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGet(CUdevice *d, int ordinal) {
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGetName(char *name, int len, CUdevice) {
    std::snprintf(name, size_t(len), "Fake CUDA device (CPU emulator, sm_%d)", cc());
    return CUDA_SUCCESS;
}
API CUresult cuDeviceTotalMem(size_t *bytes, CUdevice) {
    *bytes = mem_limit();
    return CUDA_SUCCESS;
}
API CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice) {
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = cc() / 10; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = cc() % 10; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = env_int("FAKECUDA_SMS", 132); break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
        *v = cc() >= 90 ? 232448 : cc() == 80 ? 166912 : 101376;
        break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *v = 49152; break;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; break;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: *v = 0; break;
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: *v = 1; break;
    default: *v = 0;
    }
    return CUDA_SUCCESS;
}
API CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice) {
    *c = reinterpret_cast<CUcontext>(&fake_context);
    return CUDA_SUCCESS;
}
API CUresult cuDevicePrimaryCtxRelease(CUdevice) { return CUDA_SUCCESS; }
API CUresult cuCtxSetCurrent(CUcontext) { return CUDA_SUCCESS; }
API CUresult cuCtxGetCurrent(CUcontext *c) {
    *c = reinterpret_cast<CUcontext>(&fake_context);
    return CUDA_SUCCESS;
}
API CUresult cuCtxPushCurrent(CUcontext) { return CUDA_SUCCESS; }
API CUresult cuCtxPopCurrent(CUcontext *c) {
    if (c) *c = reinterpret_cast<CUcontext>(&fake_context);
    return CUDA_SUCCESS;
}
API CUresult cuCtxGetDevice(CUdevice *d) {
    *d = 0;
    return CUDA_SUCCESS;
}
API CUresult cuCtxSynchronize() { return forbidden_in_capture("cuCtxSynchronize"); }

namespace {
// The codes this driver returns, with CUDA's names and messages.
struct ErrorText { CUresult code; const char *name, *text; };
constexpr ErrorText kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED",
     "unspecified launch failure (fakecuda: see stderr)"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
     "operation failed due to a previous error during capture"},
};
const ErrorText &error_text(CUresult e) {
    static constexpr ErrorText other{CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "fakecuda error"};
    for (const ErrorText &t : kErrors)
        if (t.code == e) return t;
    return other;
}
} // namespace
API CUresult cuGetErrorString(CUresult e, const char **s) {
    *s = error_text(e).text;
    return CUDA_SUCCESS;
}
API CUresult cuGetErrorName(CUresult e, const char **s) {
    *s = error_text(e).name;
    return CUDA_SUCCESS;
}

// ---- memory --------------------------------------------------------------------------------
API CUresult cuMemGetInfo(size_t *free, size_t *total) {
    LOCK;
    *total = mem_limit();
    *free = mem_limit() - device_used;
    return CUDA_SUCCESS;
}
API CUresult cuMemAlloc(CUdeviceptr *p, size_t n) {
    LOCK;
    if (CUresult e = forbidden_in_capture("cuMemAlloc")) return e;
    if (n == 0) return CUDA_ERROR_INVALID_VALUE;
    if (n > mem_limit() - device_used) return CUDA_ERROR_OUT_OF_MEMORY;
    const size_t page = 4096, rounded = (n + 255) / 256 * 256;
    const size_t bytes = (rounded + page - 1) / page * page + page;
    void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    char *guard = static_cast<char *>(m) + bytes - page;
    mprotect(guard, page, PROT_NONE);
    char *base = guard - rounded;
    std::memset(base, 0xff, rounded);
    device_blocks[uintptr_t(base)] = n;
    mappings[uintptr_t(base)] = Mapping{m, bytes};
    device_used += n;
    *p = CUdeviceptr(base);
    return CUDA_SUCCESS;
}
API CUresult cuMemFree(CUdeviceptr p) {
    LOCK;
    if (CUresult e = forbidden_in_capture("cuMemFree")) return e;
    auto it = device_blocks.find(uintptr_t(p));
    if (it == device_blocks.end()) return CUDA_ERROR_INVALID_VALUE;
    device_used -= it->second;
    device_blocks.erase(it);
    const Mapping m = mappings.at(uintptr_t(p));
    mappings.erase(uintptr_t(p));
    munmap(m.base, m.bytes);
    return CUDA_SUCCESS;
}
API CUresult cuMemHostAlloc(void **p, size_t n, unsigned int) {
    LOCK;
    if (CUresult e = forbidden_in_capture("cuMemHostAlloc")) return e;
    void *m = std::malloc(std::max<size_t>(n, 1));
    if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
    pinned_blocks[uintptr_t(m)] = n;
    *p = m;
    return CUDA_SUCCESS;
}
API CUresult cuMemAllocHost(void **p, size_t n) { return cuMemHostAlloc(p, n, 0); }
API CUresult cuMemFreeHost(void *p) {
    LOCK;
    if (CUresult e = forbidden_in_capture("cuMemFreeHost")) return e;
    if (!pinned_blocks.erase(uintptr_t(p))) return CUDA_ERROR_INVALID_VALUE;
    std::free(p);
    return CUDA_SUCCESS;
}

API CUresult cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream s) {
    LOCK;
    if (!device_range(dst, n, "cuMemcpyHtoD")) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult e = check_host(s, src, n)) return e;
    return copy_op(s, reinterpret_cast<void *>(dst), src, n);
}
API CUresult cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream s) {
    LOCK;
    if (!device_range(src, n, "cuMemcpyDtoH")) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult e = check_host(s, dst, n)) return e;
    return copy_op(s, dst, reinterpret_cast<const void *>(src), n);
}
API CUresult cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
    LOCK;
    if (!device_range(dst, n, "cuMemcpyDtoD") || !device_range(src, n, "cuMemcpyDtoD"))
        return CUDA_ERROR_INVALID_VALUE;
    return copy_op(s, reinterpret_cast<void *>(dst), reinterpret_cast<const void *>(src), n);
}
API CUresult cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t n) {
    LOCK;
    if (CUresult e = forbidden_in_capture("cuMemcpyHtoD")) return e;
    return cuMemcpyHtoDAsync(dst, src, n, nullptr);
}
API CUresult cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t n) {
    LOCK;
    if (CUresult e = forbidden_in_capture("cuMemcpyDtoH")) return e;
    return cuMemcpyDtoHAsync(dst, src, n, nullptr);
}
API CUresult cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    return cuMemcpyDtoDAsync(dst, src, n, nullptr);
}
API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) {
    LOCK;
    if (!device_range(dst, n, "cuMemsetD8")) return CUDA_ERROR_INVALID_VALUE;
    return enqueue(s, [=] {
        std::memset(reinterpret_cast<void *>(dst), v, n);
        return CUDA_SUCCESS;
    });
}
API CUresult cuMemsetD8(CUdeviceptr dst, unsigned char v, size_t n) {
    return cuMemsetD8Async(dst, v, n, nullptr);
}
API CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, CUstream s) {
    LOCK;
    if (!device_range(dst, 4 * n, "cuMemsetD32")) return CUDA_ERROR_INVALID_VALUE;
    return enqueue(s, [=] {
        std::fill_n(reinterpret_cast<unsigned *>(dst), n, v);
        return CUDA_SUCCESS;
    });
}

// ---- streams and events ------------------------------------------------------------------------
API CUresult cuStreamCreate(CUstream *s, unsigned int) {
    LOCK;
    Stream *st = new Stream;
    streams.insert(st);
    *s = reinterpret_cast<CUstream>(st);
    return CUDA_SUCCESS;
}
API CUresult cuStreamCreateWithPriority(CUstream *s, unsigned int flags, int) {
    return cuStreamCreate(s, flags);
}
API CUresult cuStreamDestroy(CUstream s) {
    LOCK;
    Stream *st = as_stream(s);
    if (!st) return CUDA_ERROR_INVALID_HANDLE;
    streams.erase(st);
    delete st->graph;
    delete st;
    return CUDA_SUCCESS;
}
API CUresult cuStreamSynchronize(CUstream) {
    LOCK;
    return forbidden_in_capture("cuStreamSynchronize");
}
API CUresult cuStreamQuery(CUstream) { return CUDA_SUCCESS; }
API CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned int) {
    LOCK;
    Stream *st = as_stream(s);
    if (st && st->capturing && !st->events.count(e))
        return invalidate(st, "wait on an event recorded outside the capture");
    return CUDA_SUCCESS;
}
API CUresult cuEventCreate(CUevent *e, unsigned int) {
    *e = reinterpret_cast<CUevent>(new Event);
    return CUDA_SUCCESS;
}
API CUresult cuEventDestroy(CUevent e) {
    delete reinterpret_cast<Event *>(e);
    return CUDA_SUCCESS;
}
API CUresult cuEventRecord(CUevent e, CUstream s) {
    LOCK;
    Stream *st = as_stream(s);
    if (st && st->capturing) st->events.insert(e);
    else reinterpret_cast<Event *>(e)->recorded = true;
    return CUDA_SUCCESS;
}
API CUresult cuEventRecordWithFlags(CUevent e, CUstream s, unsigned int) {
    return cuEventRecord(e, s);
}
API CUresult cuEventSynchronize(CUevent) {
    LOCK;
    return forbidden_in_capture("cuEventSynchronize");
}
API CUresult cuEventQuery(CUevent) { return CUDA_SUCCESS; }
API CUresult cuEventElapsedTime(float *ms, CUevent, CUevent) {
    *ms = 0.0f; // the emulator's time says nothing about a GPU's
    return CUDA_SUCCESS;
}

// ---- capture and graphs --------------------------------------------------------------------
API CUresult cuStreamBeginCapture(CUstream s, CUstreamCaptureMode) {
    LOCK;
    Stream *st = as_stream(s);
    if (!st) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; // the legacy default stream
    if (st->capturing || capturing_here) return CUDA_ERROR_ILLEGAL_STATE;
    st->capturing = true;
    st->invalidated = false;
    st->why.clear();
    st->events.clear();
    st->graph = new Graph;
    capturing_here = st;
    return CUDA_SUCCESS;
}
API CUresult cuStreamEndCapture(CUstream s, CUgraph *g) {
    LOCK;
    Stream *st = as_stream(s);
    if (!st || !st->capturing) return CUDA_ERROR_ILLEGAL_STATE;
    if (capturing_here != st) return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    st->capturing = false;
    capturing_here = nullptr;
    Graph *graph = st->graph;
    st->graph = nullptr;
    if (st->invalidated) {
        delete graph;
        *g = nullptr;
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    *g = reinterpret_cast<CUgraph>(graph);
    return CUDA_SUCCESS;
}
API CUresult cuStreamIsCapturing(CUstream s, CUstreamCaptureStatus *status) {
    LOCK;
    Stream *st = as_stream(s);
    *status = !st || !st->capturing ? CU_STREAM_CAPTURE_STATUS_NONE
              : st->invalidated     ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                    : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    return CUDA_SUCCESS;
}
API CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph g, unsigned long long) {
    LOCK;
    if (!g) return CUDA_ERROR_INVALID_VALUE;
    *exec = reinterpret_cast<CUgraphExec>(new Graph(*reinterpret_cast<Graph *>(g)));
    return CUDA_SUCCESS;
}
API CUresult cuGraphLaunch(CUgraphExec exec, CUstream s) {
    LOCK;
    Stream *st = as_stream(s);
    if (st && st->capturing) return invalidate(st, "graph launch inside a capture (not modelled)");
    for (const Op &op : reinterpret_cast<Graph *>(exec)->ops)
        if (CUresult e = op()) return e;
    return CUDA_SUCCESS;
}
API CUresult cuGraphUpload(CUgraphExec, CUstream) { return CUDA_SUCCESS; }
API CUresult cuGraphDestroy(CUgraph g) {
    delete reinterpret_cast<Graph *>(g);
    return CUDA_SUCCESS;
}
API CUresult cuGraphExecDestroy(CUgraphExec g) {
    delete reinterpret_cast<Graph *>(g);
    return CUDA_SUCCESS;
}

// ---- modules, functions, launches ----------------------------------------------------------
// Every image resolves every entry point the emulator has: the images (cubin or PTX) are the
// GPU's code, which the emulator replaces by its own build of the same sources.
API CUresult cuModuleLoadData(CUmodule *m, const void *) {
    *m = reinterpret_cast<CUmodule>(&fake_context);
    return CUDA_SUCCESS;
}
API CUresult cuModuleLoadDataEx(CUmodule *m, const void *image, unsigned int, CUjit_option *,
                                void **) {
    return cuModuleLoadData(m, image);
}
API CUresult cuModuleUnload(CUmodule) { return CUDA_SUCCESS; }
API CUresult cuModuleGetFunction(CUfunction *f, CUmodule, const char *name) {
    LOCK;
    auto it = functions.find(name);
    if (it == functions.end()) {
        const void *k = fake::kernel(name);
        if (!k) return CUDA_ERROR_NOT_FOUND;
        it = functions.emplace(name, std::make_unique<Function>(Function{k})).first;
    }
    *f = reinterpret_cast<CUfunction>(it->second.get());
    return CUDA_SUCCESS;
}
API CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) {
    LOCK;
    if (a != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) return CUDA_SUCCESS;
    int limit = 0;
    cuDeviceGetAttribute(&limit, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, 0);
    const std::string err =
        fake::opt_in(reinterpret_cast<Function *>(f)->kernel, size_t(v), size_t(limit));
    if (err.empty()) return CUDA_SUCCESS;
    complain(err);
    return CUDA_ERROR_INVALID_VALUE;
}
// The tiled 2-D maps of 16-bit elements the TMA products use (dev/emu/tma_emu.h encodes them);
// anything else is refused as not modelled. The described matrix must lie inside one allocation.
API CUresult cuTensorMapEncodeTiled(CUtensorMap *map, CUtensorMapDataType type, cuuint32_t rank,
                                    void *addr, const cuuint64_t *dims, const cuuint64_t *strides,
                                    const cuuint32_t *box, const cuuint32_t *element_strides,
                                    CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                    CUtensorMapL2promotion, CUtensorMapFloatOOBfill fill) {
    LOCK;
    if (!map || !addr || !dims || !strides || !box || !element_strides) return CUDA_ERROR_INVALID_VALUE;
    const bool modelled = rank == 2 && element_strides[0] == 1 && element_strides[1] == 1 &&
                          interleave == CU_TENSOR_MAP_INTERLEAVE_NONE &&
                          fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE &&
                          (type == CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 || type == CU_TENSOR_MAP_DATA_TYPE_FLOAT16) &&
                          (swizzle == CU_TENSOR_MAP_SWIZZLE_NONE || swizzle == CU_TENSOR_MAP_SWIZZLE_128B);
    if (!modelled) {
        complain("cuTensorMapEncodeTiled: only 2-D bf16/f16 maps, element strides 1, no interleave, "
                 "zero fill and no or 128-byte swizzle are modelled");
        return CUDA_ERROR_INVALID_VALUE;
    }
    const uint64_t d[2] = {dims[0], dims[1]};
    const uint32_t b[2] = {box[0], box[1]};
    const unsigned swizzle_bytes = swizzle == CU_TENSOR_MAP_SWIZZLE_128B ? 128 : 0;
    if (const char *e = fake::encode_tensor_map(map, 2, addr, d, strides[0], b, swizzle_bytes)) {
        complain(std::string("cuTensorMapEncodeTiled: ") + e);
        return CUDA_ERROR_INVALID_VALUE;
    }
    const size_t extent = size_t(strides[0]) * size_t(d[1] - 1) + 2 * size_t(d[0]);
    if (!device_range(CUdeviceptr(addr), extent, "cuTensorMapEncodeTiled")) return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}
// Blocks per SM from the threads and the dynamic shared memory alone (1 KB reserved per block, as
// on the GPU); the fake knows neither registers nor static shared memory.
API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *n, CUfunction, int threads,
                                                                   size_t smem, unsigned) {
    const size_t per_sm = cc() >= 90 ? 233472 : cc() == 80 ? 167936 : 102400;
    const int by_threads = threads > 0 ? 2048 / threads : 0, by_smem = int(per_sm / (smem + 1024));
    *n = std::min(std::min(by_threads, by_smem), 32);
    return CUDA_SUCCESS;
}
API CUresult cuFuncGetAttribute(int *v, CUfunction_attribute, CUfunction) {
    *v = 0;
    return CUDA_SUCCESS;
}
API CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                            unsigned int bx, unsigned int by, unsigned int bz, unsigned int smem,
                            CUstream s, void **params, void **extra) {
    LOCK;
    return launch(f, {gx, gy, gz}, {bx, by, bz}, smem, s, params, extra);
}
// Attributes (programmatic stream serialization, ...) change when a kernel may start on a GPU,
// not what it computes; here every launch runs after the previous one.
// The attributes the engine sets: programmatic stream serialization (a no-op here: launches
// run in stream order), a cluster dimension along x (sm_90; the emulator runs a cluster's
// blocks together) and cooperative (every block of the grid together; refused, as by CUDA,
// when the grid exceeds what the SMs hold at once). Anything else is refused.
API CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **params,
                              void **extra) {
    LOCK;
    unsigned cluster_x = 1;
    for (unsigned i = 0; i < c->numAttrs; i++) {
        const CUlaunchAttribute &a = c->attrs[i];
        if (a.id == CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION) continue;
        if (a.id == CU_LAUNCH_ATTRIBUTE_COOPERATIVE && a.value.cooperative == 1) {
            int per_sm = 0, sms = 0;
            const int threads = int(c->blockDimX * c->blockDimY * c->blockDimZ);
            cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&per_sm, f, threads, c->sharedMemBytes, 0);
            cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0);
            if (double(c->gridDimX) * c->gridDimY * c->gridDimZ > double(per_sm) * sms)
                return CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
            cluster_x = fake::kWholeGrid;
            continue;
        }
        if (a.id == CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION && cc() >= 90 &&
            a.value.clusterDim.y == 1 && a.value.clusterDim.z == 1 && a.value.clusterDim.x >= 1 &&
            a.value.clusterDim.x <= 8 && c->gridDimX % a.value.clusterDim.x == 0) {
            cluster_x = a.value.clusterDim.x;
            continue;
        }
        complain("cuLaunchKernelEx: attribute " + std::to_string(int(a.id)) +
                 " (or its value) is not supported");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    return launch(f, {c->gridDimX, c->gridDimY, c->gridDimZ},
                  {c->blockDimX, c->blockDimY, c->blockDimZ}, c->sharedMemBytes, c->hStream,
                  params, extra, cluster_x);
}
