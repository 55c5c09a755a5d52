//! Ctrl-C while Rust runs: R only notes a pending interrupt during `.Call()`, and
//! its interpreter checks for one every thousand loop iterations or so, which
//! let a long fit run on for several epochs. Long loops ask R here between
//! units of work and return early; the R layer then raises the interrupt.
use std::ffi::c_void;
use std::os::raw::c_int;

extern "C" {
    fn R_ToplevelExec(fun: Option<unsafe extern "C" fn(*mut c_void)>, data: *mut c_void) -> c_int;
    fn R_CheckUserInterrupt();
}

unsafe extern "C" fn check(_: *mut c_void) {
    // SAFETY: runs inside R_ToplevelExec, which catches the long jump an
    // interrupt makes, so it never unwinds through Rust frames.
    unsafe { R_CheckUserInterrupt() }
}

/// True when the user pressed Ctrl-C (the interrupt is consumed: the caller
/// must report it). Call from R's main thread only.
pub fn pending() -> bool {
    // SAFETY: R_ToplevelExec runs `check` in a fresh top-level context and
    // returns FALSE (0) when it jumped out, i.e. on an interrupt.
    unsafe { R_ToplevelExec(Some(check), std::ptr::null_mut()) == 0 }
}
