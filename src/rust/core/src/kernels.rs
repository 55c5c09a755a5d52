//! Fused CPU kernels for the hand-derived encoder pass (`encoder::fused`):
//! ghost batch norm fused with GLU and the residual, its backward, and the
//! row-wise sparsemax / entmax-1.5 with their backward. Each virtual batch is
//! handled by one rayon task while it sits in cache, instead of a dozen
//! full-batch passes of separate libtorch kernels; each task's matrix products
//! run on the crate's own micro-kernels ([`crate::gemm`]) where the CPU has
//! AVX2 or AVX-512, else on libtorch (BLAS).
//!
//! Virtual batches are cut exactly like pytorch-tabnet's `torch.chunk`: contiguous
//! runs of rows (the sizes come from the caller, see `ghost_bn::chunk_sizes`;
//! this module is a leaf and knows no network type), so each task streams through
//! memory the prefetcher can follow. (The autograd path interleaves its chunks to
//! reach libtorch's fused batch norm; batches are shuffled, so both are random
//! virtual batches of the same sizes.)
use crate::gemm::{self, Kernel, Mat, Packed, TnAcc};
use rayon::prelude::*;
use std::sync::{Mutex, OnceLock};
use tch::{Device, Kind, Tensor};

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

/// Rows first..first+n of a view.
fn mat_rows(m: Mat, first: usize, n: usize) -> Mat {
    assert!(first + n <= m.rows);
    Mat {
        // SAFETY: inside the view (just checked).
        ptr: unsafe { m.ptr.add(first * m.ld) },
        rows: n,
        ..m
    }
}

/// A weight's values (contiguous f32, checked by [`micro`]).
fn weights(w: &Tensor) -> &[f32] {
    // SAFETY: contiguous f32 CPU storage of numel() elements, only read while
    // the product runs (weights are not written during a pass).
    unsafe { std::slice::from_raw_parts(w.data_ptr() as *const f32, w.numel()) }
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
/// run in-pool instead of handing work across threads at every loop. `f` may
/// use libtorch tensors: the caller blocks until it returns, and grad mode is
/// off inside it (grad mode is per thread).
pub(crate) fn on_pool<R>(f: impl FnOnce() -> R) -> R {
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
        AssertSend(tch::no_grad(f))
    })
    .into_inner()
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

/// Rows per parallel task (at least).
const TASK_ROWS: usize = 2048;

/// Which rows make up each virtual batch of a training batch, and how the
/// virtual batches are grouped into parallel tasks.
#[derive(Debug, Clone)]
pub struct Chunks {
    pub rows: usize,
    /// number of equal chunks and their size
    pub k: usize,
    pub c: usize,
    /// the remainder chunk (start row, length); length 0 if none
    pub rest: (usize, usize),
    /// equal chunks per task
    pub group: usize,
}

impl Chunks {
    /// The layout of virtual batches of the given sizes, in row order: equal
    /// ones first, then at most one of another size.
    pub fn from_sizes(sizes: &[i64]) -> Chunks {
        let rows = sizes.iter().sum::<i64>() as usize;
        let c = sizes[0] as usize;
        let k = sizes.iter().take_while(|&&s| s as usize == c).count();
        // tasks of at least TASK_ROWS rows (fewer, larger products), but up
        // to MAX_SPLIT tasks (fixed by the shape, never by the threads)
        let group = TASK_ROWS.div_ceil(c).min(k.div_ceil(MAX_SPLIT)).max(1);
        Chunks {
            rows,
            k,
            c,
            rest: (k * c, rows - k * c),
            group,
        }
    }

    pub fn count(&self) -> usize {
        self.k + usize::from(self.rest.1 > 0)
    }

    /// Rows of chunk `i`: (first row, count).
    pub fn rows_of(&self, i: usize) -> (usize, usize) {
        if i < self.k {
            (i * self.c, self.c)
        } else {
            (self.rest.0, self.rest.1)
        }
    }

