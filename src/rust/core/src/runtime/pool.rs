//! The kernels' rayon pool: [`threads`](super::threads::threads) workers,
//! rebuilt when the count changes or in a forked child.
use super::threads::{threads, torch_threads_here};
use std::sync::{Arc, Mutex};

/// The pool: its thread count, the pid that built it, the pool. None until
/// the first [`with_pool`].
type Pool = (usize, u32, Arc<rayon::ThreadPool>);
static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// Runs `f` inside the kernels' rayon pool (see [`threads`]). A pool
/// inherited through `fork()` has no workers: a new one is built in the child
/// (the old one is leaked, see [`crate::runtime`]).
pub(crate) fn with_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let n = threads();
    let pid = std::process::id();
    let pool = {
        let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
        match guard.take() {
            Some((m, owner, p)) if m == n && owner == pid => {
                *guard = Some((m, owner, p.clone()));
                p
            }
            old => {
                if let Some((_, owner, p)) = old {
                    if owner != pid {
                        std::mem::forget(p);
                    }
                }
                let p = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .build()
                        .expect("rayon pool"),
                );
                *guard = Some((n, pid, p.clone()));
                p
            }
        }
    };
    pool.install(f)
}

/// Runs `f` on a thread of the kernels' pool, so that the rayon loops inside it
/// run in-pool instead of handing work across threads at every loop (and a
/// nested call runs inline). `f` may use libtorch tensors: the caller blocks
/// until it returns. Grad mode is per thread: `f` sees the pool thread's.
/// libtorch's OpenMP thread count is per thread too: on the pool thread it is
/// one, as in a run (see [`super::run_settings`]), so that its ops neither
/// compete with the pool's tasks nor round by whatever count the thread
/// first saw (a seed's bits would then follow the thread count).
pub(crate) fn in_pool<R>(f: impl FnOnce() -> R) -> R {
    struct AssertSend<T>(T);
    // SAFETY: the value crosses to the pool thread and back while the caller
    // waits; nothing else touches it meanwhile.
    unsafe impl<T> Send for AssertSend<T> {}
    impl<T> AssertSend<T> {
        fn into_inner(self) -> T {
            self.0
        }
    }
    let f = AssertSend(f);
    with_pool(move || {
        let f = f.into_inner();
        torch_threads_here(1);
        AssertSend(f())
    })
    .into_inner()
}

/// [`in_pool`] with grad mode off inside `f`.
pub(crate) fn on_pool<R>(f: impl FnOnce() -> R) -> R {
    in_pool(|| tch::no_grad(f))
}
