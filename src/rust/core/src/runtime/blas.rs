//! The BLAS in this process: OpenBLAS's thread controls and the kernel set it
//! chose for the CPU. OpenBLAS picks its kernels per CPU and falls back to
//! generic ones on CPUs it does not know (OpenBLAS 0.3.21 runs Prescott, SSE3
//! kernels on recent Xeons: every product 3-6x slower than the CPU allows); the
//! R layer tells the user once, with the `OPENBLAS_CORETYPE` to set.
use std::ffi::c_void;

pub(crate) type SetThreads = unsafe extern "C" fn(i32);
pub(crate) type GetThreads = unsafe extern "C" fn() -> i32;

/// OpenBLAS's thread controls, when the BLAS in this process is OpenBLAS
/// (looked up once: every prediction call asks for them).
pub(crate) fn openblas() -> Option<(SetThreads, GetThreads)> {
    *CONTROLS.get_or_init(lookup_openblas)
}

/// OpenBLAS's `openblas_set_num_threads` and `openblas_get_num_threads`, or
/// None when the process has no OpenBLAS (looked up at the first use).
static CONTROLS: std::sync::OnceLock<Option<(SetThreads, GetThreads)>> = std::sync::OnceLock::new();

fn lookup_openblas() -> Option<(SetThreads, GetThreads)> {
    // SAFETY: dlsym with NUL-terminated names; the symbols, when present, have
    // these C signatures (OpenBLAS's cblas.h).
    unsafe {
        let set = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_set_num_threads".as_ptr());
        let get = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_get_num_threads".as_ptr());
        if set.is_null() || get.is_null() {
            return None;
        }
        Some((
            std::mem::transmute::<*mut c_void, SetThreads>(set),
            std::mem::transmute::<*mut c_void, GetThreads>(get),
        ))
    }
}

/// The name of the kernel set OpenBLAS chose for this CPU ("Haswell",
/// "SkylakeX", "Prescott", ...), or None when the BLAS is not OpenBLAS.
pub fn blas_core() -> Option<String> {
    type CoreName = unsafe extern "C" fn() -> *const std::os::raw::c_char;
    // SAFETY: dlsym with a NUL-terminated name; OpenBLAS's
    // `char* openblas_get_corename(void)` returns a static NUL-terminated string.
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_get_corename".as_ptr());
        if f.is_null() {
            return None;
        }
        let name = std::mem::transmute::<*mut c_void, CoreName>(f)();
        if name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .trim()
                .to_string(),
        )
    }
}

/// The fastest OpenBLAS kernel set this CPU can run, by its instruction sets:
/// "SkylakeX" (AVX-512 F/BW/DQ/VL), "Haswell" (AVX2 + FMA), else None.
pub fn best_blas_core() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Some("SkylakeX");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some("Haswell");
        }
    }
    None
}

/// True when OpenBLAS runs kernels older than the CPU supports: its fallback for
/// CPUs it does not know (e.g. recent Xeons with OpenBLAS 0.3.21 get Prescott,
/// SSE3, 3-6x slower products than their AVX-512 kernels).
pub fn blas_is_fallback(core: &str, best: &str) -> bool {
    let rank = |c: &str| match c.to_ascii_lowercase().as_str() {
        "skylakex" | "cooperlake" | "sapphirerapids" => 3,
        "haswell" | "zen" | "skylake" => 2,
        "sandybridge" => 1,
        _ => 0,
    };
    rank(core) < rank(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blas_fallback_is_recognised() {
        assert!(blas_is_fallback("Prescott", "SkylakeX"));
        assert!(blas_is_fallback("Prescott", "Haswell"));
        assert!(blas_is_fallback("Haswell", "SkylakeX"));
        assert!(!blas_is_fallback("SkylakeX", "SkylakeX"));
        assert!(!blas_is_fallback("Cooperlake", "SkylakeX"));
        assert!(!blas_is_fallback("Zen", "Haswell"));
        // the BLAS this crate is linked with is OpenBLAS here (see setup.sh)
        if let Some(core) = blas_core() {
            assert!(!core.is_empty());
        }
    }
}
