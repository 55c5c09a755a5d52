//! The fused training pass: the encoder forward with its tape, and the
//! hand-derived backward, each run as one parallel task per group of virtual
//! batches ([`Chunks::tasks`]).
//!
//! Every activation the backward needs is allocated for the whole batch
//! before the tasks start (each task writes its own rows); the backward's
//! intermediate gradients live in each task's own buffers. Per task, the pass
//! returns its virtual batches' statistics and its share of each parameter
//! gradient; both are merged in task order afterwards, so a seed gives the
//! same bits on any number of threads.
use super::buffers::TapeBuffers;
use super::glue::{self, GlueGrad};
use super::initial_bn::InitialBn;
use super::{initial_prior, layers_of, row, row_block, to_vec, Expansion};
use crate::config::MaskType;
use crate::embedding::Embedder;
use crate::encoder::{Backend, Encoder, EncoderOutput, Pass};
use crate::ghost_bn::{chunk_sizes, BatchNorm};
use crate::glu::GluLayer;
use crate::kernels::{
    self, empty, merge_grads, ptr, BnStats, ChunkStats, Chunks, LinearBnBackward, LinearBnForward,
    SendPtr, TaskGrads,
};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;
use tch::{Kind, Tensor};

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Parameter gradients of the hand-derived backward. A parameter whose `.grad()`
/// already exists (every step after the first) is accumulated into in place;
/// the others are handed to autograd through the surrogate.
#[derive(Default)]
struct Grads {
    pending: Vec<(Tensor, Tensor)>,
}

impl Grads {
    fn existing(p: &Tensor) -> Option<Tensor> {
        let g = p.grad();
        (g.defined() && kernels::supported(&g)).then_some(g)
    }

    fn add_vec(&mut self, p: &Tensor, g: &[f32]) {
        match Self::existing(p) {
            Some(acc) => kernels::add_row(
                // SAFETY: a parameter's gradient is written by this pass alone.
                unsafe { kernels::as_mut_slice(&acc) }.expect("checked by existing()"),
                g,
            ),
            None => self.pending.push((
                p.shallow_clone(),
                Tensor::of_slice(g).view(p.size().as_slice()),
            )),
        }
    }
}

/// A bias-free linear map followed by ghost BN, as saved for the backward: the
/// weight (detached for the products, and as the parameter), the BN (its γ and
/// β as values too), the input, ẑ and the per-virtual-batch statistics.
struct LinearBn {
    fc: Tensor,
    param: Tensor,
    bn: BatchNorm,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    input: Tensor,
    zhat: Tensor,
    stats: BnStats,
}

impl LinearBn {
    /// The layer's saved state before the pass: ẑ is allocated, the statistics
    /// come with [`LinearBn::finish`].
    fn new(
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

    fn forward_plan(&self) -> LinearBnForward<'_> {
        LinearBnForward::new(&self.input, &self.fc, &self.zhat, self.bn.eps as f32)
    }

    fn backward_plan(&self) -> LinearBnBackward<'_> {
        LinearBnBackward::new(&self.input, &self.fc, &self.zhat)
    }

    /// Keeps the batch statistics the tasks returned (in task order) and
    /// updates the BN's running statistics from them.
    fn finish<'a>(&mut self, per_task: impl IntoIterator<Item = &'a [ChunkStats]>) {
        self.stats = BnStats::from_tasks(per_task);
        self.bn
            .update_running_from(&self.stats.mean, &self.stats.var_unbiased);
    }

    fn add_grads(&self, grads: &mut Grads, (dgamma, dbeta, dw): (Vec<f32>, Vec<f32>, Vec<f32>)) {
        grads.add_vec(&self.param, &dw);
        grads.add_vec(&self.bn.weight, &dgamma);
        grads.add_vec(&self.bn.bias, &dbeta);
    }
}

/// Saved state of one GLU layer: out = GLU(GBN(h Wᵀ)) [+ h, × √½ when residual].
struct LayerTape {
    lin: LinearBn,
    out: Tensor,
    residual: bool,
}

