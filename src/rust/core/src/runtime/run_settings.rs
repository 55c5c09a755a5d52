//! Process settings for a training run on the CPU: threads and the allocator.
//!
//! The encoder's fused pass (`encoder::fused`) parallelises over virtual
//! batches itself: each rayon task runs its own single-threaded BLAS products and
//! fused kernels. libtorch's OpenMP pool and OpenBLAS's own threads would only
//! compete with those tasks (both spin while idle; measured: 2 threads became
//! slower than 1), so for the duration of a run they are set to one thread and
//! the kernels get the requested count.
//!
//! glibc hands blocks above its (adaptive) mmap threshold back to the kernel on
//! free, and trims the heap top above 128 KiB, so every step's multi-megabyte
//! activations came back as fresh, kernel-zeroed pages (measured in R: a third of
//! TabNet-S's epoch was system time). During a run the mmap threshold is 32 MiB
//! and trimming is off; afterwards trimming resumes above 64 MiB (glibc's own
//! adaptive steady state) and, after a training run, `malloc_trim` gives the
//! memory back (an inference call keeps it for the next one). Threads are
//! restored when the run ends.
use super::allocator;
use super::blas::openblas;
use super::threads;

/// OpenBLAS's current thread count (None when the BLAS is not OpenBLAS).
#[cfg(test)]
fn blas_threads() -> Option<i32> {
    // SAFETY: OpenBLAS's getter takes no arguments and has no preconditions.
    openblas().map(|(_, get)| unsafe { get() })
}

/// While alive: kernels on the caller's libtorch thread count, libtorch and
/// OpenBLAS on one thread, activations reused by the allocator. Tokens nest:
/// the first one saves the process settings, the last one dropped restores them.
pub struct RunSettings(());

struct Saved {
    blas: Option<i32>,
    /// a training run was among the tokens: give the heap back at the end
    trim: bool,
}

/// The runs alive (tokens not yet dropped) and what the first one saved; None
/// outside runs.
static STATE: std::sync::Mutex<Option<(usize, Saved)>> = std::sync::Mutex::new(None);

impl RunSettings {
    /// The settings of a training run: at its end the allocator's free
    /// memory goes back to the system (`malloc_trim`).
    pub fn enter() -> RunSettings {
        Self::enter_with(true)
    }

    /// The settings of an inference call (prediction, explanation, the
    /// importances and SHAP): the same, but the heap is not trimmed at the
    /// end. Its buffers are a few times the data's size and the next call
    /// takes them again; trimming gave them back to the system to be
    /// faulted in and zeroed anew (4.5 ms of a 100,000-row `predict()` of
    /// 37). glibc still trims the heap's top above 64 MiB by itself.
    pub fn enter_inference() -> RunSettings {
        Self::enter_with(false)
    }

    fn enter_with(trim: bool) -> RunSettings {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match state.as_mut() {
            Some((count, saved)) => {
                *count += 1;
                saved.trim |= trim;
            }
            None => {
                // the kernels keep the session's count (libtorch's, if none was set)
                threads::keep_session_threads();
                threads::torch_threads_here(1);
                // SAFETY: OpenBLAS's thread controls; setting one thread is always valid.
                let blas = openblas().map(|(set, get)| unsafe {
                    let before = get();
                    set(1);
                    before
                });
                allocator::keep_pages();
                *state = Some((1, Saved { blas, trim }));
            }
        }
        RunSettings(())
    }
}

impl Drop for RunSettings {
    fn drop(&mut self) {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        let last = match state.as_mut() {
            Some((count, _)) => {
                *count -= 1;
                *count == 0
            }
            None => false,
        };
        if last {
            if let Some((_, saved)) = state.take() {
                allocator::restore(saved.trim);
                threads::torch_threads_here(threads::torch_threads());
                if let (Some(n), Some((set, _))) = (saved.blas, openblas()) {
                    // SAFETY: restores a count OpenBLAS reported itself.
                    unsafe { set(n) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread counts are process-wide, and other unit tests (SHAP,
    /// importances, export) enter and leave run settings on other test
    /// threads at the same time: the check runs alone in a child process.
    #[test]
    fn settings_are_restored() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "runtime::run_settings::tests::settings_are_restored_alone",
                "--ignored",
                "--test-threads=1",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[ignore = "run alone in its own process by settings_are_restored"]
    fn settings_are_restored_alone() {
        threads::set_threads(2);
        let blas = blas_threads();
        {
            let _g = RunSettings::enter();
            let _nested = RunSettings::enter();
            assert_eq!(tch::get_num_threads(), 1);
            assert_eq!(threads::threads(), 2);
            if blas.is_some() {
                assert_eq!(blas_threads(), Some(1));
            }
        }
        assert_eq!(tch::get_num_threads(), 2);
        assert_eq!(threads::threads(), 2);
        assert_eq!(blas_threads(), blas);
        threads::set_threads(1);
    }
}
