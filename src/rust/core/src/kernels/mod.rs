//! Fused CPU kernels for the hand-derived encoder pass (`encoder::fused`):
//! ghost batch norm fused with GLU and the residual, its backward, and the
//! row-wise sparsemax / entmax-1.5 with their backward. A group of virtual
//! batches ([`Chunks::tasks`]) is one rayon task, which the encoder pass runs
//! through every layer in turn ([`LinearBnForward`], [`LinearBnBackward`]),
//! instead of a dozen full-batch passes of separate libtorch kernels per
//! layer; each task's matrix products run on the crate's own micro-kernels
//! ([`crate::gemm`]) where the CPU has AVX2 or AVX-512, else on libtorch (BLAS).
//!
//! Virtual batches are cut exactly like pytorch-tabnet's `torch.chunk`: contiguous
//! runs of rows (the sizes come from the caller, see `ghost_bn::chunk_sizes`;
//! this module is a leaf and knows no network type), so each task streams through
//! memory the prefetcher can follow. (The autograd path interleaves its chunks to
//! reach libtorch's fused batch norm; batches are shuffled, so both are random
//! virtual batches of the same sizes.)
use crate::gemm::{self, Kernel, Mat};
use std::sync::{Mutex, OnceLock};
use tch::{Device, Kind, Tensor};

mod chunks;
mod linear_bn;
mod mask_row;
pub use chunks::Chunks;
pub use linear_bn::{
    linear_rows, merge_grads, BnStats, ChunkStats, LinearBnBackward, LinearBnForward, TaskGrads,
};
pub(crate) use mask_row::row_threshold;
pub use mask_row::{mask_row, mask_row_backward};

/// A raw pointer that rayon tasks may share; every task writes disjoint rows.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: the pointer is only dereferenced for rows that one task owns (see
// `rows_mut` and `row`), while the tensor it points into is kept alive by the caller.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    #[inline(always)]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// A tensor that rayon tasks read concurrently (views and products only; libtorch
/// reference counts are atomic). Tasks write only their own rows, through views.
#[derive(Clone, Copy)]
pub(crate) struct Shared<'a>(pub &'a Tensor);
// SAFETY: tasks only create views and read through them (libtorch's reference
// counts are atomic); writes go to disjoint rows.
unsafe impl Sync for Shared<'_> {}
// SAFETY: as above.
unsafe impl Send for Shared<'_> {}

/// A tensor produced in a rayon task and handed back to the caller.
pub(crate) struct SendTensor(pub Tensor);
// SAFETY: the tensor was created in the task and is not shared with it any more.
unsafe impl Send for SendTensor {}

impl<'a> Shared<'a> {
    fn get(self) -> &'a Tensor {
        self.0
    }

    fn rows(self, first: usize, n: usize) -> Tensor {
        self.0.narrow(0, first as i64, n as i64)
    }
}

fn is_contiguous(t: &Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    let mut expect = 1i64;
    for (s, st) in size.iter().zip(stride.iter()).rev() {
        if *s != 1 && *st != expect {
            return false;
        }
        expect *= *s;
    }
    true
}

/// True when `t` can be handled by these kernels (contiguous f32 on the CPU).
pub fn supported(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && is_contiguous(t)
}

pub(crate) fn ptr(t: &Tensor) -> SendPtr {
    assert!(
        supported(t),
        "kernel input must be a contiguous f32 CPU tensor"
    );
    SendPtr(t.data_ptr() as *mut f32)
}

/// The elements of a contiguous f32 CPU tensor (None for any other tensor).
///
/// # Safety
/// A `Tensor` handle does not own its storage exclusively: the caller must be
/// the storage's only reader and writer while the slice lives (no other handle
/// or view of it is used meanwhile).
// The storage behind a `Tensor` is shared and mutable (like an `UnsafeCell`):
// a `&Tensor` is all any libtorch in-place operation needs, so the usual
// reasoning behind `mut_from_ref` does not apply; the function is `unsafe`
// and exclusive use is its caller's contract instead.
#[allow(clippy::mut_from_ref)]
pub(crate) unsafe fn as_mut_slice(t: &Tensor) -> Option<&mut [f32]> {
    // SAFETY: checked contiguous f32 CPU storage of numel() elements; exclusive
    // use is the caller's contract.
    supported(t)
        .then(|| unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel()) })
}

/// A fresh, uninitialised (rows, cols) f32 CPU tensor.
pub(crate) fn empty(rows: usize, cols: usize) -> Tensor {
    Tensor::empty(&[rows as i64, cols as i64], (Kind::Float, Device::Cpu))
}