/// Saved state of one attentive transformer: M = mask(GBN(a Wᵀ) ⊙ prior).
struct AttentionTape {
    lin: LinearBn,
    prior: Tensor,
    mask: Tensor,
    entmax: bool,
}

/// One decision step: attention, the glue (x_m and the next prior), the
/// feature transformer.
struct StepTape {
    attention: AttentionTape,
    next_prior: Tensor,
    xm: Tensor,
    layers: Vec<LayerTape>,
    /// ReLU of the output's decision part (B, n_d): the step's leaf
    decision: Tensor,
}

impl StepTape {
    /// The feature transformer's output (B, n_d + n_a).
    fn out(&self) -> &Tensor {
        &self.layers.last().expect("a transformer has layers").out
    }
}

/// The tape's buffers: taken from the encoder's [`TapeBuffers`], and handed
/// back when the tape (or a pass that never made one) is dropped.
struct Buffers {
    store: Arc<TapeBuffers>,
    owned: Vec<Tensor>,
}

impl Buffers {
    fn take(&mut self, rows: usize, cols: usize) -> Tensor {
        let (t, whole) = self.store.take(rows, cols);
        self.owned.push(whole);
        t
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        self.store.give(std::mem::take(&mut self.owned));
    }
}

/// Everything the hand-derived backward needs, plus the autograd edges.
pub(in crate::encoder) struct Tape {
    chunks: Chunks,
    n_d: i64,
    gamma: f64,
    epsilon: f64,
    /// the embedded input with its autograd history (the surrogate's input
    /// edge, when it has one)
    x_graph: Tensor,
    /// the initial batch norm, and its output
    initial: InitialBn,
    x0: Tensor,
    /// embedded dimension → attention group, and per-dimension scale
    expansion: Expansion,
    splitter: Vec<LayerTape>,
    steps: Vec<StepTape>,
    /// the leaves handed to the rest of the graph: each step's decision
    /// output, their sum (B, n_d) and the sparsity term
    step_leaves: Vec<Tensor>,
    decision_leaf: Tensor,
    m_loss_leaf: Tensor,
    /// every buffer above that came from the encoder's store (none of them
    /// leaves the tape); held for its drop, after the fields above
    _buffers: Buffers,
}

/// The tapes of a feature transformer's layers, from input `x`.
fn transformer_tapes(
    layers: Vec<(&GluLayer, bool)>,
    x: &Tensor,
    rows: usize,
    buf: &mut Buffers,
) -> Vec<LayerTape> {
    let mut h = x.shallow_clone();
    let mut tapes = Vec::new();
    for (layer, residual) in layers {
        let lin = LinearBn::new(&layer.fc, &layer.bn.norm, &h, rows, buf);
        let out = buf.take(rows, (layer.fc.size()[0] / 2) as usize);
        h = out.shallow_clone();
        tapes.push(LayerTape { lin, out, residual });
    }
    tapes
}

/// A GLU layer's forward as the tasks run it.
struct LayerRun<'a> {
    lin: LinearBnForward<'a>,
    gamma: &'a [f32],
    beta: &'a [f32],
    out: SendPtr,
    input: SendPtr,
    d: usize,
    residual: bool,
}

impl<'a> LayerRun<'a> {
    fn of(t: &'a LayerTape) -> Self {
        LayerRun {
            lin: t.lin.forward_plan(),
            gamma: &t.lin.gamma,
            beta: &t.lin.beta,
            out: ptr(&t.out),
            input: ptr(&t.lin.input),
            d: t.out.size()[1] as usize,
            residual: t.residual,
        }
    }

    fn task(&self, chunks: &Chunks, t: &Range<usize>) -> Vec<ChunkStats> {
        let (d, hp, op) = (self.d, self.input, self.out);
        self.lin.task(chunks, t, |r, zb, mean, rstd| {
            let n = zb.len() / (2 * d);
            let h: &[f32] = if self.residual {
                row_block(hp, r, n, d)
            } else {
                &[]
            };
            let out = row_block(op, r, n, d);
            kernels::bn_glu_rows(zb, mean, rstd, self.gamma, self.beta, h, out);
        })
    }
}

