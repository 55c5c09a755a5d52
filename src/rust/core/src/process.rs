//! The process tabnetrs runs in: thread counts, and what changes after `fork()`.
//!
//! R's fork-based parallelism (`parallel::mclapply()`, `future::plan(multicore)`,
//! fork clusters of foreach and tune) copies a process without its threads. A
//! thread pool built before the fork lives on in the child as data only: its
//! workers are gone, and the first job sent to it waits forever. Two pools are
//! concerned:
//!
//! * the kernels' rayon pool: `kernels` keeps the pid each pool was
//!   built in and builds a fresh one in a child (the stale one is leaked: its
//!   destructor would wait for threads that do not exist);
//! * libtorch's OpenMP pool (GNU libgomp has no fork handler): in a forked child
//!   libtorch is kept on one thread, so it never starts a parallel region.
//!   The fused kernels still use the requested count.
//!
//! OpenBLAS handles fork itself (it stops its threads before the fork and
//! restarts them on first use).
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The pid that first used tabnetrs (the library is loaded there).
static ORIGIN: AtomicU32 = AtomicU32::new(0);

/// Records this process as the origin if none is recorded yet (call at load).
pub fn init() {
    let _ = ORIGIN.compare_exchange(0, std::process::id(), Ordering::SeqCst, Ordering::SeqCst);
}

/// True in a process forked from the one that loaded tabnetrs.
pub fn in_forked_child() -> bool {
    init();
    ORIGIN.load(Ordering::SeqCst) != std::process::id()
}

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the session's thread count: the fused kernels run on `n` threads, and
/// so does libtorch outside training and inference runs (one thread in a
/// forked child, see the module doc).
pub fn set_threads(n: usize) {
    let n = n.max(1);
    THREADS.store(n, Ordering::SeqCst);
    tch::set_num_threads(if in_forked_child() { 1 } else { n as i32 });
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

/// The session's thread count (the last [`set_threads`], else libtorch's).
pub fn threads() -> usize {
    match THREADS.load(Ordering::SeqCst) {
        0 => tch::get_num_threads().max(1) as usize,
        n => n,
    }
}

/// libtorch's thread count to restore after a run.
pub(crate) fn torch_threads() -> i32 {
    if in_forked_child() {
        1
    } else {
        threads() as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loading_process_is_not_a_child() {
        init();
        assert!(!in_forked_child());
    }

    #[test]
    fn a_forked_child_knows_it_is_one() {
        init();
        // SAFETY: the child only reads atomics and a pid, then exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = in_forked_child();
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child created above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(!in_forked_child());
    }
}
