//! A bias-free linear map followed by ghost batch norm, forward and backward,
//! written for one task of rows at a time ([`LinearBnForward::task`],
//! [`LinearBnBackward::task`]): the caller runs a whole pass (every layer in
//! turn) inside one task of virtual batches, so a task's activations stay in
//! cache and a batch costs one hand-off between threads per pass, not one per
//! layer. What crosses tasks (batch statistics per virtual batch, parameter
//! gradients) is returned per task and merged by the caller in task order
//! ([`BnStats::from_tasks`], [`merge_grads`]), so the result does not depend on
//! which thread ran which task. The eval pass folds its batch norms into the
//! products instead ([`fold`], [`crate::kernels::FoldedLinear`]).
use super::buffers::Buffers;
use super::to_vec;
use crate::gemm::{self, Kernel, Mat, Packed, TnAcc};
use crate::ghost_bn::BatchNorm;
use crate::kernels::{
    add_row, bn_grad_rows, col_sq_dev_sums, col_sums, values, view, Chunks, FoldedLinear, Strided,
};
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// A matrix operand of the BLAS path in a slice: element (i, j) at
/// `data[i · strides[0] + j · strides[1]]`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    size: [usize; 2],
    strides: [usize; 2],
}

impl<'a> Operand<'a> {
    fn new(data: &'a [f32], size: [usize; 2], strides: [usize; 2]) -> Self {
        let last = (size[0].max(1) - 1) * strides[0] + (size[1].max(1) - 1) * strides[1];
        assert!(data.len() > last, "the slice holds every element");
        Operand {
            data,
            size,
            strides,
        }
    }

    fn of(x: Strided<'a>) -> Self {
        Operand::new(x.data, [x.rows, x.cols], [x.ld, 1])
    }
}

/// a · b on libtorch (BLAS): into `out` (a's rows × b's columns, row-major)
/// when given, else as a new tensor.
fn blas_mm(a: Operand, b: Operand, out: Option<&mut [f32]>) -> Option<Tensor> {
    assert_eq!(a.size[1], b.size[0], "inner dimensions");
    let size = [a.size[0], b.size[1]];
    if let Some(o) = &out {
        assert_eq!(o.len(), size[0] * size[1], "out holds the product");
    }
    let i = |v: [usize; 2]| [v[0] as i64, v[1] as i64];
    tch::no_grad(|| {
        // SAFETY: each view reaches only elements of its slice (checked by
        // `Operand::new` and just above), and the views are dropped with this
        // closure, while the slices are borrowed. The operands are only read;
        // `out`, a `&mut` slice (so overlapping neither), is the only view
        // written.
        unsafe {
            let view = |p: *const f32, size: [usize; 2], strides: [usize; 2]| {
                Tensor::of_blob(
                    p as *const u8,
                    &i(size),
                    &i(strides),
                    Kind::Float,
                    Device::Cpu,
                )
            };
            let (at, bt) = (
                view(a.data.as_ptr(), a.size, a.strides),
                view(b.data.as_ptr(), b.size, b.strides),
            );
            match out {
                Some(o) => {
                    let _ = at.mm_out(&view(o.as_mut_ptr(), size, [size[1], 1]), &bt);
                    None
                }
                None => Some(at.mm(&bt)),
            }
        }
    })
}

