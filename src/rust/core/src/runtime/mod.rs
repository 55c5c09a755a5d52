//! The process tabnetrs runs in: every piece of process-wide state the core
//! holds lives in this module, one concern per file. Nothing else in the core
//! keeps process state: what is thread-local elsewhere is scoped to a thread
//! and a call (the fused pass's scratch buffers are caches of capacity;
//! `mask`'s `TRACEABLE` flag is set only while a trace runs on that thread).
//!
//! | static | file | what it holds |
//! |---|---|---|
//! | `ORIGIN` | [`fork`] | the pid that loaded tabnetrs (fork detection) |
//! | `THREADS` | [`threads`] | the session's thread count (0: libtorch's) |
//! | `POOL` | [`pool`] | the kernels' rayon pool, its size and the pid that built it |
//! | `STATE` | [`run_settings`] | nesting count of runs and the OpenBLAS count to restore |
//! | `CONTROLS` | [`blas`] | OpenBLAS's thread controls, looked up once |
//! | `SELECTED` | [`kernel_choice`] | the fused pass's product kernel (`TABNETRS_KERNELS`) |
//!
//! glibc's allocator thresholds ([`allocator`]) are process state kept by
//! glibc itself; they are changed only through [`RunSettings`].
//!
//! Fork safety. R's fork-based parallelism (`parallel::mclapply()`,
//! `future::plan(multicore)`, fork clusters of foreach and tune) copies a
//! process without its threads. A thread pool built before the fork lives on
//! in the child as data only: its workers are gone, and the first job sent to
//! it waits forever. Two pools are concerned:
//!
//! * the kernels' rayon pool: [`pool`] keeps the pid each pool was built in
//!   and builds a fresh one in a child (the stale one is leaked: its
//!   destructor would wait for threads that do not exist);
//! * libtorch's OpenMP pool (GNU libgomp has no fork handler): in a forked
//!   child libtorch is kept on one thread, so it never starts a parallel
//!   region. The fused kernels still use the requested count.
//!
//! OpenBLAS handles fork itself (it stops its threads before the fork and
//! restarts them on first use).
mod allocator;
mod blas;
mod fork;
mod kernel_choice;
pub(crate) mod pool;
pub(crate) mod run_settings;
mod threads;

pub use blas::{best_blas_core, blas_core, blas_is_fallback};
pub use fork::{in_forked_child, init};
pub use kernel_choice::selected_kernel;
pub(crate) use pool::{in_pool, on_pool, with_pool};
pub(crate) use run_settings::RunSettings;
pub use threads::{set_threads, threads};