/// A decision step's attention and glue as the tasks run them (its feature
/// transformer is a list of [`LayerRun`]).
struct StepRun<'a> {
    attention: LinearBnForward<'a>,
    gamma: &'a [f32],
    beta: &'a [f32],
    entmax: bool,
    /// (rows, groups): prior, mask, next prior; (rows, dims): x0, x_m
    prior: SendPtr,
    mask: SendPtr,
    next: SendPtr,
    x0: SendPtr,
    xm: SendPtr,
    groups: usize,
    dims: usize,
    layers: Vec<LayerRun<'a>>,
    /// (rows, n_d + n_a): the transformer's output; (rows, n_d): its decision
    /// part's ReLU and the running sum over steps
    out: SendPtr,
    decision: SendPtr,
    sum: SendPtr,
    n_d: usize,
    n_a: usize,
}

/// One task's results of the forward: each layer's chunk statistics in pass
/// order, and each step's per-row sparsity sums.
struct ForwardLog {
    stats: Vec<Vec<ChunkStats>>,
    m_sums: Vec<Vec<f64>>,
}

/// The whole encoder forward on one task's rows.
fn forward_task(
    glue_in: (f32, f32, &Expansion),
    splitter: &[LayerRun],
    steps: &[StepRun],
    chunks: &Chunks,
    t: &Range<usize>,
) -> ForwardLog {
    let (f, n) = chunks.task_rows(t);
    let mut log = ForwardLog {
        stats: Vec::new(),
        m_sums: Vec::new(),
    };
    for l in splitter {
        log.stats.push(l.task(chunks, t));
    }
    let (gamma, eps, ex) = glue_in;
    for (i, s) in steps.iter().enumerate() {
        let g = s.groups;
        log.stats
            .push(s.attention.task(chunks, t, |first, zb, mean, rstd| {
                kernels::normalise_rows(zb, mean, rstd);
                for (r, zr) in (first..).zip(zb.chunks_exact(g)) {
                    glue::attention_row(
                        zr,
                        s.gamma,
                        s.beta,
                        row(s.prior, r, g),
                        row(s.mask, r, g),
                        s.entmax,
                    )
                }
            }));
        let sums = (f..f + n)
            .map(|r| {
                glue::forward_row(
                    row(s.mask, r, g),
                    row(s.prior, r, g),
                    row(s.x0, r, s.dims),
                    row(s.next, r, g),
                    row(s.xm, r, s.dims),
                    ex,
                    gamma,
                    eps,
                )
            })
            .collect();
        log.m_sums.push(sums);
        for l in &s.layers {
            log.stats.push(l.task(chunks, t));
        }
        let (n_d, w) = (s.n_d, s.n_d + s.n_a);
        glue::decision_rows(
            row_block(s.out, f, n, w),
            row_block(s.decision, f, n, n_d),
            row_block(s.sum, f, n, n_d),
            (n_d, s.n_a),
            i == 0,
        );
    }
    log
}