/// The micro-kernel for the products of `x` (rows, k) with a weight `w`, and
/// the view of `x` (its rows may be `ld` apart, e.g. a narrowed tensor), or
/// None for the BLAS path (no micro-kernel on this CPU, `TABNETRS_KERNELS=blas`,
/// or a tensor the kernels do not take).
fn micro(x: &Tensor, w: &Tensor) -> Option<(Kernel, Mat)> {
    let kern = gemm::selected();
    if kern == Kernel::Blas || !supported(w) {
        return None;
    }
    let (size, stride) = (x.size(), x.stride());
    let ok = x.device() == Device::Cpu
        && x.kind() == Kind::Float
        && size.len() == 2
        && (stride[1] == 1 || size[1] == 1)
        && stride[0] >= size[1];
    ok.then(|| {
        (
            kern,
            Mat {
                ptr: x.data_ptr() as *const f32,
                rows: size[0] as usize,
                cols: size[1] as usize,
                ld: stride[0] as usize,
            },
        )
    })
}

/// The left operand of a product as the kernels take it: the tensor itself
/// (e.g. a narrowed column range, rows `ld` apart) when the micro-kernels run
/// and take it, else a contiguous copy (as the BLAS path always had it).
pub(crate) fn operand(x: &Tensor) -> Tensor {
    let strided_ok = gemm::selected() != Kernel::Blas && {
        let (size, stride) = (x.size(), x.stride());
        x.device() == Device::Cpu
            && x.kind() == Kind::Float
            && size.len() == 2
            && stride[1] == 1
            && stride[0] >= size[1]
    };
    if strided_ok {
        x.shallow_clone()
    } else {
        x.contiguous()
    }
}

/// A Mat that rayon tasks share (read only).
#[derive(Clone, Copy)]
struct SendMat(Mat);
// SAFETY: tasks only read through it, while the caller keeps the tensor alive.
unsafe impl Send for SendMat {}
// SAFETY: as above.
unsafe impl Sync for SendMat {}

/// The number of threads the kernels run on: the session's (see [`crate::process`]).
/// Results never depend on it: work is split by [`MAX_SPLIT`], not by threads.
pub fn threads() -> usize {
    crate::process::threads()
}

/// Parallel tasks a batch is split into at most. Reductions over rows
/// (gradients, batch statistics) are summed per task and then over tasks in
/// task order, so the split must not follow the thread count: it is fixed by
/// the data's shape, and a seed gives bit-identical weights on 1, 2 or 8
/// threads. (More threads than this do not speed up one batch.)
pub const MAX_SPLIT: usize = 8;

/// The rayon pool used by the kernels (see [`threads`]). A pool inherited
/// through `fork()` has no workers: a new one is built in the child (the old
/// one is leaked, see [`crate::process`]).
pub(crate) fn with_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    type Pool = (usize, u32, std::sync::Arc<rayon::ThreadPool>);
    static POOL: OnceLock<Mutex<Option<Pool>>> = OnceLock::new();
    let n = threads();
    let pid = std::process::id();
    let pool = {
        let mut guard = POOL
            .get_or_init(|| Mutex::new(None))
            .lock()
            .unwrap_or_else(|e| e.into_inner());
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
                let p = std::sync::Arc::new(
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
        AssertSend(f())
    })
    .into_inner()
}

/// [`in_pool`] with grad mode off inside `f`.
pub(crate) fn on_pool<R>(f: impl FnOnce() -> R) -> R {
    in_pool(|| tch::no_grad(f))
}

/// e^x in f32 (Cephes polynomial, ≤ 2 ulp), written so loops vectorise.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    // t's low mantissa bits hold round(x·log2 e) (|n| < 2^22): integer ops only
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((ni + 127) as u32) << 23)
}

