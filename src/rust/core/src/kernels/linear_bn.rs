//! A bias-free linear map followed by ghost batch norm, forward and backward,
//! written for one task of rows at a time ([`LinearBnForward::task`],
//! [`LinearBnBackward::task`]): the caller runs a whole pass (every layer in
//! turn) inside one task of virtual batches, so a task's activations stay in
//! cache and a batch costs one hand-off between threads per pass, not one per
//! layer. What crosses tasks (batch statistics per virtual batch, parameter
//! gradients) is returned per task and merged by the caller in task order
//! ([`BnStats::from_tasks`], [`merge_grads`]), so the result does not depend on
//! which thread ran which task. The eval pass folds its batch norms into the
//! products instead ([`super::FoldedLinear`]).
use super::{add_row, bn_grad_rows, col_sq_dev_sums, col_sums};
use super::{micro, ptr, Chunks, SendMat, SendPtr, SendTensor, Shared};
use crate::gemm::{self, Kernel, Mat, Packed, TnAcc};
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// Rows first..first+n of a view.
pub(crate) fn mat_rows(m: Mat, first: usize, n: usize) -> Mat {
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

fn rows_mut<'a>(p: SendPtr, first: usize, n: usize, ch: usize) -> &'a mut [f32] {
    // SAFETY: callers pass rows of a live contiguous tensor that only this task touches.
    unsafe { std::slice::from_raw_parts_mut(p.get().add(first * ch), n * ch) }
}

/// A tensor viewing a task's own buffer (the BLAS path's operands).
fn blob(v: &mut [f32], rows: usize, cols: usize) -> Tensor {
    assert_eq!(v.len(), rows * cols);
    // SAFETY: the buffer outlives the tensor (dropped before the task returns)
    // and is only used through it meanwhile.
    unsafe {
        Tensor::of_blob(
            v.as_mut_ptr() as *const u8,
            &[rows as i64, cols as i64],
            &[cols as i64, 1],
            Kind::Float,
            Device::Cpu,
        )
    }
}

/// (1/σ, mean, unbiased variance) per channel of one virtual batch.
pub type ChunkStats = (Vec<f32>, Vec<f32>, Vec<f32>);

/// Per-chunk statistics saved by the forward pass.
#[derive(Default)]
pub struct BnStats {
    /// 1/sqrt(var + eps) per (chunk, channel)
    pub rstd: Vec<f32>,
    /// mean and unbiased variance per (chunk, channel), for the running statistics
    pub mean: Vec<f32>,
    pub var_unbiased: Vec<f32>,
}

impl BnStats {
    /// The statistics of every chunk, from each task's chunks in task order.
    pub fn from_tasks<'a>(per_task: impl IntoIterator<Item = &'a [ChunkStats]>) -> BnStats {
        let mut stats = BnStats::default();
        for (r, m, v) in per_task.into_iter().flatten() {
            stats.rstd.extend(r);
            stats.mean.extend(m);
            stats.var_unbiased.extend(v);
        }
        stats
    }
}

/// z = x wᵀ on a range of rows, prepared once per pass: `x` is (rows, in)
/// (its rows may be `ld` apart), `w` (ch, in) detached; each call writes a
/// range of rows of z wherever the caller keeps them.
struct Product<'a> {
    x: Shared<'a>,
    /// wᵀ for the BLAS path (none with the micro-kernels)
    wt: Option<SendTensor>,
    ch: usize,
    micro: Option<(Kernel, SendMat, Packed)>,
}

impl<'a> Product<'a> {
    fn new(x: &'a Tensor, w: &Tensor) -> Self {
        let micro = micro(x, w).map(|(k, m)| {
            let (n, kk) = (w.size()[0] as usize, w.size()[1] as usize);
            (k, SendMat(m), Packed::transposed(weights(w), n, kk))
        });
        Product {
            x: Shared(x),
            wt: micro.is_none().then(|| SendTensor(w.tr())),
            ch: w.size()[0] as usize,
            micro,
        }
    }

    /// Rows f..f+n of z (single-threaded) into `dst` (n rows of `ch` values,
    /// contiguous).
    fn write(&self, f: usize, n: usize, dst: &mut [f32]) {
        assert_eq!(dst.len(), n * self.ch);
        match &self.micro {
            // SAFETY: the rows of x exist (mat_rows checks), `dst` holds the
            // n rows written and does not overlap x; the kernel is available.
            Some((k, xm, b)) => unsafe {
                gemm::gemm(*k, mat_rows(xm.0, f, n), b, dst.as_mut_ptr(), self.ch)
            },
            None => tch::no_grad(|| {
                let wt = &self.wt.as_ref().expect("made for the BLAS path").0;
                let _ = self.x.rows(f, n).mm_out(&blob(dst, n, self.ch), wt);
            }),
        }
    }
}