    /// Tasks as ranges of chunk indices.
    fn tasks(&self) -> Vec<std::ops::Range<usize>> {
        let mut t: Vec<_> = (0..self.k)
            .step_by(self.group)
            .map(|i| i..(i + self.group).min(self.k))
            .collect();
        if self.rest.1 > 0 {
            t.push(self.k..self.k + 1);
        }
        t
    }

    /// Rows covered by a task: (first row, count).
    fn task_rows(&self, t: &std::ops::Range<usize>) -> (usize, usize) {
        let (first, _) = self.rows_of(t.start);
        let (last, n) = self.rows_of(t.end - 1);
        (first, last + n - first)
    }
}

/// Per-chunk statistics saved by the forward pass.
pub struct BnStats {
    /// 1/sqrt(var + eps) per (chunk, channel)
    pub rstd: Vec<f32>,
    /// mean and unbiased variance per (chunk, channel), for the running statistics
    pub mean: Vec<f32>,
    pub var_unbiased: Vec<f32>,
}

fn rows_mut<'a>(p: SendPtr, first: usize, n: usize, ch: usize) -> &'a mut [f32] {
    // SAFETY: callers pass rows of a live contiguous tensor that only this task touches.
    unsafe { std::slice::from_raw_parts_mut(p.get().add(first * ch), n * ch) }
}

/// z = x wᵀ followed by ghost BN, fused per task: each task multiplies its own
/// rows (single-threaded BLAS), then normalises each of its virtual batches in
/// place (z becomes ẑ = (z − μ)/σ) and runs `epilogue(row, ẑ_row)` while the
/// rows are in cache. `x` is (rows, in), `w` (ch, in) detached, `z` (rows, ch).
pub fn linear_bn_forward<F>(
    x: &Tensor,
    w: &Tensor,
    z: &Tensor,
    chunks: &Chunks,
    eps: f32,
    epilogue: F,
) -> BnStats
where
    F: Fn(usize, &[f32]) + Sync,
{
    let ch = z.size()[1] as usize;
    let zp = ptr(z);
    let wt = w.tr();
    let (xs, zs, wts) = (Shared(x), Shared(z), Shared(&wt));
    let micro = micro(x, w).map(|(k, m)| {
        let (n, kk) = (w.size()[0] as usize, w.size()[1] as usize);
        (k, SendMat(m), Packed::transposed(weights(w), n, kk))
    });
    let micro = micro.as_ref();
    // per task, per chunk: (1/σ, mean, unbiased variance) per channel
    type ChunkStats = (Vec<f32>, Vec<f32>, Vec<f32>);
    let per_task: Vec<Vec<ChunkStats>> = with_pool(|| {
        chunks
            .tasks()
            .into_par_iter()
            .map(|t| {
                let (f, n) = chunks.task_rows(&t);
                match micro {
                    // SAFETY: the task's rows of x and z exist and only this
                    // task writes its rows of z; the kernel is available.
                    Some((k, xm, b)) => unsafe {
                        gemm::gemm(*k, mat_rows(xm.0, f, n), b, zp.get().add(f * ch), ch)
                    },
                    None => tch::no_grad(|| {
                        let _ = xs.rows(f, n).mm_out(&zs.rows(f, n), wts.get());
                    }),
                }
                t.map(|i| {
                    let (first, count) = chunks.rows_of(i);
                    let block = rows_mut(zp, first, count, ch);
                    let mut mean = vec![0f32; ch];
                    for r in block.chunks_exact(ch) {
                        add_row(&mut mean, r);
                    }
                    let inv = 1.0 / count as f32;
                    mean.iter_mut().for_each(|m| *m *= inv);
                    let mut ss = vec![0f32; ch];
                    for r in block.chunks_exact(ch) {
                        sq_dev_row(&mut ss, r, &mean);
                    }
                    let rstd: Vec<f32> = ss.iter().map(|s| 1.0 / (s * inv + eps).sqrt()).collect();
                    let unb = if count > 1 {
                        1.0 / (count - 1) as f32
                    } else {
                        0.0
                    };
                    let var_u: Vec<f32> = ss.iter().map(|s| s * unb).collect();
                    for (j, r) in block.chunks_exact_mut(ch).enumerate() {
                        normalise_row(r, &mean, &rstd);
                        epilogue(first + j, r);
                    }
                    (rstd, mean, var_u)
                })
                .collect()
            })
            .collect()
    });
    let n = chunks.count();
    let mut stats = BnStats {
        rstd: Vec::with_capacity(n * ch),
        mean: Vec::with_capacity(n * ch),
        var_unbiased: Vec::with_capacity(n * ch),
    };
    for (r, m, v) in per_task.into_iter().flatten() {
        stats.rstd.extend(r);
        stats.mean.extend(m);
        stats.var_unbiased.extend(v);
    }
    stats
}