/// The micro-kernel the products run on, or None for the BLAS path (no
/// micro-kernel on this CPU, or `TABNETRS_KERNELS=blas`).
fn micro_kernel() -> Option<Kernel> {
    let kern = crate::runtime::selected_kernel();
    (kern != Kernel::Blas).then_some(kern)
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

/// A bias-free linear map followed by ghost BN, as saved for the backward: the
/// weight (detached for the products, and as the parameter), the BN (its γ and
/// β as values too), the input, ẑ and the per-virtual-batch statistics.
pub(super) struct LinearBn {
    pub(super) fc: Tensor,
    pub(super) param: Tensor,
    pub(super) bn: BatchNorm,
    pub(super) gamma: Vec<f32>,
    pub(super) beta: Vec<f32>,
    pub(super) input: Tensor,
    pub(super) zhat: Tensor,
    pub(super) stats: BnStats,
}

impl LinearBn {
    /// The layer's saved state before the pass: ẑ is allocated, the statistics
    /// come with [`LinearBn::finish`].
    pub(super) fn new(
        fc: &Tensor,
        bn: &BatchNorm,
        input: &Tensor,
        rows: usize,
        buf: &mut Buffers,
    ) -> LinearBn {
        LinearBn {
            fc: fc.detach(),
            param: fc.shallow_clone(),
            bn: bn.shallow_clone(),
            gamma: to_vec(&bn.weight),
            beta: to_vec(&bn.bias),
            input: input.shallow_clone(),
            zhat: buf.take(rows, fc.size()[0] as usize),
            stats: BnStats::default(),
        }
    }

    pub(super) fn forward_plan(&self) -> LinearBnForward<'_> {
        LinearBnForward::new(&self.fc, self.bn.eps as f32)
    }

    pub(super) fn backward_plan(&self) -> LinearBnBackward<'_> {
        LinearBnBackward::new(&self.fc)
    }

    /// Keeps the batch statistics the tasks returned (in task order) and
    /// updates the BN's running statistics from them.
    pub(super) fn finish<'a>(&mut self, per_task: impl IntoIterator<Item = &'a [ChunkStats]>) {
        self.stats = BnStats::from_tasks(per_task);
        self.bn
            .update_running_from(&self.stats.mean, &self.stats.var_unbiased);
    }

    /// The parameters whose gradients [`merge_grads`] returns, in its order:
    /// γ, β, the weight.
    pub(super) fn params(&self) -> [&Tensor; 3] {
        [&self.bn.weight, &self.bn.bias, &self.param]
    }
}

/// The eval pass's twin of the layer: the running statistics folded into
/// the product.
/// Eval-mode batch norm as an affine map: (scale, shift) with
/// scale = γ / √(running var + ε), shift = β − running mean · scale.
pub(super) fn eval_affine(bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let (g, b, m, v) = (
        to_vec(&bn.weight),
        to_vec(&bn.bias),
        to_vec(&bn.running_mean),
        to_vec(&bn.running_var),
    );
    let scale: Vec<f32> = g
        .iter()
        .zip(&v)
        .map(|(g, v)| g / (v + bn.eps as f32).sqrt())
        .collect();
    let shift: Vec<f32> = b
        .iter()
        .zip(&m)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

/// A bias-free linear map `fc` (out, in) followed by the eval-mode batch norm `bn`.
pub(super) fn fold(fc: &Tensor, bn: &BatchNorm) -> FoldedLinear {
    let (n_out, n_in) = (fc.size()[0] as usize, fc.size()[1] as usize);
    let (scale, shift) = eval_affine(bn);
    FoldedLinear::fold(&to_vec(fc), n_out, n_in, &scale, &shift)
}

/// z = x wᵀ for a task's rows, prepared once per pass: `w` (ch, in) detached;
/// each call takes the task's rows of x and writes theirs of z.
struct Product<'a> {
    /// w's values, (ch, in) row-major (the BLAS path's operand)
    w: &'a [f32],
    ch: usize,
    n_in: usize,
    /// wᵀ packed for the micro-kernel (none for the BLAS path)
    micro: Option<(Kernel, Packed)>,
}

impl<'a> Product<'a> {
    fn new(w: &'a Tensor) -> Self {
        let (ch, n_in) = (w.size()[0] as usize, w.size()[1] as usize);
        let w = values(w);
        Product {
            w,
            ch,
            n_in,
            micro: micro_kernel().map(|k| (k, Packed::transposed(w, ch, n_in))),
        }
    }

    /// z = x wᵀ for the rows of `x` (single-threaded) into `dst` (as many
    /// rows of `ch` values, contiguous).
    fn write(&self, x: Strided, dst: &mut [f32]) {
        assert_eq!(dst.len(), x.rows * self.ch);
        match &self.micro {
            // SAFETY: `x` holds its rows (`Strided`), `dst` holds the rows
            // written (just checked) and, being `&mut`, does not overlap x;
            // the kernel is available.
            Some((k, b)) => unsafe { gemm::gemm(*k, x.mat(), b, dst.as_mut_ptr(), self.ch) },
            // wᵀ as a transposed view of w: (in, ch), strides (1, in)
            None => {
                let wt = Operand::new(self.w, [self.n_in, self.ch], [1, self.n_in]);
                blas_mm(Operand::of(x), wt, Some(dst));
            }
        }
    }
}

