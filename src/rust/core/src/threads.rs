//! Thread settings for a training run on the CPU.
//!
//! The hand-derived pass ([`crate::manual_encoder`]) parallelises over virtual
//! batches itself: each rayon task runs its own single-threaded BLAS products and
//! fused kernels. libtorch's OpenMP pool and OpenBLAS's own threads would only
//! compete with those tasks (both spin while idle; measured: 2 threads became
//! slower than 1), so for the duration of a run they are set to one thread and
//! the kernels get the requested count. Everything is restored afterwards.
use crate::kernels;
use std::ffi::c_void;

type SetThreads = unsafe extern "C" fn(i32);
type GetThreads = unsafe extern "C" fn() -> i32;

/// OpenBLAS's thread controls, when the BLAS in this process is OpenBLAS.
fn openblas() -> Option<(SetThreads, GetThreads)> {
    // SAFETY: dlsym with NUL-terminated names; the symbols, when present, have
    // these C signatures (OpenBLAS's cblas.h).
    unsafe {
        let set = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_set_num_threads".as_ptr());
        let get = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_get_num_threads".as_ptr());
        if set.is_null() || get.is_null() {
            return None;
        }
        Some((std::mem::transmute::<*mut c_void, SetThreads>(set), std::mem::transmute::<*mut c_void, GetThreads>(get)))
    }
}

/// OpenBLAS's current thread count (None when the BLAS is not OpenBLAS).
pub fn blas_threads() -> Option<i32> {
    openblas().map(|(_, get)| unsafe { get() })
}

/// While alive: kernels on the caller's libtorch thread count, libtorch and
/// OpenBLAS on one thread. Restores all three when dropped.
pub struct TrainingThreads {
    torch: i32,
    kernels: usize,
    blas: Option<i32>,
}

impl TrainingThreads {
    pub fn enter() -> TrainingThreads {
        let torch = tch::get_num_threads().max(1);
        let kernels = kernels::configured_threads();
        kernels::set_threads(if kernels == 0 { torch as usize } else { kernels });
        tch::set_num_threads(1);
        let blas = openblas().map(|(set, get)| unsafe {
            let before = get();
            set(1);
            before
        });
        TrainingThreads { torch, kernels, blas }
    }
}

impl Drop for TrainingThreads {
    fn drop(&mut self) {
        tch::set_num_threads(self.torch);
        kernels::set_threads(self.kernels);
        if let (Some(n), Some((set, _))) = (self.blas, openblas()) {
            unsafe { set(n) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_restored() {
        tch::set_num_threads(2);
        let blas = blas_threads();
        {
            let _g = TrainingThreads::enter();
            assert_eq!(tch::get_num_threads(), 1);
            assert_eq!(kernels::threads(), 2);
            if blas.is_some() {
                assert_eq!(blas_threads(), Some(1));
            }
        }
        assert_eq!(tch::get_num_threads(), 2);
        assert_eq!(kernels::configured_threads(), 0);
        assert_eq!(blas_threads(), blas);
        tch::set_num_threads(1);
    }
}