/// Eval mode: z = x wᵀ per task of rows (single-threaded BLAS each), then
/// `epilogue(row, z_row)` on each row while the task's rows are in cache.
pub fn linear_rows<F>(x: &Tensor, w: &Tensor, z: &Tensor, epilogue: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let rows = z.size()[0] as usize;
    let ch = z.size()[1] as usize;
    let zp = ptr(z);
    let wt = w.tr();
    let (xs, zs, wts) = (Shared(x), Shared(z), Shared(&wt));
    let micro = micro(x, w).map(|(k, m)| {
        let (n, kk) = (w.size()[0] as usize, w.size()[1] as usize);
        (k, SendMat(m), Packed::transposed(weights(w), n, kk))
    });
    let micro = micro.as_ref();
    let per = TASK_ROWS.min(rows.div_ceil(MAX_SPLIT)).max(1);
    with_pool(|| {
        (0..rows.div_ceil(per)).into_par_iter().for_each(|t| {
            let (f, n) = (t * per, per.min(rows - t * per));
            match micro {
                // SAFETY: the task's rows of x and z exist and only this task
                // writes its rows of z; the kernel is available.
                Some((k, xm, b)) => unsafe {
                    gemm::gemm(*k, mat_rows(xm.0, f, n), b, zp.get().add(f * ch), ch)
                },
                None => tch::no_grad(|| {
                    let _ = xs.rows(f, n).mm_out(&zs.rows(f, n), wts.get());
                }),
            }
            for (j, r) in rows_mut(zp, f, n, ch).chunks_exact_mut(ch).enumerate() {
                epilogue(f + j, r);
            }
        })
    })
}