/// z = x wᵀ followed by ghost BN, prepared once per pass (see [`Product`]);
/// z is overwritten with ẑ = (z − μ)/σ per virtual batch.
pub struct LinearBnForward<'a> {
    product: Product<'a>,
    eps: f32,
}

impl<'a> LinearBnForward<'a> {
    pub fn new(w: &'a Tensor, eps: f32) -> Self {
        LinearBnForward {
            product: Product::new(w),
            eps,
        }
    }

    /// The task `t`'s rows: `x` its rows of the input, `z` its rows of z. The
    /// product (single-threaded), then per virtual batch the statistics and
    /// `epilogue(first row, z block, mean, 1/σ)` on the virtual batch's rows
    /// while they are in cache. The epilogue must leave ẑ = (z − mean) · (1/σ)
    /// in the block (the backward reads it), e.g. with
    /// [`normalise_rows`](crate::kernels::normalise_rows) or fused into its own kernel.
    /// Returns the task's chunks' statistics.
    pub fn task<F>(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        x: Strided,
        z: &mut [f32],
        mut epilogue: F,
    ) -> Vec<ChunkStats>
    where
        F: FnMut(usize, &mut [f32], &[f32], &[f32]),
    {
        let ch = self.product.ch;
        let (f, n) = chunks.task_rows(t);
        assert_eq!(x.rows, n, "the task's rows of x");
        self.product.write(x, z);
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

/// Backward of [`LinearBnForward`], prepared once per pass: `w` (ch, in)
/// detached.
pub struct LinearBnBackward<'a> {
    /// w's values, (ch, in) row-major
    w: &'a [f32],
    ch: usize,
    n_in: usize,
    /// w packed for the micro-kernel (none for the BLAS path)
    micro: Option<(Kernel, Packed)>,
}

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
    Blas(Tensor),
    Micro(TnAcc),
}

/// What a layer's backward reads of its [`LinearBn`] tape (the GLU layer's
/// and the attentive transformer's alike): the product's backward, the saved
/// input and ẑ, 1/σ per virtual batch, γ and β.
pub(super) struct LinearBnBack<'a> {
    plan: LinearBnBackward<'a>,
    input: Strided<'a>,
    zhat: &'a [f32],
    rstd: &'a [f32],
    pub(super) gamma: &'a [f32],
    pub(super) beta: &'a [f32],
}

impl LinearBn {
    pub(super) fn back(&self) -> LinearBnBack<'_> {
        LinearBnBack {
            plan: self.backward_plan(),
            input: view(&self.input),
            zhat: values(&self.zhat),
            rstd: &self.stats.rstd,
            gamma: &self.gamma,
            beta: &self.beta,
        }
    }
}

impl LinearBnBack<'_> {
    /// Output channels (γ's length).
    pub(super) fn channels(&self) -> usize {
        self.gamma.len()
    }

    /// [`LinearBnBackward::task`] on the task `t`'s rows of the saved input
    /// and ẑ.
    pub(super) fn task<F, P>(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        dz: &mut [f32],
        gx: &mut [f32],
        grad_y: F,
        post: P,
    ) -> TaskGrads
    where
        F: FnMut(usize, &[f32], &mut [f32], &mut [f32], &mut [f32]),
        P: FnMut(usize, &mut [f32]),
    {
        let (f, n) = chunks.task_rows(t);
        let ch = self.channels();
        self.plan.task(
            chunks,
            t,
            self.input.rows(f, n),
            &self.zhat[f * ch..(f + n) * ch],
            self.rstd,
            self.gamma,
            dz,
            gx,
            grad_y,
            post,
        )
    }
}

impl<'a> LinearBnBackward<'a> {
    pub fn new(w: &'a Tensor) -> Self {
        let (ch, n_in) = (w.size()[0] as usize, w.size()[1] as usize);
        let w = values(w);
        LinearBnBackward {
            w,
            ch,
            n_in,
            micro: micro_kernel().map(|k| (k, Packed::plain(w, ch, n_in))),
        }
    }

