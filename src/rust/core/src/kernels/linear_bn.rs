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
use super::storage::{values, Strided};
use super::{add_row, bn_grad_rows, col_sq_dev_sums, col_sums, Chunks};
use crate::gemm::{self, Kernel, Mat, Packed, TnAcc};
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// A tensor viewing a matrix in memory the caller holds (the BLAS path's
/// operands): `size` and `strides` as libtorch's.
///
/// # Safety
/// The memory holds every element the size and strides reach, and outlives
/// the tensor; the tensor is written only when the memory is the caller's
/// `&mut` slice, and no other reference to it is used while the tensor lives.
unsafe fn blob(data: *const f32, size: [usize; 2], strides: [usize; 2]) -> Tensor {
    let i = |v: [usize; 2]| [v[0] as i64, v[1] as i64];
    // SAFETY: the caller's contract.
    unsafe {
        Tensor::of_blob(
            data as *const u8,
            &i(size),
            &i(strides),
            Kind::Float,
            Device::Cpu,
        )
    }
}

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

    /// A tensor viewing it.
    ///
    /// # Safety
    /// The tensor is only read, and dropped while the slice is still borrowed.
    unsafe fn tensor(self) -> Tensor {
        // SAFETY: the slice holds every element the view reaches (checked in
        // `new`); the rest is the caller's contract.
        unsafe { blob(self.data.as_ptr(), self.size, self.strides) }
    }
}

/// out = a · b on libtorch (BLAS) into `out` (a's rows × b's columns,
/// row-major).
fn blas_mm_out(a: Operand, b: Operand, out: &mut [f32]) {
    assert_eq!(a.size[1], b.size[0], "inner dimensions");
    let size = [a.size[0], b.size[1]];
    assert_eq!(out.len(), size[0] * size[1], "out holds the product");
    tch::no_grad(|| {
        // SAFETY: `out` holds the product (just checked) and is `&mut` (so
        // overlaps neither operand); the operands are only read; all three
        // views are dropped with this closure, within the borrows.
        let _ = unsafe {
            a.tensor()
                .mm_out(&blob(out.as_mut_ptr(), size, [size[1], 1]), &b.tensor())
        };
    })
}

/// a · b on libtorch (BLAS), a new tensor.
fn blas_mm(a: Operand, b: Operand) -> Tensor {
    // SAFETY: the operands are only read, and their views are dropped with
    // this closure (the product is a new tensor).
    tch::no_grad(|| unsafe { a.tensor().mm(&b.tensor()) })
}

/// The micro-kernel the products run on, or None for the BLAS path (no
/// micro-kernel on this CPU, or `TABNETRS_KERNELS=blas`).
fn micro_kernel() -> Option<Kernel> {
    let kern = gemm::selected();
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
            None => blas_mm_out(
                Operand::of(x),
                Operand::new(self.w, [self.n_in, self.ch], [1, self.n_in]),
                dst,
            ),
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
    /// [`normalise_rows`](super::normalise_rows) or fused into its own kernel.
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
    /// [`bn_grad_sums_rows`](super::bn_grad_sums_rows), or fused into its own
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
                blas_mm_out(
                    Operand::of(dzs),
                    Operand::new(self.w, [ch, n_in], [n_in, 1]),
                    gx,
                );
                // ∂L/∂w = dzᵀ x: dz's transposed view (ch, n) times x
                let dzt = Operand::new(dz, [ch, n], [1, ch]);
                TaskGrad::Blas(blas_mm(dzt, Operand::of(x)))
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
