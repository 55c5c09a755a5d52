//! The session's thread count, and libtorch's (per-thread) OpenMP count.
//!
//! The fused kernels run on the session's count ([`threads`], on the rayon
//! pool of [`super::pool`]); libtorch runs on it too outside training and
//! inference runs (during a run it is on one thread, see
//! [`super::run_settings`]), and on one thread in a forked child.
use super::fork::in_forked_child;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The session's thread count: the last [`set_threads`], or 0 when none was
/// set (then libtorch's count is the session's).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the session's thread count: the fused kernels run on `n` threads, and
/// so does libtorch outside training and inference runs (one thread in a
/// forked child, see [`crate::runtime`]).
pub fn set_threads(n: usize) {
    let n = n.max(1);
    THREADS.store(n, Ordering::SeqCst);
    tch::set_num_threads(if in_forked_child() { 1 } else { n as i32 });
}

/// The session's thread count (the last [`set_threads`], else libtorch's).
/// Results never depend on it: the kernels split work by the data's shape
/// (`kernels::MAX_SPLIT`), not by threads.
pub fn threads() -> usize {
    match THREADS.load(Ordering::SeqCst) {
        0 => tch::get_num_threads().max(1) as usize,
        n => n,
    }
}

/// Puts libtorch on `n` threads on the calling thread (its OpenMP count is
/// per thread), only when it is on another count: libtorch's
/// `set_num_threads` also rebuilds its pthreadpool, new threads and all,
/// which prediction paid several times per call before.
pub(crate) fn torch_threads_here(n: i32) {
    if tch::get_num_threads() != n {
        tch::set_num_threads(n);
    }
}

/// Records libtorch's current count as the session's when none was set, so
/// that [`threads`] keeps it while a run puts libtorch on one thread.
pub(crate) fn keep_session_threads() {
    let n = tch::get_num_threads().max(1) as usize;
    let _ = THREADS.compare_exchange(0, n, Ordering::SeqCst, Ordering::SeqCst);
}

/// libtorch's thread count to restore after a run.
pub(crate) fn torch_threads() -> i32 {
    if in_forked_child() {
        1
    } else {
        threads() as i32
    }
}