/// z = x wᵀ followed by ghost BN, prepared once per pass (see [`Product`]);
/// z is overwritten with ẑ = (z − μ)/σ per virtual batch.
pub struct LinearBnForward<'a> {
    product: Product<'a>,
    zp: SendPtr,
    eps: f32,
}

// SAFETY: tasks read `wt` (a transposed view of a detached weight) and the
// packed weights only; they write disjoint rows of `z`.
unsafe impl Sync for LinearBnForward<'_> {}

impl<'a> LinearBnForward<'a> {
    pub fn new(x: &'a Tensor, w: &Tensor, z: &'a Tensor, eps: f32) -> Self {
        assert_eq!(
            z.size()[1],
            w.size()[0],
            "z has a column per output channel"
        );
        LinearBnForward {
            product: Product::new(x, w),
            zp: ptr(z),
            eps,
        }
    }

    /// The task's rows: the product (single-threaded), then per virtual batch
    /// the statistics and `epilogue(first row, z block, mean, 1/σ)` on the
    /// virtual batch's rows while they are in cache. The epilogue must leave
    /// ẑ = (z − mean) · (1/σ) in the block (the backward reads it), e.g. with
    /// [`normalise_rows`](super::normalise_rows) or fused into its own kernel.
    /// Returns the task's chunks' statistics.
    pub fn task<F>(&self, chunks: &Chunks, t: &Range<usize>, mut epilogue: F) -> Vec<ChunkStats>
    where
        F: FnMut(usize, &mut [f32], &[f32], &[f32]),
    {
        let ch = self.product.ch;
        let (f, n) = chunks.task_rows(t);
        // the task's rows of z: they belong to that task alone
        let z = rows_mut(self.zp, f, n, ch);
        self.product.write(f, n, z);
        t.clone()
            .map(|i| {
                let (first, count) = chunks.rows_of(i);
                let block = &mut z[(first - f) * ch..(first - f + count) * ch];
                let mut mean = vec![0f32; ch];
                col_sums(&mut mean, block);
                let inv = 1.0 / count as f32;
                mean.iter_mut().for_each(|m| *m *= inv);
                let mut ss = vec![0f32; ch];
                col_sq_dev_sums(&mut ss, block, &mean);
                let rstd: Vec<f32> = ss
                    .iter()
                    .map(|s| 1.0 / (s * inv + self.eps).sqrt())
                    .collect();
                let unb = if count > 1 {
                    1.0 / (count - 1) as f32
                } else {
                    0.0
                };
                let var_u: Vec<f32> = ss.iter().map(|s| s * unb).collect();
                epilogue(first, block, &mean, &rstd);
                (rstd, mean, var_u)
            })
            .collect()
    }
}

/// Backward of [`LinearBnForward`], prepared once per pass: `x` the forward's
/// input, `w` (ch, in) detached, `zhat` the saved ẑ (rows, ch).
pub struct LinearBnBackward<'a> {
    x: Shared<'a>,
    w: Shared<'a>,
    zp: SendPtr,
    ch: usize,
    n_in: usize,
    micro: Option<(Kernel, SendMat, Packed)>,
}

// SAFETY: tasks read the tensors and the packed weights only (ẑ rows of their own).
unsafe impl Sync for LinearBnBackward<'_> {}

/// One task's share of the parameter gradients: Σ gy ẑ (∂L/∂γ), Σ gy (∂L/∂β)
/// and ∂L/∂w.
pub struct TaskGrads {
    sum_gz: Vec<f32>,
    sum_g: Vec<f32>,
    dw: TaskGrad,
}

/// One task's share of ∂L/∂w: a BLAS product (ch, in) or the micro-kernel's
/// accumulator (in, ch).
enum TaskGrad {
    Blas(SendTensor),
    Micro(TnAcc),
}

impl<'a> LinearBnBackward<'a> {
    pub fn new(x: &'a Tensor, w: &'a Tensor, zhat: &Tensor) -> Self {
        let ch = zhat.size()[1] as usize;
        let n_in = x.size()[1] as usize;
        let micro = micro(x, w).map(|(k, m)| (k, SendMat(m), Packed::plain(weights(w), ch, n_in)));
        LinearBnBackward {
            x: Shared(x),
            w: Shared(w),
            zp: ptr(zhat),
            ch,
            n_in,
            micro,
        }
    }

