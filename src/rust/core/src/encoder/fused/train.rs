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
use super::attentive::{AttentionBack, AttentionRun, AttentionTape};
use super::buffers::Buffers;
use super::feature_transformer::{
    layers_of, transformer_back, transformer_tapes, transformer_task,
};
use super::glu_layer::{LayerBack, LayerRows, LayerRun, LayerTape};
use super::glue::{self, GlueGrad};
use super::initial_bn::InitialBn;
use super::linear_bn::{merge_grads, ChunkStats, LinearBn, TaskGrads};
use super::{initial_prior, Expansion};
use crate::embedding::Embedder;
use crate::encoder::{Backend, Encoder, EncoderOutput, Pass};
use crate::ghost_bn::chunk_sizes;
use crate::kernels::{self, empty, split_rows, values, values_mut, view, Chunks, Strided};
use rayon::prelude::*;
use std::ops::Range;
use tch::{Kind, Tensor};

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
            Some(mut acc) => kernels::add_row(
                // SAFETY: a parameter's gradient (checked contiguous f32 CPU
                // by existing()) is written by this pass alone; no other
                // handle of it is used meanwhile.
                unsafe { values_mut(&mut acc) },
                g,
            ),
            None => self.pending.push((
                p.shallow_clone(),
                Tensor::of_slice(g).view(p.size().as_slice()),
            )),
        }
    }
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

/// One task's rows of a decision step's outputs: the attention's ẑ, the mask,
/// the next prior (rows of G each), x_m (rows of D), the feature transformer's
/// layers and the decision output (rows of n_d).
struct StepRows<'a> {
    zhat: &'a mut [f32],
    mask: &'a mut [f32],
    next: &'a mut [f32],
    xm: &'a mut [f32],
    layers: Vec<LayerRows<'a>>,
    decision: &'a mut [f32],
}

/// One task's chunk indices and its rows of every output of the forward (the
/// running sum of the decision outputs last).
struct TaskRows<'a> {
    t: Range<usize>,
    splitter: Vec<LayerRows<'a>>,
    steps: Vec<StepRows<'a>>,
    sum: &'a mut [f32],
}

/// A decision step's attention as the tasks run it (its glue is
/// [`glue::forward_row`], its feature transformer a list of [`LayerRun`]).
struct StepRun<'a> {
    attention: AttentionRun<'a>,
    layers: Vec<LayerRun<'a>>,
}