/// Training forward of the encoder, initial batch norm included, from the
/// embedded input `x_graph` (with its autograd history, if any). Returns the
/// output whose steps and sparsity term are autograd leaves; its pass must be
/// completed ([`Pass::backward`]) after `loss.backward()`.
pub(in crate::encoder) fn forward_train(
    enc: &Encoder,
    embedder: &Embedder,
    x_graph: &Tensor,
    prior: Option<&Tensor>,
) -> EncoderOutput {
    kernels::on_pool(|| {
        let (initial, x0) = InitialBn::forward(&enc.initial_bn, x_graph);
        let (rows, dims) = (x0.size()[0] as usize, x0.size()[1] as usize);
        let vbs = enc.attention[0].bn.virtual_batch_size;
        let chunks = Chunks::from_sizes(&chunk_sizes(rows as i64, vbs));
        let (n_groups, n_a) = (enc.n_groups(), enc.n_a());
        let mut buf = Buffers {
            store: enc.tape_buffers.clone(),
            owned: Vec::new(),
        };
        let splitter = transformer_tapes(layers_of(&enc.splitter), &x0, rows, &mut buf);
        let mut prior = match prior {
            Some(_) => initial_prior(prior, rows, n_groups),
            None => buf.take(rows, n_groups as usize).fill_(1.0),
        };
        let mut a = splitter.last().expect("layers").out.narrow(1, enc.n_d, n_a);
        let mut steps = Vec::new();
        for (att, ft) in enc.attention.iter().zip(&enc.transformers) {
            let attention = AttentionTape {
                lin: LinearBn::new(&att.fc, &att.bn.norm, &a, rows, &mut buf),
                prior: prior.shallow_clone(),
                mask: buf.take(rows, n_groups as usize),
                entmax: att.mask == MaskType::Entmax,
            };
            let xm = buf.take(rows, dims);
            let layers = transformer_tapes(layers_of(ft), &xm, rows, &mut buf);
            let step = StepTape {
                attention,
                next_prior: buf.take(rows, n_groups as usize),
                xm,
                layers,
                decision: empty(rows, enc.n_d as usize),
            };
            a = step.out().narrow(1, enc.n_d, n_a);
            prior = step.next_prior.shallow_clone();
            steps.push(step);
        }
        let mut tape = Tape {
            chunks,
            n_d: enc.n_d,
            gamma: enc.gamma,
            epsilon: enc.epsilon,
            x_graph: x_graph.shallow_clone(),
            initial,
            x0,
            expansion: Expansion::of(embedder, dims),
            splitter,
            steps,
            step_leaves: Vec::new(),
            decision_leaf: empty(rows, enc.n_d as usize),
            m_loss_leaf: Tensor::from(0f32),
            _buffers: buf,
        };
        let logs: Vec<ForwardLog> = {
            let tape = &tape;
            let splitter: Vec<LayerRun> = tape.splitter.iter().map(LayerRun::of).collect();
            let steps: Vec<StepRun> = tape
                .steps
                .iter()
                .map(|s| StepRun {
                    attention: s.attention.lin.forward_plan(),
                    gamma: &s.attention.lin.gamma,
                    beta: &s.attention.lin.beta,
                    entmax: s.attention.entmax,
                    prior: ptr(&s.attention.prior),
                    mask: ptr(&s.attention.mask),
                    next: ptr(&s.next_prior),
                    x0: ptr(&tape.x0),
                    xm: ptr(&s.xm),
                    groups: n_groups as usize,
                    dims,
                    layers: s.layers.iter().map(LayerRun::of).collect(),
                    out: ptr(s.out()),
                    decision: ptr(&s.decision),
                    sum: ptr(&tape.decision_leaf),
                    n_d: enc.n_d as usize,
                    n_a: n_a as usize,
                })
                .collect();
            let chunks = &tape.chunks;
            let glue_in = (tape.gamma as f32, tape.epsilon as f32, &tape.expansion);
            kernels::with_pool(|| {
                chunks
                    .tasks()
                    .into_par_iter()
                    .map(|t| forward_task(glue_in, &splitter, &steps, chunks, &t))
                    .collect()
            })
        };
        // the batch statistics, layer by layer in pass order, tasks in task order
        let mut lins: Vec<&mut LinearBn> = tape.splitter.iter_mut().map(|l| &mut l.lin).collect();
        for s in tape.steps.iter_mut() {
            lins.push(&mut s.attention.lin);
            lins.extend(s.layers.iter_mut().map(|l| &mut l.lin));
        }
        for (i, lin) in lins.into_iter().enumerate() {
            lin.finish(logs.iter().map(|l| l.stats[i].as_slice()));
        }
        // Σ over the rows in row order (tasks in task order), as one sequential sum
        let m_loss: f64 = (0..tape.steps.len())
            .map(|i| {
                let sum: f64 = logs.iter().flat_map(|l| l.m_sums[i].iter()).sum();
                sum / rows as f64
            })
            .sum();
        let leaves: Vec<Tensor> = tape
            .steps
            .iter()
            .map(|s| s.decision.shallow_clone().set_requires_grad(true))
            .collect();
        let decision = tape.decision_leaf.shallow_clone().set_requires_grad(true);
        let m_loss_leaf =
            Tensor::from((m_loss / enc.transformers.len() as f64) as f32).set_requires_grad(true);
        tape.step_leaves = leaves.iter().map(|l| l.shallow_clone()).collect();
        tape.m_loss_leaf = m_loss_leaf.shallow_clone();
        EncoderOutput {
            steps: leaves,
            decision: Some(decision),
            m_loss: m_loss_leaf,
            masks: Vec::new(),
            pass: Pass {
                backend: Backend::Fused,
                tape: Some(tape),
            },
        }
    })
}

