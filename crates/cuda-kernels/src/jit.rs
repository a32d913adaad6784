//! The driver's JIT error log: when a PTX module does not load, the error code alone (`CUDA_ERROR_INVALID_PTX`)
//! does not say why; the log the driver's assembler writes does (`ptxas application ptx input, line 212; error :
//! ...`). cudarc's `load_module` does not ask for it, so after a failure the module is loaded once more through
//! `cuModuleLoadDataEx` with a log buffer.

use std::ffi::{c_void, CStr, CString};
use std::mem::MaybeUninit;

use cudarc::driver::sys::{self, CUjit_option, CUresult};

/// Bytes of log kept (the driver truncates beyond this; the first error is at the top).
const LOG_BYTES: usize = 16 * 1024;

/// The JIT error log of `source` in the context current on this thread, trimmed; `None` when the module loads after
/// all or the driver wrote nothing.
pub(crate) fn jit_error_log(source: &str) -> Option<String> {
    let source = CString::new(source).ok()?;
    let mut log = vec![0u8; LOG_BYTES];
    let mut options = [
        CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
        CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
    ];
    // The size option's value is the integer itself in the pointer's place, as the driver API defines it.
    let mut values: [*mut c_void; 2] = [log.as_mut_ptr().cast(), LOG_BYTES as *mut c_void];
    let mut module = MaybeUninit::uninit();
    // SAFETY: the caller has made a context current (this runs right after a failed load in it); `source` is a
    // NUL-terminated PTX text that outlives the call; `options` and `values` are two entries each, the buffer option
    // pointing at `log`, which holds `LOG_BYTES` writable bytes and outlives the call.
    let result = unsafe {
        sys::cuModuleLoadDataEx(
            module.as_mut_ptr(),
            source.as_ptr().cast(),
            options.len() as u32,
            options.as_mut_ptr(),
            values.as_mut_ptr(),
        )
    };
    if result == CUresult::CUDA_SUCCESS {
        // SAFETY: the load succeeded, so `module` holds a loaded module, unloaded here exactly once.
        unsafe { sys::cuModuleUnload(module.assume_init()) };
        return None;
    }
    log_text(&log)
}

/// The text before the first NUL, trimmed; `None` when empty.
fn log_text(buffer: &[u8]) -> Option<String> {
    let text = CStr::from_bytes_until_nul(buffer)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(buffer).into_owned());
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::log_text;

    #[test]
    fn the_log_is_the_text_before_the_first_nul_and_an_empty_one_is_none() {
        let mut buffer =
            b"ptxas application ptx input, line 7; error   : Unknown symbol\n".to_vec();
        buffer.extend_from_slice(&[0, b'x', 0]);
        assert_eq!(
            log_text(&buffer).as_deref(),
            Some("ptxas application ptx input, line 7; error   : Unknown symbol")
        );
        assert_eq!(log_text(&[0; 8]), None);
        assert_eq!(log_text(b"  \n"), None);
    }
}