/// What every task of the forward shares: x0 (rows of D) and the first
/// step's prior (rows of G), read only; the glue's constants and the widths.
struct ForwardCtx<'a> {
    x0: Strided<'a>,
    prior: &'a [f32],
    ex: &'a Expansion,
    gamma: f32,
    eps: f32,
    groups: usize,
    dims: usize,
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
    ctx: &ForwardCtx,
    splitter: &[LayerRun],
    steps: &[StepRun],
    chunks: &Chunks,
    rows: TaskRows,
) -> ForwardLog {
    let TaskRows {
        t,
        splitter: mut split_rows,
        steps: mut step_rows,
        sum,
    } = rows;
    let (f, n) = chunks.task_rows(&t);
    let (g, dims, n_d, n_a) = (ctx.groups, ctx.dims, ctx.n_d, ctx.n_a);
    let w = n_d + n_a;
    let mut log = ForwardLog {
        stats: Vec::new(),
        m_sums: Vec::new(),
    };
    let x0 = ctx.x0.rows(f, n);
    transformer_task(splitter, chunks, &t, x0, &mut split_rows, &mut log.stats);
    // the previous transformer's output (its attention part feeds the step)
    // and the step's prior: the task's rows
    let mut prev: &[f32] = split_rows.last().expect("layers").out;
    let mut prior: &[f32] = &ctx.prior[f * g..(f + n) * g];
    for (i, (s, sr)) in steps.iter().zip(step_rows.iter_mut()).enumerate() {
        let a = Strided::new(&prev[n_d..], n, n_a, w);
        log.stats
            .push(s.attention.task(chunks, &t, a, prior, sr.zhat, sr.mask));
        let sums = sr
            .mask
            .chunks_exact(g)
            .zip(prior.chunks_exact(g))
            .zip(x0.data.chunks_exact(dims))
            .zip(sr.next.chunks_exact_mut(g))
            .zip(sr.xm.chunks_exact_mut(dims))
            .map(|((((m, p), x), next), xm)| {
                glue::forward_row(m, p, x, next, xm, ctx.ex, ctx.gamma, ctx.eps)
            })
            .collect();
        log.m_sums.push(sums);
        let xm = Strided::dense(sr.xm, dims);
        transformer_task(&s.layers, chunks, &t, xm, &mut sr.layers, &mut log.stats);
        let out: &[f32] = sr.layers.last().expect("layers").out;
        glue::decision_rows(out, sr.decision, sum, (n_d, n_a), i == 0);
        (prev, prior) = (out, &*sr.next);
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
    crate::runtime::on_pool(|| {
        let (initial, x0) = InitialBn::forward(&enc.initial_bn, x_graph);
        let (rows, dims) = (x0.size()[0] as usize, x0.size()[1] as usize);
        let vbs = enc.attention[0].bn.virtual_batch_size;
        let chunks = Chunks::from_sizes(&chunk_sizes(rows as i64, vbs));
        let (n_groups, n_a) = (enc.n_groups(), enc.n_a());
        let mut buf = Buffers::new(enc.tape_buffers.clone());
        let splitter = transformer_tapes(layers_of(&enc.splitter), &x0, rows, &mut buf);
        let mut prior = match prior {
            Some(_) => initial_prior(prior, rows, n_groups),
            None => buf.take(rows, n_groups as usize).fill_(1.0),
        };
        let mut a = splitter.last().expect("layers").out.narrow(1, enc.n_d, n_a);
        let mut steps = Vec::new();
        for (att, ft) in enc.attention.iter().zip(&enc.transformers) {
            let attention = AttentionTape::new(att, &a, &prior, rows, &mut buf);
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
                    attention: AttentionRun::of(&s.attention),
                    layers: s.layers.iter().map(LayerRun::of).collect(),
                })
                .collect();
            let ctx = ForwardCtx {
                x0: view(&tape.x0),
                prior: values(&tape.steps[0].attention.prior),
                ex: &tape.expansion,
                gamma: tape.gamma as f32,
                eps: tape.epsilon as f32,
                groups: n_groups as usize,
                dims,
                n_d: enc.n_d as usize,
                n_a: n_a as usize,
            };
            let chunks = &tape.chunks;
            let mut outputs = tape.outputs();
            let tasks = tape.task_rows(&mut outputs);
            crate::runtime::with_pool(|| {
                tasks
                    .into_par_iter()
                    .map(|rows| forward_task(&ctx, &splitter, &steps, chunks, rows))
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

impl Tape {
    /// Handles of every tensor the forward's tasks write, in the order
    /// [`Tape::task_rows`] hands them out: per splitter layer ẑ and its
    /// output; per step the attention's ẑ, the mask, the next prior, x_m, per
    /// layer ẑ and its output, the decision output; the decision outputs' sum.
    fn outputs(&self) -> Vec<Tensor> {
        let layer = |l: &LayerTape| [l.lin.zhat.shallow_clone(), l.out.shallow_clone()];
        let mut v: Vec<Tensor> = self.splitter.iter().flat_map(layer).collect();
        for s in &self.steps {
            v.push(s.attention.lin.zhat.shallow_clone());
            v.push(s.attention.mask.shallow_clone());
            v.push(s.next_prior.shallow_clone());
            v.push(s.xm.shallow_clone());
            v.extend(s.layers.iter().flat_map(layer));
            v.push(s.decision.shallow_clone());
        }
        v.push(self.decision_leaf.shallow_clone());
        v
    }

    /// Each task's rows of the `outputs` (from [`Tape::outputs`]): every
    /// tensor's storage taken once as one slice, cut into the tasks' rows.
    fn task_rows<'a>(&self, outputs: &'a mut [Tensor]) -> Vec<TaskRows<'a>> {
        let tasks = self.chunks.tasks();
        let counts: Vec<usize> = tasks.iter().map(|t| self.chunks.task_rows(t).1).collect();
        let mut cut: Vec<_> = outputs
            .iter_mut()
            .map(|t| {
                let width = t.size()[1] as usize;
                // SAFETY: each output is a distinct buffer of this tape (taken
                // from the store, which hands a buffer to one tape, or fresh),
                // and until the slices are dropped no other handle of it is
                // used: the tasks read and write through these slices only
                // (besides x0 and the first prior, which are not outputs).
                let all = unsafe { values_mut(t) };
                split_rows(all, width, counts.iter().copied()).into_iter()
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| {
                let mut pieces = cut.iter_mut().map(|c| c.next().expect("a piece per task"));
                let mut next = move || pieces.next().expect("a piece per output");
                let layers = |k: usize, next: &mut dyn FnMut() -> &'a mut [f32]| {
                    (0..k)
                        .map(|_| LayerRows {
                            zhat: next(),
                            out: next(),
                        })
                        .collect::<Vec<_>>()
                };
                let splitter = layers(self.splitter.len(), &mut next);
                let steps = self
                    .steps
                    .iter()
                    .map(|s| StepRows {
                        zhat: next(),
                        mask: next(),
                        next: next(),
                        xm: next(),
                        layers: layers(s.layers.len(), &mut next),
                        decision: next(),
                    })
                    .collect();
                TaskRows {
                    t,
                    splitter,
                    steps,
                    sum: next(),
                }
            })
            .collect()
    }
}

/// A decision step's backward as the tasks run it: its saved tensors (every
/// row), read only.
struct StepBack<'a> {
    attention: AttentionBack<'a>,
    layers: Vec<LayerBack<'a>>,
    /// ∂L/∂(step output), none when it got no gradient
    leaf_grad: Option<&'a [f32]>,
    out: &'a [f32],
}

impl Tape {
    /// Back-propagates through the encoder by hand from the gradients autograd
    /// left on the leaves, then passes the parameter and input gradients back
    /// to autograd (accumulating into `.grad()` like any backward).
    pub(in crate::encoder) fn backward(self) {
        let (grads, dx) = crate::runtime::on_pool(|| {
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
                attention: AttentionBack::of(&s.attention),
                layers: s.layers.iter().map(LayerBack::of).collect(),
                leaf_grad: g.as_ref().map(values),
                out: values(s.out()),
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
            x0: values(&self.x0),
            sum_grad: sum_grad.as_ref().map(values),
        };
        let tasks = self.chunks.tasks();
        let counts = tasks.iter().map(|t| self.chunks.task_rows(t).1);
        let mut dx0_handle = dx0.shallow_clone();
        let dims = ctx.glue.ex.col.len();
        // SAFETY: dx0 is fresh (zeros_like) and no other handle of it is used
        // until the tasks, each with its own rows, are done.
        let dx0_rows = split_rows(unsafe { values_mut(&mut dx0_handle) }, dims, counts);
        let per_task: Vec<Vec<TaskGrads>> = crate::runtime::with_pool(|| {
            tasks
                .into_par_iter()
                .zip(dx0_rows)
                .map(|(t, dx)| backward_task(&ctx, &splitter, &steps, &t, dx))
                .collect()
        });
        (self.merge_grads(per_task), dx0)
    }

    /// Each layer's parameter gradients merged over the tasks (in task
    /// order); each task returned them in backward order.
    fn merge_grads(&self, per_task: Vec<Vec<TaskGrads>>) -> Grads {
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
            let (dgamma, dbeta, dw) = merge_grads(parts.collect::<Vec<_>>());
            let [gamma, beta, w] = lin.params();
            grads.add_vec(w, &dw);
            grads.add_vec(gamma, &dgamma);
            grads.add_vec(beta, &dbeta);
        }
        grads
    }
}

/// What every task of the backward shares: the layout, the widths (`max_ch`:
/// the widest layer output, for the scratch ∂L/∂z), the glue's constants and
/// x0 (read only).
struct BackCtx<'a> {
    chunks: &'a Chunks,
    n_d: usize,
    n_a: usize,
    groups: usize,
    max_ch: usize,
    glue: GlueGrad<'a>,
    x0: &'a [f32],
    /// ∂L/∂(Σ of the steps' decision outputs), none when it got no gradient
    sum_grad: Option<&'a [f32]>,
}

/// The whole encoder backward on one task's rows: adds its rows of ∂L/∂x0
/// into `dx0` (the task's rows) and returns its parameter gradients in
/// backward order.
fn backward_task<'a>(
    ctx: &BackCtx<'a>,
    splitter: &[LayerBack],
    steps: &[StepBack<'a>],
    t: &Range<usize>,
    dx0: &mut [f32],
) -> Vec<TaskGrads> {
    let (chunks, glue) = (ctx.chunks, &ctx.glue);
    let (f, n) = chunks.task_rows(t);
    let (n_d, n_a, groups) = (ctx.n_d, ctx.n_a, ctx.groups);
    let dims = glue.ex.col.len();
    let mut dz = vec![0f32; n * ctx.max_ch];
    let mut out = Vec::new();
    let mut g_a = vec![0f32; n * n_a];
    let mut g_prior = vec![0f32; n * groups];
    // row r's range in a buffer of the task's rows of width w, and in one of
    // every row
    let local = |r: usize, w: usize| (r - f) * w..(r - f + 1) * w;
    let global = |r: usize, w: usize| r * w..(r + 1) * w;
    for s in steps.iter().rev() {
        let w = n_d + n_a;
        let mut g = vec![0f32; n * w];
        let grad_of = |p: Option<&'a [f32]>| -> &'a [f32] {
            match p {
                Some(p) => &p[f * n_d..(f + n) * n_d],
                None => &[],
            }
        };
        let (gd, gs) = (grad_of(s.leaf_grad), grad_of(ctx.sum_grad));
        let out_rows = &s.out[f * w..(f + n) * w];
        glue::out_grad_rows(gd, gs, out_rows, &g_a, &mut g, n_d, n_a);
        let g_xm = transformer_back(&s.layers, chunks, t, g, &mut dz, &mut out);
        let mut g_m = vec![0f32; n * groups];
        let mut g_prior_i = vec![0f32; n * groups];
        for r in f..f + n {
            glue::backward_row(
                glue,
                &g_xm[local(r, dims)],
                &ctx.x0[global(r, dims)],
                &s.attention.mask[global(r, groups)],
                &s.attention.prior[global(r, groups)],
                &g_prior[local(r, groups)],
                &mut dx0[local(r, dims)],
                &mut g_m[local(r, groups)],
                &mut g_prior_i[local(r, groups)],
            );
        }
        let mut g_a_next = vec![0f32; n * n_a];
        out.push(
            s.attention
                .task(chunks, t, &g_m, &mut g_prior_i, &mut dz, &mut g_a_next),
        );
        g_a = g_a_next;
        g_prior = g_prior_i;
    }
    let w = n_d + n_a;
    let mut g_split = vec![0f32; n * w];
    for (gs, ga) in g_split.chunks_exact_mut(w).zip(g_a.chunks_exact(n_a)) {
        gs[n_d..].copy_from_slice(ga);
    }
    let dx_split = transformer_back(splitter, chunks, t, g_split, &mut dz, &mut out);
    for (dr, ds) in dx0.chunks_exact_mut(dims).zip(dx_split.chunks_exact(dims)) {
        kernels::add_row(dr, ds);
    }
    out
}