/// A layer's backward as the tasks run it.
struct LayerBack<'a> {
    lin: LinearBnBackward<'a>,
    rstd: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    d: usize,
    n_in: usize,
    residual: bool,
}

impl<'a> LayerBack<'a> {
    fn of(t: &'a LayerTape) -> Self {
        LayerBack {
            lin: t.lin.backward_plan(),
            rstd: &t.lin.stats.rstd,
            gamma: &t.lin.gamma,
            beta: &t.lin.beta,
            d: t.out.size()[1] as usize,
            n_in: t.lin.input.size()[1] as usize,
            residual: t.residual,
        }
    }

    /// ∂L/∂input (the task's rows) from ∂L/∂out `g_out` (the task's rows),
    /// with `dz` as scratch; pushes the task's parameter gradients.
    fn task(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        g_out: &[f32],
        dz: &mut [f32],
        out: &mut Vec<TaskGrads>,
    ) -> Vec<f32> {
        let (f, _) = chunks.task_rows(t);
        let n = g_out.len() / self.d;
        let mut g_in = vec![0f32; n * self.n_in];
        let d = self.d;
        let scale = if self.residual { SQRT_HALF } else { 1.0 };
        out.push(self.lin.task(
            chunks,
            t,
            self.rstd,
            self.gamma,
            dz,
            &mut g_in,
            |r, zb, gy, sum_g, sum_gz| {
                let go = &g_out[(r - f) * d..(r - f) * d + zb.len() / 2];
                kernels::glu_grad_rows(zb, self.gamma, self.beta, go, scale, gy, sum_g, sum_gz)
            },
            |_, gi| {
                // a residual layer's input has the output's width
                if self.residual {
                    kernels::axpy_row(gi, g_out, scale);
                }
            },
        ));
        g_in
    }
}

/// ∂L/∂(transformer input) from ∂L/∂(its output), layers in reverse.
fn transformer_back(
    layers: &[LayerBack],
    chunks: &Chunks,
    t: &Range<usize>,
    g_out: Vec<f32>,
    dz: &mut [f32],
    out: &mut Vec<TaskGrads>,
) -> Vec<f32> {
    layers
        .iter()
        .rev()
        .fold(g_out, |g, l| l.task(chunks, t, &g, dz, out))
}

/// A decision step's backward as the tasks run it.
struct StepBack<'a> {
    attention: LinearBnBackward<'a>,
    rstd: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    entmax: bool,
    layers: Vec<LayerBack<'a>>,
    /// ∂L/∂(step output), none when it got no gradient
    leaf_grad: Option<SendPtr>,
    prior: SendPtr,
    mask: SendPtr,
    out: SendPtr,
}

impl Tape {
    /// Back-propagates through the encoder by hand from the gradients autograd
    /// left on the leaves, then passes the parameter and input gradients back
    /// to autograd (accumulating into `.grad()` like any backward).
    pub(in crate::encoder) fn backward(self) {
        let (grads, dx) = kernels::on_pool(|| {
            let (mut grads, dx0) = self.manual_backward();
            let (dx, dgamma, dbeta) = self.initial.backward(&dx0);
            grads.add_vec(&self.initial.bn.weight, &dgamma);
            grads.add_vec(&self.initial.bn.bias, &dbeta);
            (grads, dx)
        });
        // the rest goes to autograd in one backward: the embedding's input edge
        // (none for numeric predictors) and the parameters without a .grad()
        // yet (the first step); nothing at all in the usual case
        let mut terms = Vec::new();
        if self.x_graph.requires_grad() {
            terms.push((&self.x_graph * dx).sum(Kind::Float));
        }
        for (p, g) in &grads.pending {
            terms.push((p * g).sum(Kind::Float));
        }
        if let Some(first) = terms.pop() {
            terms.iter().fold(first, |acc, t| acc + t).backward();
        }
    }