/// Backward of [`linear_bn_forward`], fused per task. `grad_y(row, ẑ_row, gy_row)`
/// writes ∂L/∂y (y = γ ẑ + β) into `gy_row`; the kernel turns the task's rows into
/// ∂L/∂z in `dz` (rows, ch), then computes its rows of ∂L/∂x = dz w into `gx`
/// (rows, in), calls `post(row, gx_row)` on each, and accumulates ∂L/∂w = dzᵀ x.
/// Returns (∂L/∂γ, ∂L/∂β, ∂L/∂w).
#[allow(clippy::too_many_arguments)]
pub fn linear_bn_backward<F, P>(
    x: &Tensor,
    w: &Tensor,
    zhat: &Tensor,
    dz: &Tensor,
    gx: &Tensor,
    stats: &BnStats,
    gamma: &[f32],
    chunks: &Chunks,
    grad_y: F,
    post: P,
) -> (Vec<f32>, Vec<f32>, Tensor)
where
    F: Fn(usize, &[f32], &mut [f32]) + Sync,
    P: Fn(usize, &mut [f32]) + Sync,
{
    let ch = zhat.size()[1] as usize;
    let n_in = x.size()[1] as usize;
    let (zp, dp, gp) = (ptr(zhat), ptr(dz), ptr(gx));
    let (xs, ws, dzs, gxs) = (Shared(x), Shared(w), Shared(dz), Shared(gx));
    let micro = micro(x, w).map(|(k, m)| (k, SendMat(m), Packed::plain(weights(w), ch, n_in)));
    let micro = micro.as_ref();
    let partial: Vec<(Vec<f32>, Vec<f32>, TaskGrad)> = with_pool(|| {
        chunks
            .tasks()
            .into_par_iter()
            .map(|t| {
                let mut sum_gz_all = vec![0f32; ch];
                let mut sum_g_all = vec![0f32; ch];
                for i in t.clone() {
                    let (first, count) = chunks.rows_of(i);
                    let zb = rows_mut(zp, first, count, ch);
                    let db = rows_mut(dp, first, count, ch);
                    let mut sum_g = vec![0f32; ch];
                    let mut sum_gz = vec![0f32; ch];
                    for (j, (zr, dr)) in
                        zb.chunks_exact(ch).zip(db.chunks_exact_mut(ch)).enumerate()
                    {
                        grad_y(first + j, zr, dr);
                        bn_grad_sums_row(dr, zr, &mut sum_g, &mut sum_gz);
                    }
                    let inv = 1.0 / count as f32;
                    let rstd = &stats.rstd[i * ch..(i + 1) * ch];
                    // dz = γ σ⁻¹ (gy − mean(gy) − ẑ mean(gy ẑ))
                    let a: Vec<f32> = rstd.iter().zip(gamma).map(|(s, g)| s * g).collect();
                    let mg: Vec<f32> = sum_g.iter().map(|s| s * inv).collect();
                    let mgz: Vec<f32> = sum_gz.iter().map(|s| s * inv).collect();
                    for (zr, dr) in zb.chunks_exact(ch).zip(db.chunks_exact_mut(ch)) {
                        bn_grad_row(dr, zr, &a, &mg, &mgz);
                    }
                    add_row(&mut sum_g_all, &sum_g);
                    add_row(&mut sum_gz_all, &sum_gz);
                }
                let (f, n) = chunks.task_rows(&t);
                let dw = match micro {
                    Some((k, xm, b)) => {
                        let dzm = Mat {
                            // SAFETY: the task's rows of dz exist.
                            ptr: unsafe { dp.get().add(f * ch) },
                            rows: n,
                            cols: ch,
                            ld: ch,
                        };
                        let mut acc = TnAcc::new(n_in, ch);
                        // SAFETY: the task's rows of dz, x and gx exist, only this
                        // task writes its rows of gx; the kernel is available.
                        unsafe {
                            gemm::gemm(*k, dzm, b, gp.get().add(f * n_in), n_in);
                            gemm::gemm_tn(*k, mat_rows(xm.0, f, n), dzm, &mut acc);
                        }
                        TaskGrad::Micro(acc)
                    }
                    None => tch::no_grad(|| {
                        let dzt = dzs.rows(f, n);
                        let _ = dzt.mm_out(&gxs.rows(f, n), ws.get());
                        TaskGrad::Blas(SendTensor(dzt.tr().mm(&xs.rows(f, n))))
                    }),
                };
                for (j, r) in rows_mut(gp, f, n, n_in).chunks_exact_mut(n_in).enumerate() {
                    post(f + j, r);
                }
                (sum_gz_all, sum_g_all, dw)
            })
            .collect()
    });
    let mut dgamma = vec![0f32; ch];
    let mut dbeta = vec![0f32; ch];
    let mut dw: Option<Tensor> = None;
    let mut dw_micro: Option<Vec<f32>> = None;
    // tasks summed in task order (0 + t₀ = t₀ exactly, as in the BLAS path)
    for (gz, g, tg) in partial {
        add_row(&mut dgamma, &gz);
        add_row(&mut dbeta, &g);
        match tg {
            TaskGrad::Blas(SendTensor(w)) => {
                dw = Some(match dw {
                    None => w,
                    Some(acc) => acc + w,
                })
            }
            TaskGrad::Micro(acc) => {
                acc.add_transposed_into(dw_micro.get_or_insert_with(|| vec![0f32; ch * n_in]))
            }
        }
    }
    let dw = match dw_micro {
        Some(v) => Tensor::of_slice(&v).view([ch as i64, n_in as i64]),
        None => dw.expect("a batch has at least one task"),
    };
    (dgamma, dbeta, dw)
}

/// One task's share of ∂L/∂w: a BLAS product (ch, in) or the micro-kernel's
/// accumulator (in, ch).
enum TaskGrad {
    Blas(SendTensor),
    Micro(TnAcc),
}