    /// The task's rows: per virtual batch, `grad_y(first row, ẑ block, gy
    /// block, Σ gy, Σ gy ẑ)` writes ∂L/∂y (y = γ ẑ + β) into the gy block and
    /// adds its sums per channel (in row order, e.g. with
    /// [`bn_grad_sums_rows`](super::bn_grad_sums_rows), or fused into its own
    /// kernel) into the two zeroed sums; that becomes ∂L/∂z
    /// in `dz` (the task's rows × ch, from its first row), then ∂L/∂x = dz w in
    /// `gx` (the task's rows × in), with `post(first row, gx)` on the task's
    /// rows. `rstd` holds 1/σ per (chunk, channel).
    #[allow(clippy::too_many_arguments)]
    pub fn task<F, P>(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        rstd: &[f32],
        gamma: &[f32],
        dz: &mut [f32],
        gx: &mut [f32],
        mut grad_y: F,
        mut post: P,
    ) -> TaskGrads
    where
        F: FnMut(usize, &[f32], &mut [f32], &mut [f32], &mut [f32]),
        P: FnMut(usize, &mut [f32]),
    {
        let (ch, n_in, zp) = (self.ch, self.n_in, self.zp);
        let (f, n) = chunks.task_rows(t);
        let (dz, gx) = (&mut dz[..n * ch], &mut gx[..n * n_in]);
        let mut sum_gz_all = vec![0f32; ch];
        let mut sum_g_all = vec![0f32; ch];
        for i in t.clone() {
            let (first, count) = chunks.rows_of(i);
            let zb = rows_mut(zp, first, count, ch);
            let db = &mut dz[(first - f) * ch..(first - f + count) * ch];
            let mut sum_g = vec![0f32; ch];
            let mut sum_gz = vec![0f32; ch];
            grad_y(first, zb, db, &mut sum_g, &mut sum_gz);
            let inv = 1.0 / count as f32;
            let rstd = &rstd[i * ch..(i + 1) * ch];
            // dz = γ σ⁻¹ (gy − mean(gy) − ẑ mean(gy ẑ))
            let a: Vec<f32> = rstd.iter().zip(gamma).map(|(s, g)| s * g).collect();
            let mg: Vec<f32> = sum_g.iter().map(|s| s * inv).collect();
            let mgz: Vec<f32> = sum_gz.iter().map(|s| s * inv).collect();
            bn_grad_rows(db, zb, &a, &mg, &mgz);
            add_row(&mut sum_g_all, &sum_g);
            add_row(&mut sum_gz_all, &sum_gz);
        }
        let dw = match &self.micro {
            Some((k, xm, b)) => {
                let dzm = Mat {
                    ptr: dz.as_ptr(),
                    rows: n,
                    cols: ch,
                    ld: ch,
                };
                let mut acc = TnAcc::new(n_in, ch);
                // SAFETY: dz and gx hold the task's n rows, x has them; the
                // kernel is available.
                unsafe {
                    gemm::gemm(*k, dzm, b, gx.as_mut_ptr(), n_in);
                    gemm::gemm_tn(*k, mat_rows(xm.0, f, n), dzm, &mut acc);
                }
                TaskGrad::Micro(acc)
            }
            None => tch::no_grad(|| {
                let dzt = blob(dz, n, ch);
                let _ = dzt.mm_out(&blob(gx, n, n_in), self.w.get());
                TaskGrad::Blas(SendTensor(dzt.tr().mm(&self.x.rows(f, n))))
            }),
        };
        post(f, gx);
        TaskGrads {
            sum_gz: sum_gz_all,
            sum_g: sum_g_all,
            dw,
        }
    }
}

/// (∂L/∂γ, ∂L/∂β, ∂L/∂w (ch, in) row-major) from every task's share, summed
/// in task order (0 + t₀ = t₀ exactly, as in the BLAS path). The micro-kernel
/// accumulators are summed in their own layout (contiguous) and transposed
/// once: per element the same additions in the same order as transposing each.
pub fn merge_grads(parts: impl IntoIterator<Item = TaskGrads>) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut dgamma, mut dbeta) = (Vec::new(), Vec::new());
    let mut dw: Option<Tensor> = None;
    let mut dw_micro: Option<TnAcc> = None;
    for p in parts {
        let ch = p.sum_g.len();
        if dgamma.is_empty() {
            (dgamma, dbeta) = (vec![0f32; ch], vec![0f32; ch]);
        }
        add_row(&mut dgamma, &p.sum_gz);
        add_row(&mut dbeta, &p.sum_g);
        match p.dw {
            TaskGrad::Blas(SendTensor(w)) => {
                dw = Some(match dw {
                    None => w,
                    Some(acc) => acc + w,
                })
            }
            TaskGrad::Micro(acc) => match &mut dw_micro {
                Some(sum) => sum.add(&acc),
                None => dw_micro = Some(acc),
            },
        }
    }
    let dw = match dw_micro {
        Some(sum) => {
            let mut v = vec![0f32; sum.n * sum.k];
            sum.add_transposed_into(&mut v);
            v
        }
        None => Vec::<f32>::from(
            &dw.expect("a batch has at least one task")
                .contiguous()
                .view([-1]),
        ),
    };
    (dgamma, dbeta, dw)
}