    /// The hand-derived backward: (parameter, gradient) pairs and ∂L/∂x0.
    fn manual_backward(&self) -> (Grads, Tensor) {
        let rows = self.chunks.rows;
        let g_mloss = {
            let g = self.m_loss_leaf.grad();
            if g.defined() {
                g.double_value(&[])
            } else {
                0.0
            }
        };
        let c = (g_mloss / (self.steps.len() as f64 * rows as f64)) as f32;
        let glue = GlueGrad {
            ex: &self.expansion,
            gamma: self.gamma as f32,
            eps: self.epsilon as f32,
            c,
            log_eps: (self.epsilon as f32).ln(),
        };
        let dx0 = self.x0.zeros_like();
        let leaf_grads: Vec<Option<Tensor>> = self
            .step_leaves
            .iter()
            .map(|l| {
                let g = l.grad();
                g.defined().then(|| g.contiguous())
            })
            .collect();
        // the sum's gradient reaches every step's decision output
        let sum_grad = {
            let g = self.decision_leaf.grad();
            g.defined().then(|| g.contiguous())
        };
        let splitter: Vec<LayerBack> = self.splitter.iter().map(LayerBack::of).collect();
        let steps: Vec<StepBack> = self
            .steps
            .iter()
            .zip(&leaf_grads)
            .map(|(s, g)| StepBack {
                attention: s.attention.lin.backward_plan(),
                rstd: &s.attention.lin.stats.rstd,
                gamma: &s.attention.lin.gamma,
                beta: &s.attention.lin.beta,
                entmax: s.attention.entmax,
                layers: s.layers.iter().map(LayerBack::of).collect(),
                leaf_grad: g.as_ref().map(ptr),
                prior: ptr(&s.attention.prior),
                mask: ptr(&s.attention.mask),
                out: ptr(s.out()),
            })
            .collect();
        let ctx = BackCtx {
            chunks: &self.chunks,
            n_d: self.n_d as usize,
            n_a: self.steps[0].attention.lin.input.size()[1] as usize,
            groups: self.steps[0].attention.mask.size()[1] as usize,
            max_ch: splitter
                .iter()
                .chain(steps.iter().flat_map(|s| s.layers.iter()))
                .map(|l| 2 * l.d)
                .chain(std::iter::once(
                    self.steps[0].attention.mask.size()[1] as usize,
                ))
                .max()
                .unwrap_or(0),
            glue,
            x0: ptr(&self.x0),
            dx0: ptr(&dx0),
            sum_grad: sum_grad.as_ref().map(ptr),
        };
        let per_task: Vec<Vec<TaskGrads>> = kernels::with_pool(|| {
            ctx.chunks
                .tasks()
                .into_par_iter()
                .map(|t| backward_task(&ctx, &splitter, &steps, &t))
                .collect()
        });
        // merge each layer's gradients over the tasks (in task order), in the
        // order the tasks produced them
        let mut lins: Vec<&LinearBn> = Vec::new();
        for s in self.steps.iter().rev() {
            lins.extend(s.layers.iter().rev().map(|l| &l.lin));
            lins.push(&s.attention.lin);
        }
        lins.extend(self.splitter.iter().rev().map(|l| &l.lin));
        let mut grads = Grads::default();
        let mut per_task: Vec<_> = per_task.into_iter().map(|v| v.into_iter()).collect();
        for lin in lins {
            let parts = per_task
                .iter_mut()
                .map(|it| it.next().expect("one per layer"));
            lin.add_grads(&mut grads, merge_grads(parts.collect::<Vec<_>>()));
        }
        (grads, dx0)
    }
}