/// Row-parallel loop over `rows` in blocks.
pub fn par_rows(rows: usize, f: impl Fn(usize) + Sync) {
    with_pool(|| {
        (0..rows.div_ceil(256)).into_par_iter().for_each(|blk| {
            for r in blk * 256..((blk + 1) * 256).min(rows) {
                f(r);
            }
        })
    })
}

/// Threshold of one row (values already sorted in descending order).
pub(crate) fn row_threshold(sorted: &[f64], entmax: bool) -> f64 {
    let mut tau = 0.0;
    let (mut sum, mut sum_sq) = (0.0, 0.0);
    for (i, &v) in sorted.iter().enumerate() {
        let k = (i + 1) as f64;
        sum += v;
        sum_sq += v * v;
        let t = if entmax {
            let mean = sum / k;
            let delta = (1.0 - (sum_sq - k * mean * mean)) / k;
            mean - delta.max(0.0).sqrt()
        } else {
            (sum - 1.0) / k
        };
        if (entmax && t <= v) || (!entmax && k * v > sum - 1.0) {
            tau = t;
        } else {
            break;
        }
    }
    tau
}

/// Sparsemax (entmax = false) or entmax-1.5 of one row, in place (logits in,
/// mask out), with the same support rule and closed form as `mask.rs` (whose
/// threshold search, [`row_threshold`], is shared).
pub fn mask_row(m: &mut [f32], entmax: bool) {
    // Rows of up to SHORT groups (every usual table) sort on the stack by
    // insertion, the rest in a per-thread buffer; both give the same
    // descending sequence, so the masks are the same bit for bit.
    const SHORT: usize = 32;
    if m.len() <= SHORT {
        let (mut xs, mut sorted) = ([0f64; SHORT], [0f64; SHORT]);
        let n = m.len();
        mask_row_in(
            m,
            entmax,
            SUPPORT_BOUND,
            &mut xs[..n],
            &mut sorted[..n],
            |v| {
                for i in 1..v.len() {
                    let x = v[i];
                    let mut j = i;
                    while j > 0 && v[j - 1] < x {
                        v[j] = v[j - 1];
                        j -= 1;
                    }
                    v[j] = x;
                }
            },
        );
        return;
    }
    thread_local! {
        static SCRATCH: std::cell::RefCell<(Vec<f64>, Vec<f64>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with(|cell| {
        let (xs, sorted) = &mut *cell.borrow_mut();
        xs.resize(m.len(), 0.0);
        sorted.resize(m.len(), 0.0);
        mask_row_in(m, entmax, SUPPORT_BOUND, xs, sorted, |v| {
            v.sort_unstable_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal))
        });
    })
}

/// Only entries above max − 1 can be in a sparsemax or entmax-1.5 support
/// (the row's max alone would get more than all the mass otherwise), and the
/// threshold search stops at the first entry outside it: [`mask_row`] sorts
/// just the entries above this bound (the max is 0 in its units), which gives
/// the same threshold with far less sorting. The margin keeps every entry
/// rounding could let in.
const SUPPORT_BOUND: f64 = -1.0 - 1e-6;

/// [`mask_row`] with the bound below which entries are not sorted, its scratch
/// rows (`xs`, `sorted`: `m.len()` each) and the descending sort to use.
fn mask_row_in(
    m: &mut [f32],
    entmax: bool,
    keep_above: f64,
    xs: &mut [f64],
    sorted: &mut [f64],
    sort_desc: impl FnOnce(&mut [f64]),
) {
    {
        let max = m.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let scale = if entmax { 0.5 } else { 1.0 };
        for (x, &v) in xs.iter_mut().zip(m.iter()) {
            *x = (v as f64 - max) * scale;
        }
        let mut n = 0;
        for &x in xs.iter() {
            if x > keep_above {
                sorted[n] = x;
                n += 1;
            }
        }
        sort_desc(&mut sorted[..n]);
        let thr = row_threshold(&sorted[..n], entmax);
        // closed form on the support {x > thr}
        let (mut k, mut s, mut s2) = (0f64, 0f64, 0f64);
        for &x in xs.iter() {
            if x > thr {
                k += 1.0;
                s += x;
                s2 += x * x;
            }
        }
        if entmax {
            let mu = s / k;
            let delta = (1.0 - k * (s2 / k - mu * mu)) / k;
            let tau = mu - delta.max(1e-12).sqrt();
            for (o, &x) in m.iter_mut().zip(xs.iter()) {
                let v = (x - tau).max(0.0);
                *o = (v * v) as f32;
            }
        } else {
            let tau = (s - 1.0) / k;
            for (o, &x) in m.iter_mut().zip(xs.iter()) {
                *o = (x - tau).max(0.0) as f32;
            }
        }
    }
}