#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// Defines a row function compiled three times, generic x86-64, AVX2+FMA and
/// AVX-512 (when the compiler has it, `cfg(tabnet_avx512)`), picking the widest
/// build the CPU runs (the loops are written with equal-length slices so LLVM
/// vectorises them). Every row function is element-wise (no reduction across
/// a row, no contraction into FMA: Rust never fuses a·b + c), so the three
/// builds give the same results bit for bit.
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[inline]
        $vis fn $name($($arg: $t),*) {
            #[inline(always)]
            fn imp($($arg: $t),*) $body
            #[cfg(all(target_arch = "x86_64", tabnet_avx512))]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $t),*) {
                    imp($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features just checked.
                    return unsafe { avx512($($arg),*) };
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $t),*) {
                    imp($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features just checked.
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

simd_fn! {
    /// acc += x
    pub fn add_row(acc: &mut [f32], x: &[f32]) {
        let n = acc.len();
        let x = &x[..n];
        for j in 0..n {
            acc[j] += x[j];
        }
    }
}

simd_fn! {
    /// y += a · x
    pub fn axpy_row(y: &mut [f32], x: &[f32], a: f32) {
        let n = y.len();
        let x = &x[..n];
        for j in 0..n {
            y[j] += a * x[j];
        }
    }
}

simd_fn! {
    /// acc += (x − mean)²
    pub fn sq_dev_row(acc: &mut [f32], x: &[f32], mean: &[f32]) {
        let n = acc.len();
        let (x, mean) = (&x[..n], &mean[..n]);
        for j in 0..n {
            let d = x[j] - mean[j];
            acc[j] += d * d;
        }
    }
}

simd_fn! {
    /// x ← (x − mean) · rstd
    pub fn normalise_row(x: &mut [f32], mean: &[f32], rstd: &[f32]) {
        let n = x.len();
        let (mean, rstd) = (&mean[..n], &rstd[..n]);
        for j in 0..n {
            x[j] = (x[j] - mean[j]) * rstd[j];
        }
    }
}

simd_fn! {
    /// GLU of y = γ ẑ + β (first half ⊙ σ(second half)) into `out`; with a
    /// residual input `h` (non-empty), out = (GLU + h) · √½.
    pub fn glu_row(zhat: &[f32], gamma: &[f32], beta: &[f32], h: &[f32], out: &mut [f32]) {
        let d = out.len();
        let (z1, z2) = (&zhat[..d], &zhat[d..2 * d]);
        let (g1, g2) = (&gamma[..d], &gamma[d..2 * d]);
        let (b1, b2) = (&beta[..d], &beta[d..2 * d]);
        for j in 0..d {
            out[j] = (g1[j] * z1[j] + b1[j]) * sigmoid_f32(g2[j] * z2[j] + b2[j]);
        }
        if !h.is_empty() {
            let h = &h[..d];
            for j in 0..d {
                out[j] = (out[j] + h[j]) * std::f32::consts::FRAC_1_SQRT_2;
            }
        }
    }
}

simd_fn! {
    /// ∂L/∂y of [`glu_row`] (y = γ ẑ + β) from ∂L/∂out `go` times `scale`.
    pub fn glu_grad_row(zhat: &[f32], gamma: &[f32], beta: &[f32], go: &[f32], scale: f32, gy: &mut [f32]) {
        let d = go.len();
        let (z1, z2) = (&zhat[..d], &zhat[d..2 * d]);
        let (g1, g2) = (&gamma[..d], &gamma[d..2 * d]);
        let (b1, b2) = (&beta[..d], &beta[d..2 * d]);
        let (gy1, gy2) = gy.split_at_mut(d);
        let (gy1, gy2) = (&mut gy1[..d], &mut gy2[..d]);
        for j in 0..d {
            let y1 = g1[j] * z1[j] + b1[j];
            let s = sigmoid_f32(g2[j] * z2[j] + b2[j]);
            let g = go[j] * scale;
            gy1[j] = g * s;
            gy2[j] = g * y1 * s * (1.0 - s);
        }
    }
}

simd_fn! {
    /// sum_g += gy, sum_gz += gy · ẑ
    pub fn bn_grad_sums_row(gy: &[f32], zhat: &[f32], sum_g: &mut [f32], sum_gz: &mut [f32]) {
        let n = gy.len();
        let (zhat, sum_g, sum_gz) = (&zhat[..n], &mut sum_g[..n], &mut sum_gz[..n]);
        for j in 0..n {
            sum_g[j] += gy[j];
            sum_gz[j] += gy[j] * zhat[j];
        }
    }
}

simd_fn! {
    /// d ← a · (d − mg − ẑ · mgz): ghost BN's input gradient from ∂L/∂y in `d`
    pub fn bn_grad_row(d: &mut [f32], zhat: &[f32], a: &[f32], mg: &[f32], mgz: &[f32]) {
        let n = d.len();
        let (zhat, a, mg, mgz) = (&zhat[..n], &a[..n], &mg[..n], &mgz[..n]);
        for j in 0..n {
            d[j] = a[j] * (d[j] - mg[j] - zhat[j] * mgz[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            let (a, b) = (exp_f32(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(exp_f32(-200.0) >= 0.0 && exp_f32(-200.0) < 1e-37);
        assert!((sigmoid_f32(0.0) - 0.5).abs() < 1e-7);
    }
}
