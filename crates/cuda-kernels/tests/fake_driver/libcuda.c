/* A fake CUDA driver: just enough of libcuda.so for cudarc to open a device, so that the ways a real driver can
 * fail are checked on a machine without a GPU. Built by tests/fake_driver.rs (and scripts/gpu-check.sh's rehearsal)
 * with `cc -shared -fPIC`, and found by putting its folder first on LD_LIBRARY_PATH.
 *
 * FAKE_CUDA_MODE picks the failure:
 *   no-device  cuInit says CUDA_ERROR_NO_DEVICE (a driver installed on a machine without a GPU)
 *   busy       creating the context fails with CUDA_ERROR_DEVICE_UNAVAILABLE (exclusive mode, in use)
 *   sm75       the device is a compute capability 7.5 part (older than the kernels' sm_80)
 *   bad-ptx    every PTX module fails to JIT with CUDA_ERROR_INVALID_PTX, and the JIT log says where
 *   ok         everything opens (no kernel can run: there is no cuLaunchKernel here)
 * Device 0 is the only device; any other ordinal is CUDA_ERROR_INVALID_DEVICE, as from a real driver.
 */
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUstream;
typedef void *CUmodule;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_DEVICE_UNAVAILABLE = 46,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_PTX = 218,
};

/* CUdevice_attribute values read by diffuse and cudarc */
enum {
    MAX_THREADS_PER_BLOCK = 1, MAX_BLOCK_DIM_X = 2, MAX_BLOCK_DIM_Y = 3, MAX_BLOCK_DIM_Z = 4,
    MAX_GRID_DIM_X = 5, MAX_GRID_DIM_Y = 6, MAX_GRID_DIM_Z = 7, MAX_SHARED_MEMORY_PER_BLOCK = 8,
    MULTIPROCESSOR_COUNT = 16, COMPUTE_CAPABILITY_MAJOR = 75, COMPUTE_CAPABILITY_MINOR = 76,
    MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97, MEMORY_POOLS_SUPPORTED = 115,
};

enum { CU_JIT_ERROR_LOG_BUFFER = 5, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6 };

static int mode_is(const char *mode) {
    const char *m = getenv("FAKE_CUDA_MODE");
    return m != NULL && strcmp(m, mode) == 0;
}

static int the_context; /* its address is the one context handle */
static int a_stream, a_module;
static CUcontext current;

CUresult cuInit(unsigned int flags) {
    (void)flags;
    return mode_is("no-device") ? CUDA_ERROR_NO_DEVICE : CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int *version) {
    *version = 13000;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
    *count = 1;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice device) {
    (void)device;
    strncpy(name, "Fake GPU", (size_t)len);
    return CUDA_SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice device) {
    (void)device;
    *bytes = (size_t)80 << 30;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice device) {
    (void)device;
    switch (attribute) {
    case COMPUTE_CAPABILITY_MAJOR: *value = mode_is("sm75") ? 7 : 9; break;
    case COMPUTE_CAPABILITY_MINOR: *value = mode_is("sm75") ? 5 : 0; break;
    case MULTIPROCESSOR_COUNT: *value = 132; break;
    case MAX_THREADS_PER_BLOCK: case MAX_BLOCK_DIM_X: case MAX_BLOCK_DIM_Y: *value = 1024; break;
    case MAX_BLOCK_DIM_Z: *value = 64; break;
    case MAX_GRID_DIM_X: *value = 2147483647; break;
    case MAX_GRID_DIM_Y: case MAX_GRID_DIM_Z: *value = 65535; break;
    case MAX_SHARED_MEMORY_PER_BLOCK: *value = 49152; break;
    case MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *value = 232448; break;
    case MEMORY_POOLS_SUPPORTED: *value = 0; break;
    default: *value = 0;
    }
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice device) {
    (void)device;
    if (mode_is("busy")) return CUDA_ERROR_DEVICE_UNAVAILABLE;
    *ctx = &the_context;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
    (void)device;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *ctx) {
    *ctx = current;
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
    current = ctx;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) { return CUDA_SUCCESS; }

CUresult cuStreamCreate(CUstream *stream, unsigned int flags) {
    (void)flags;
    *stream = &a_stream;
    return CUDA_SUCCESS;
}

CUresult cuStreamDestroy_v2(CUstream stream) {
    (void)stream;
    return CUDA_SUCCESS;
}

CUresult cuStreamSynchronize(CUstream stream) {
    (void)stream;
    return CUDA_SUCCESS;
}

static const char jit_log[] = "ptxas application ptx input, line 5; error   : fake driver refuses every module";

CUresult cuModuleLoadData(CUmodule *module, const void *image) {
    (void)image;
    if (mode_is("bad-ptx")) return CUDA_ERROR_INVALID_PTX;
    *module = &a_module;
    return CUDA_SUCCESS;
}

CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int count, int *options, void **values) {
    if (!mode_is("bad-ptx")) return cuModuleLoadData(module, image);
    char *log = NULL;
    size_t size = 0;
    for (unsigned int i = 0; i < count; i++) {
        if (options[i] == CU_JIT_ERROR_LOG_BUFFER) log = values[i];
        if (options[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES) size = (size_t)values[i];
    }
    if (log != NULL && size > 0) {
        strncpy(log, jit_log, size - 1);
        log[size - 1] = '\0';
    }
    return CUDA_ERROR_INVALID_PTX;
}

CUresult cuModuleUnload(CUmodule module) {
    (void)module;
    return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult error, const char **name) {
    switch (error) {
    case CUDA_ERROR_NO_DEVICE: *name = "CUDA_ERROR_NO_DEVICE"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_DEVICE: *name = "CUDA_ERROR_INVALID_DEVICE"; return CUDA_SUCCESS;
    case CUDA_ERROR_DEVICE_UNAVAILABLE: *name = "CUDA_ERROR_DEVICE_UNAVAILABLE"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_PTX: *name = "CUDA_ERROR_INVALID_PTX"; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult cuGetErrorString(CUresult error, const char **text) {
    switch (error) {
    case CUDA_ERROR_NO_DEVICE: *text = "no CUDA-capable device is detected"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_DEVICE: *text = "invalid device ordinal"; return CUDA_SUCCESS;
    case CUDA_ERROR_DEVICE_UNAVAILABLE: *text = "CUDA-capable device(s) is/are busy or unavailable"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_PTX: *text = "a PTX JIT compilation failed"; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}