    /// The task `t`'s rows: `x` its rows of the forward's input, `zhat`
    /// its rows of the saved ẑ. Per virtual batch, `grad_y(first row, ẑ block,
    /// gy block, Σ gy, Σ gy ẑ)` writes ∂L/∂y (y = γ ẑ + β) into the gy block
    /// and adds its sums per channel (in row order, e.g. with
    /// [`bn_grad_sums_rows`](crate::kernels::bn_grad_sums_rows), or fused into its own
    /// kernel) into the two zeroed sums; that becomes ∂L/∂z in `dz` (the
    /// task's rows × ch, from its first row), then ∂L/∂x = dz w in `gx` (the
    /// task's rows × in), with `post(first row, gx)` on the task's rows.
    /// `rstd` holds 1/σ per (chunk, channel).
    #[allow(clippy::too_many_arguments)]
    pub fn task<F, P>(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        x: Strided,
        zhat: &[f32],
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
        let (ch, n_in) = (self.ch, self.n_in);
        let (f, n) = chunks.task_rows(t);
        assert_eq!((x.rows, x.cols, zhat.len()), (n, n_in, n * ch));
        let (dz, gx) = (&mut dz[..n * ch], &mut gx[..n * n_in]);
        let mut sum_gz_all = vec![0f32; ch];
        let mut sum_g_all = vec![0f32; ch];
        for i in t.clone() {
            let (first, count) = chunks.rows_of(i);
            let rows = (first - f) * ch..(first - f + count) * ch;
            let (zb, db) = (&zhat[rows.clone()], &mut dz[rows]);
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
        let dzs = Strided::dense(dz, ch);
        let dw = match &self.micro {
            Some((k, b)) => {
                let dzm: Mat = dzs.mat();
                let mut acc = TnAcc::new(n_in, ch);
                // SAFETY: dz and gx hold the task's n rows (sliced above), x
                // has them (asserted), gx is `&mut` so overlaps neither; the
                // kernel is available.
                unsafe {
                    gemm::gemm(*k, dzm, b, gx.as_mut_ptr(), n_in);
                    gemm::gemm_tn(*k, x.mat(), dzm, &mut acc);
                }
                TaskGrad::Micro(acc)
            }
            None => {
                let w = Operand::new(self.w, [ch, n_in], [n_in, 1]);
                blas_mm(Operand::of(dzs), w, Some(gx));
                // ∂L/∂w = dzᵀ x: dz's transposed view (ch, n) times x
                let dzt = Operand::new(dz, [ch, n], [1, ch]);
                TaskGrad::Blas(blas_mm(dzt, Operand::of(x), None).expect("a new tensor"))
            }
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
            TaskGrad::Blas(w) => {
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

#[cfg(test)]
mod tests {
    use super::super::buffers::{Buffers, TapeBuffers};
    use super::super::testing::{close, input, interleaving};
    use super::*;
    use crate::ghost_bn::{chunk_sizes, GhostBatchNorm};
    use crate::kernels::{bn_grad_sums_rows, normalise_rows, split_rows, values_mut, view};
    use std::sync::Arc;
    use tch::nn::{ModuleT, VarStore};

    /// The ghost-BN linear map y = GBN(x Wᵀ) (γ, β applied after ẑ, as every
    /// fused layer's epilogue does) and its backward, run task by task over
    /// 301 rows (virtual batches of 61, 61, 61, 61 and 57 rows), against
    /// `x.linear(W)` + [`GhostBatchNorm`] and autograd, on the same
    /// parameters. Tolerances (see `testing`): y and ẑ go through the
    /// product (n = fan-in 12) and the batch norm's sums over a virtual
    /// batch (61 rows): n = 61; ∂L/∂x sums over the 10 channels after the
    /// batch norm's means (n = 61); ∂L/∂γ, ∂L/∂β and ∂L/∂W sum over the
    /// 301 rows (n = 301). k = 16 for all (seen: ≤ 0.6).
    #[test]
    fn matches_linear_and_ghost_batch_norm() {
        let (rows, n_in, ch, vbs) = (301usize, 12usize, 10usize, 64usize);
        let x = input(rows, n_in, 21);
        let w = input(ch, n_in, 22) * 0.3;
        let gy = input(rows, ch, 23);
        let (gamma, beta) = (input(1, ch, 24).view([-1]), input(1, ch, 25).view([-1]));
        let vs = VarStore::new(tch::Device::Cpu);
        let make = |name: &str| {
            let bn = GhostBatchNorm::new(&(vs.root() / name), ch as i64, vbs as i64, 0.3);
            let fc = vs.root().var_copy(&format!("{name}_fc"), &w);
            tch::no_grad(|| {
                bn.norm.weight.shallow_clone().copy_(&gamma);
                bn.norm.bias.shallow_clone().copy_(&beta);
            });
            (fc, bn)
        };
        let ((fc_f, bn_f), (fc_r, bn_r)) = (make("fused"), make("reference"));

        // fused, task by task
        let chunks = Chunks::from_sizes(&chunk_sizes(rows as i64, vbs as i64));
        let tasks = chunks.tasks();
        let counts: Vec<usize> = tasks.iter().map(|t| chunks.task_rows(t).1).collect();
        let mut buf = Buffers::new(Arc::new(TapeBuffers::default()));
        let mut lin = LinearBn::new(&fc_f, &bn_f.norm, &x, rows, &mut buf);
        let xs = view(&x);
        let stats: Vec<Vec<ChunkStats>> = {
            let plan = lin.forward_plan();
            let mut zhat = lin.zhat.shallow_clone();
            // SAFETY: ẑ is this layer's own buffer, used through no other
            // handle until the slice is dropped.
            let z = unsafe { values_mut(&mut zhat) };
            tasks
                .iter()
                .zip(split_rows(z, ch, counts.iter().copied()))
                .map(|(t, zt)| {
                    let (f, n) = chunks.task_rows(t);
                    plan.task(&chunks, t, xs.rows(f, n), zt, |_, zb, mean, rstd| {
                        normalise_rows(zb, mean, rstd)
                    })
                })
                .collect()
        };
        lin.finish(stats.iter().map(|s| s.as_slice()));
        let y = &lin.zhat * &gamma + &beta;
        let (plan, zhat, g) = (lin.backward_plan(), values(&lin.zhat), values(&gy));
        let mut dz = vec![0f32; rows * ch];
        let mut dx = vec![0f32; rows * n_in];
        let parts: Vec<TaskGrads> = tasks
            .iter()
            .zip(split_rows(&mut dx, n_in, counts.iter().copied()))
            .map(|(t, gx)| {
                let (f, n) = chunks.task_rows(t);
                plan.task(
                    &chunks,
                    t,
                    xs.rows(f, n),
                    &zhat[f * ch..(f + n) * ch],
                    &lin.stats.rstd,
                    &lin.gamma,
                    &mut dz,
                    gx,
                    |first, zb, gyb, sum_g, sum_gz| {
                        gyb.copy_from_slice(&g[first * ch..first * ch + gyb.len()]);
                        bn_grad_sums_rows(gyb, zb, sum_g, sum_gz);
                    },
                    |_, _| {},
                )
            })
            .collect();
        let (dgamma, dbeta, dw) = merge_grads(parts);

        // the reference, rows ordered so that its virtual batches are the same
        let p = interleaving(rows, vbs);
        let xr = x.index_select(0, &p).set_requires_grad(true);
        let yr = bn_r.forward_t(&xr.linear::<Tensor>(&fc_r, None), true);
        (&yr * gy.index_select(0, &p)).sum(Kind::Float).backward();

        close("y", &y.index_select(0, &p), &yr.detach(), 61, 16.0);
        let dx = Tensor::of_slice(&dx).view([rows as i64, n_in as i64]);
        close("∂L/∂x", &dx.index_select(0, &p), &xr.grad(), 61, 16.0);
        let t = |v: &[f32]| Tensor::of_slice(v);
        close("∂L/∂γ", &t(&dgamma), &bn_r.norm.weight.grad(), 301, 16.0);
        close("∂L/∂β", &t(&dbeta), &bn_r.norm.bias.grad(), 301, 16.0);
        close(
            "∂L/∂W",
            &t(&dw).view([ch as i64, n_in as i64]),
            &fc_r.grad(),
            301,
            16.0,
        );
        let (nf, nr) = (&bn_f.norm, &bn_r.norm);
        close("running mean", &nf.running_mean, &nr.running_mean, 61, 16.0);
        close(
            "running variance",
            &nf.running_var,
            &nr.running_var,
            61,
            16.0,
        );
    }
}
