//! Which process this is: the one that loaded tabnetrs, or a child forked
//! from it (see the fork-safety notes in [`crate::runtime`]).
use std::sync::atomic::{AtomicU32, Ordering};

/// The pid that first used tabnetrs (the library is loaded there); 0 until
/// [`init`] or the first [`in_forked_child`].
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