/// ∂L/∂t of one mask row from ∂L/∂m (`g`), written into `g` in place.
pub fn mask_row_backward(m: &[f32], g: &mut [f32], entmax: bool) {
    if entmax {
        // dX = √m ⊙ (g − Σ g√m / Σ √m)
        let (mut num, mut den) = (0f32, 0f32);
        for (&mi, &gi) in m.iter().zip(g.iter()) {
            let r = mi.sqrt();
            num += gi * r;
            den += r;
        }
        let q = num / den;
        for (gi, &mi) in g.iter_mut().zip(m) {
            *gi = mi.sqrt() * (*gi - q);
        }
    } else {
        // on the support: g − mean over the support of g; 0 elsewhere
        let (mut s, mut k) = (0f32, 0f32);
        for (&mi, &gi) in m.iter().zip(g.iter()) {
            if mi > 0.0 {
                s += gi;
                k += 1.0;
            }
        }
        let v = s / k;
        for (gi, &mi) in g.iter_mut().zip(m) {
            *gi = if mi > 0.0 { *gi - v } else { 0.0 };
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

    /// Sorting only the entries above max − 1 changes no mask: bit-identical
    /// to sorting the whole row, on rows of 1 to 40 groups (both scratch
    /// paths), scales from 1e-3 to 1e3, ties, and entries at the bound.
    #[test]
    fn pruned_sort_gives_the_same_masks() {
        let z = crate::test_data::normal(&[4000, 40], 21);
        let z: Vec<f64> = Vec::from(&z.view([-1]));
        let mut checked = 0;
        for (r, row) in z.chunks(40).enumerate() {
            let n = 1 + r % 40;
            let scale = 10f64.powi((r % 7) as i32 - 3);
            let mut logits: Vec<f32> = row[..n].iter().map(|v| (v * scale) as f32).collect();
            if r % 5 == 0 && n > 3 {
                logits[1] = logits[0]; // a tie
                logits[2] = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) - 1.0;
            }
            for entmax in [false, true] {
                let mut fast = logits.clone();
                mask_row(&mut fast, entmax);
                let mut full = logits.clone();
                let (mut xs, mut sorted) = (vec![0.0; n], vec![0.0; n]);
                mask_row_in(
                    &mut full,
                    entmax,
                    f64::NEG_INFINITY,
                    &mut xs,
                    &mut sorted,
                    |v| v.sort_unstable_by(|a, b| b.partial_cmp(a).unwrap()),
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&full), "row {r}, entmax {entmax}");
                checked += 1;
            }
        }
        assert_eq!(checked, 8000);
    }

    #[test]
    fn chunks_cover_every_row_once() {
        // the layouts of 1000, 1030, 257, 7 and 64 rows (ghost_bn's chunk_sizes)
        for sizes in [
            vec![125i64; 8],
            [vec![115; 8], vec![110]].concat(),
            vec![86, 86, 85],
            vec![3, 4],
            vec![64],
        ] {
            let c = Chunks::from_sizes(&sizes);
            let rows = sizes.iter().sum::<i64>() as usize;
            let mut seen = vec![0; rows];
            for i in 0..c.count() {
                let (f, n) = c.rows_of(i);
                for r in 0..n {
                    seen[f + r] += 1;
                }
            }
            assert!(seen.iter().all(|&v| v == 1), "sizes {sizes:?}");
            let mut covered = 0;
            for t in c.tasks() {
                let (f, n) = c.task_rows(&t);
                assert_eq!(f, covered);
                covered += n;
            }
            assert_eq!(covered, rows);
        }
    }
}