/// What every task of the backward shares: the layout, the widths (`max_ch`:
/// the widest layer output, for the scratch ∂L/∂z), the glue's constants, x0
/// and ∂L/∂x0 (each task adds its own rows).
struct BackCtx<'a> {
    chunks: &'a Chunks,
    n_d: usize,
    n_a: usize,
    groups: usize,
    max_ch: usize,
    glue: GlueGrad<'a>,
    x0: SendPtr,
    dx0: SendPtr,
    /// ∂L/∂(Σ of the steps' decision outputs), none when it got no gradient
    sum_grad: Option<SendPtr>,
}

/// The whole encoder backward on one task's rows: adds its rows of ∂L/∂x0
/// into `dxp` and returns its parameter gradients in backward order.
fn backward_task(
    ctx: &BackCtx,
    splitter: &[LayerBack],
    steps: &[StepBack],
    t: &Range<usize>,
) -> Vec<TaskGrads> {
    let (chunks, glue, x0p, dxp) = (ctx.chunks, &ctx.glue, ctx.x0, ctx.dx0);
    let (f, n) = chunks.task_rows(t);
    let (n_d, n_a, groups) = (ctx.n_d, ctx.n_a, ctx.groups);
    let dims = glue.ex.col.len();
    let mut dz = vec![0f32; n * ctx.max_ch];
    let mut out = Vec::new();
    let mut g_a = vec![0f32; n * n_a];
    let mut g_prior = vec![0f32; n * groups];
    // row r's range in a buffer of the task's rows of width w
    let local = |r: usize, w: usize| (r - f) * w..(r - f + 1) * w;
    for s in steps.iter().rev() {
        let w = n_d + n_a;
        let mut g = vec![0f32; n * w];
        let grad_of = |p: Option<SendPtr>| -> &[f32] {
            match p {
                Some(p) => row_block(p, f, n, n_d),
                None => &[],
            }
        };
        let (gd, gs) = (grad_of(s.leaf_grad), grad_of(ctx.sum_grad));
        glue::out_grad_rows(gd, gs, row_block(s.out, f, n, w), &g_a, &mut g, n_d, n_a);
        let g_xm = transformer_back(&s.layers, chunks, t, g, &mut dz, &mut out);
        let mut g_m = vec![0f32; n * groups];
        let mut g_prior_i = vec![0f32; n * groups];
        for r in f..f + n {
            glue::backward_row(
                glue,
                &g_xm[local(r, dims)],
                row(x0p, r, dims),
                row(s.mask, r, groups),
                row(s.prior, r, groups),
                &g_prior[local(r, groups)],
                row(dxp, r, dims),
                &mut g_m[local(r, groups)],
                &mut g_prior_i[local(r, groups)],
            );
        }
        let mut g_a_next = vec![0f32; n * n_a];
        out.push(s.attention.task(
            chunks,
            t,
            s.rstd,
            s.gamma,
            &mut dz,
            &mut g_a_next,
            |first, zb, gyb, sum_g, sum_gz| {
                let rows = zb.chunks_exact(groups).zip(gyb.chunks_exact_mut(groups));
                for (r, (zr, gy)) in (first..).zip(rows) {
                    glue::attention_grad_row(
                        zr,
                        s.gamma,
                        s.beta,
                        row(s.mask, r, groups),
                        row(s.prior, r, groups),
                        &g_m[local(r, groups)],
                        &mut g_prior_i[local(r, groups)],
                        gy,
                        s.entmax,
                    )
                }
                kernels::bn_grad_sums_rows(gyb, zb, sum_g, sum_gz);
            },
            |_, _| {},
        ));
        g_a = g_a_next;
        g_prior = g_prior_i;
    }
    let w = n_d + n_a;
    let mut g_split = vec![0f32; n * w];
    for (gs, ga) in g_split.chunks_exact_mut(w).zip(g_a.chunks_exact(n_a)) {
        gs[n_d..].copy_from_slice(ga);
    }
    let dx_split = transformer_back(splitter, chunks, t, g_split, &mut dz, &mut out);
    for (r, ds) in (f..f + n).zip(dx_split.chunks_exact(dims)) {
        kernels::add_row(row(dxp, r, dims), ds);
    }
    out
}
