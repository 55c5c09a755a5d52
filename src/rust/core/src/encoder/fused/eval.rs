//! The eval-mode pass (running statistics) with the fused kernels, shaped for
//! inference: every batch norm is folded into its product once per model
//! ([`EvalPlan`], cached by `Model`), and the whole network, from the embedded
//! input through every decision step to the head's probabilities, runs per
//! block of [`BLOCK_ROWS`] rows in one parallel task, so a block's activations
//! stay in cache and a call costs one hand-off per block, not one parallel
//! region per layer with every layer's output going to memory and back.
//!
//! Rows are independent in eval mode and each output element is a fixed chain
//! of operations (see [`crate::gemm`]), so results do not depend on the
//! thread count or on how the rows are cut into calls and blocks.
use super::attentive::AttentionPlan;
use super::feature_transformer::{layers_of, plans, transformer};
use super::glu_layer::GluPlan;
use super::glue;
use super::linear_bn::eval_affine;
use super::{to_vec, Expansion};
use crate::config::{NetConfig, Task};
use crate::embedding::Embedder;
use crate::encoder::{Backend, Encoder, EncoderOutput, Pass};
use crate::ghost_bn::BatchNorm;
use crate::kernels::{self, empty, values, values_mut};
use rayon::prelude::*;
use std::cell::RefCell;
use tch::{Kind, Tensor};

/// Rows per parallel task: a TabNet-S block's widest activations (256 × 100
/// floats) stay in L2 beside the folded weights.
pub(crate) const BLOCK_ROWS: usize = 256;

struct StepPlan {
    attention: AttentionPlan,
    layers: Vec<GluPlan>,
}

/// What the head's outputs become.
enum Activation {
    /// a softmax over each outcome's columns (their widths)
    Softmax(Vec<usize>),
    /// values (regression)
    Identity,
    /// logits: the caller activates them (hierarchies, `loss::activate`)
    Logits,
}

struct Head {
    /// (out, n_d) row-major
    w: Vec<f32>,
    out: usize,
    activation: Activation,
}

/// The network folded for inference (see the module docs).
pub(crate) struct EvalPlan {
    /// the initial batch norm as x0 = x ⊙ scale + shift (None: the input is x0)
    bn0: Option<(Vec<f32>, Vec<f32>)>,
    splitter: Vec<GluPlan>,
    steps: Vec<StepPlan>,
    ex: Expansion,
    gamma: f32,
    eps: f32,
    n_d: usize,
    n_a: usize,
    groups: usize,
    dims: usize,
    head: Option<Head>,
}

/// One task's share of the outputs (each `n` rows of its width), see [`Outputs`].
struct Rows<'a> {
    first: usize,
    n: usize,
    out: Option<&'a mut [f32]>,
    m_explain: Option<&'a mut [f32]>,
    masks: Vec<&'a mut [f32]>,
    steps: Vec<&'a mut [f32]>,
    m_sums: Option<&'a mut [f64]>,
    /// logits without the head's softmax
    raw: bool,
}

/// What a pass writes, each for every row (row-major): the head's output
/// (probabilities, values or logits; rows × outputs), Σ_i η_i M_i at group
/// level (rows × G), each step's mask (rows × G, all steps or none), each
/// step's decision output (rows × n_d, all steps or none), and each row's
/// Σ M log(M + ε) per step (rows × steps).
#[derive(Default)]
pub(crate) struct Outputs<'a> {
    pub out: Option<&'a mut [f32]>,
    pub m_explain: Option<&'a mut [f32]>,
    pub masks: Vec<&'a mut [f32]>,
    pub steps: Vec<&'a mut [f32]>,
    pub m_sums: Option<&'a mut [f64]>,
    /// write the head's logits into `out`, without the softmax (raw outputs)
    pub raw: bool,
}

/// A task's buffers, kept per thread across blocks and calls.
#[derive(Default)]
struct Scratch {
    x0: Vec<f32>,
    z: Vec<f32>,
    h: [Vec<f32>; 2],
    prior: [Vec<f32>; 2],
    mask: Vec<f32>,
    xm: Vec<f32>,
    dec: Vec<f32>,
    sum: Vec<f32>,
    msum: Vec<f64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The first `n` values of `v`, grown if needed (values left from earlier
/// blocks are overwritten before they are read).
pub(super) fn grow<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

/// An output of `n` rows of `w` values cut into blocks of [`BLOCK_ROWS`] rows.
fn blocks<T>(v: &mut [T], n: usize, w: usize) -> std::vec::IntoIter<&mut [T]> {
    assert_eq!(v.len(), n * w, "an output of n rows");
    v.chunks_mut(BLOCK_ROWS * w).collect::<Vec<_>>().into_iter()
}

/// The next block of an output.
fn take<'a, T>(it: &mut std::vec::IntoIter<&'a mut [T]>) -> &'a mut [T] {
    it.next().expect("a block per task")
}

impl EvalPlan {
    /// Folds `enc` (and the supervised `head` (out, n_d) of `cfg`, if any).
    /// With `initial_bn` false the pass starts from the initial BN's output.
    pub(crate) fn new(
        embedder: &Embedder,
        enc: &Encoder,
        head: Option<(&Tensor, &NetConfig)>,
        initial_bn: bool,
    ) -> EvalPlan {
        let dims = enc.initial_bn.running_mean.numel();
        let glu = plans;
        let steps = enc
            .attention
            .iter()
            .zip(&enc.transformers)
            .map(|(att, ft)| StepPlan {
                attention: AttentionPlan::of(att),
                layers: glu(ft),
            })
            .collect();
        let head = head.map(|(w, cfg)| Head {
            w: to_vec(w),
            out: w.size()[0] as usize,
            activation: match cfg.task {
                Task::Classification => Activation::Softmax(cfg.output_dims.clone()),
                Task::Regression => Activation::Identity,
                Task::Hierarchical => Activation::Logits,
            },
        });
        EvalPlan {
            bn0: initial_bn.then(|| eval_affine(&enc.initial_bn)),
            splitter: glu(&enc.splitter),
            steps,
            ex: Expansion::of(embedder, dims),
            gamma: enc.gamma as f32,
            eps: enc.epsilon as f32,
            n_d: enc.n_d as usize,
            n_a: enc.n_a() as usize,
            groups: enc.n_groups() as usize,
            dims,
            head,
        }
    }

    /// Every tensor a plan of `enc` (and `head`) is folded from, in a fixed
    /// order: the plan is stale when any of their values changed.
    pub(crate) fn sources<'a>(enc: &'a Encoder, head: Option<&'a Tensor>) -> Vec<&'a Tensor> {
        let bn = |b: &'a BatchNorm| [&b.weight, &b.bias, &b.running_mean, &b.running_var];
        let mut v: Vec<&Tensor> = bn(&enc.initial_bn).to_vec();
        for ft in std::iter::once(&enc.splitter).chain(&enc.transformers) {
            for (l, _) in layers_of(ft) {
                v.push(&l.fc);
                v.extend(bn(&l.bn.norm));
            }
        }
        for att in &enc.attention {
            v.push(&att.fc);
            v.extend(bn(&att.bn.norm));
        }
        v.extend(head);
        v
    }

    /// Width of the head's output (0 without a head).
    pub(crate) fn outputs(&self) -> usize {
        self.head.as_ref().map_or(0, |h| h.out)
    }

    /// True when the head's output still needs `loss::activate` (hierarchies).
    pub(crate) fn activates_later(&self) -> bool {
        matches!(
            self.head.as_ref().map(|h| &h.activation),
            Some(Activation::Logits)
        )
    }

    /// Attention groups G (the width of masks and M_explain at group level).
    pub(crate) fn groups(&self) -> usize {
        self.groups
    }

    pub(crate) fn n_steps(&self) -> usize {
        self.steps.len()
    }

    /// The pass over `n` rows: `x` the embedded input (rows of D; x0 when the
    /// plan has no initial BN), `prior` the initial prior (rows of G; ones
    /// when None). Runs as tasks of [`BLOCK_ROWS`] rows on the kernels' pool.
    pub(crate) fn run(&self, x: &[f32], prior: Option<&[f32]>, n: usize, outs: Outputs<'_>) {
        let (g, n_d) = (self.groups, self.n_d);
        assert_eq!(x.len(), n * self.dims, "x holds n rows of D values");
        if let Some(p) = prior {
            assert_eq!(p.len(), n * g, "the prior holds n rows of G values");
        }
        let (b, s) = (BLOCK_ROWS, self.steps.len());
        let mut out = outs.out.map(|v| blocks(v, n, self.outputs()));
        let mut m_explain = outs.m_explain.map(|v| blocks(v, n, g));
        let mut masks: Vec<_> = outs.masks.into_iter().map(|v| blocks(v, n, g)).collect();
        let mut steps: Vec<_> = outs.steps.into_iter().map(|v| blocks(v, n, n_d)).collect();
        let mut m_sums = outs.m_sums.map(|v| blocks(v, n, s));
        assert!(masks.is_empty() || masks.len() == s, "a mask per step");
        assert!(steps.is_empty() || steps.len() == s, "an output per step");
        let tasks: Vec<Rows> = (0..n.div_ceil(b))
            .map(|t| Rows {
                first: t * b,
                n: b.min(n - t * b),
                out: out.as_mut().map(take),
                m_explain: m_explain.as_mut().map(take),
                masks: masks.iter_mut().map(take).collect(),
                steps: steps.iter_mut().map(take).collect(),
                m_sums: m_sums.as_mut().map(take),
                raw: outs.raw,
            })
            .collect();
        let (dims, plan) = (self.dims, self);
        crate::runtime::with_pool(|| {
            tasks.into_par_iter().for_each(|mut rows| {
                let (f, r) = (rows.first, rows.n);
                let x = &x[f * dims..(f + r) * dims];
                let prior = prior.map(|p| &p[f * g..(f + r) * g]);
                SCRATCH.with(|s| plan.block(x, prior, &mut rows, &mut s.borrow_mut()));
            })
        });
    }

    /// The whole network on one block of rows (see [`EvalPlan::run`]).
    fn block(&self, x: &[f32], prior_in: Option<&[f32]>, o: &mut Rows<'_>, s: &mut Scratch) {
        let n = o.n;
        let (dims, g, n_d, n_a) = (self.dims, self.groups, self.n_d, self.n_a);
        let w = n_d + n_a;
        let Scratch {
            x0,
            z,
            h,
            prior,
            mask,
            xm,
            dec,
            sum,
            msum,
        } = s;
        let x0: &[f32] = match &self.bn0 {
            Some((scale, shift)) => {
                let b = grow(x0, n * dims);
                kernels::affine_rows(x, scale, shift, b);
                b
            }
            None => x,
        };
        let mut cur = transformer(&self.splitter, x0, n, z, h);
        let [p_a, p_b] = prior;
        let (mut pr, mut pn) = (p_a, p_b);
        match prior_in {
            Some(p) => grow(pr, n * g).copy_from_slice(p),
            None => grow(pr, n * g).fill(1.0),
        }
        let sum = grow(sum, n * n_d);
        let n_steps = self.steps.len();
        for (i, st) in self.steps.iter().enumerate() {
            // the previous output's attention part: rows of w from column n_d
            let (zb, m) = (grow(z, n * g), grow(mask, n * g));
            st.attention
                .forward(&h[cur][n_d..], n, w, &pr[..n * g], zb, m);
            let m = &mask[..n * g];
            if let Some(ms) = o.m_sums.as_deref_mut() {
                let rs = grow(msum, n);
                glue::sparsity_rows(m, g, self.eps, rs);
                for (r, v) in rs.iter().enumerate() {
                    ms[r * n_steps + i] = *v;
                }
            }
            glue::mask_input_rows(
                m,
                &pr[..n * g],
                x0,
                grow(pn, n * g),
                grow(xm, n * dims),
                &self.ex,
                self.gamma,
                (g, dims),
            );
            cur = transformer(&st.layers, &xm[..n * dims], n, z, h);
            let d = grow(dec, n * n_d);
            glue::decision_rows(&h[cur][..n * w], d, sum, (n_d, n_a), i == 0);
            if let Some(out) = o.steps.get_mut(i) {
                out.copy_from_slice(d);
            }
            if let Some(out) = o.masks.get_mut(i) {
                out.copy_from_slice(m);
            }
            if let Some(me) = o.m_explain.as_deref_mut() {
                // η = Σ_c ReLU(d_c) weighs the step's mask
                for ((mer, mr), dr) in me
                    .chunks_exact_mut(g)
                    .zip(m.chunks_exact(g))
                    .zip(d.chunks_exact(n_d))
                {
                    let eta: f32 = dr.iter().sum();
                    if i == 0 {
                        mer.iter_mut().zip(mr).for_each(|(e, &v)| *e = v * eta);
                    } else {
                        mer.iter_mut().zip(mr).for_each(|(e, &v)| *e += v * eta);
                    }
                }
            }
            std::mem::swap(&mut pr, &mut pn);
        }
        if let (Some(hd), Some(out)) = (&self.head, o.out.as_deref_mut()) {
            let widths: &[usize] = match &hd.activation {
                Activation::Softmax(w) if !o.raw => w,
                _ => &[],
            };
            kernels::head_rows(sum, &hd.w, out, n_d, widths);
        }
    }
}

/// Eval-mode encoder pass (running statistics) with the fused kernels, from the
/// initial BN's output: the inference pass ([`EvalPlan`], folded for this
/// call) writing each step's decision output, its mask when asked and the
/// sparsity term. Same outputs as the autograd encoder in eval mode.
pub(in crate::encoder) fn forward_eval(
    enc: &Encoder,
    embedder: &Embedder,
    x0: &Tensor,
    prior: Option<&Tensor>,
    keep_masks: bool,
) -> EncoderOutput {
    let _settings = crate::runtime::RunSettings::enter();
    crate::runtime::on_pool(|| {
        let plan = EvalPlan::new(embedder, enc, None, false);
        let x0 = x0.detach().to_kind(Kind::Float).contiguous();
        let rows = x0.size()[0] as usize;
        let prior = prior.map(|p| p.to_kind(Kind::Float).contiguous());
        let s = plan.n_steps();
        let steps: Vec<Tensor> = (0..s).map(|_| empty(rows, plan.n_d)).collect();
        let masks: Vec<Tensor> = if keep_masks {
            (0..s).map(|_| empty(rows, plan.groups)).collect()
        } else {
            Vec::new()
        };
        let mut m_sums = vec![0f64; rows * s];
        // the output tensors' storage, each taken once as one slice
        let mut handles: Vec<Tensor> = steps
            .iter()
            .chain(&masks)
            .map(|t| t.shallow_clone())
            .collect();
        let mut slots: Vec<&mut [f32]> = handles
            .iter_mut()
            // SAFETY: the tensors are fresh (made above for this pass's
            // output) and no other handle of them is used until it returns.
            .map(|t| unsafe { values_mut(t) })
            .collect();
        let masks_out = slots.split_off(s);
        plan.run(
            values(&x0),
            prior.as_ref().map(values),
            rows,
            Outputs {
                steps: slots,
                masks: masks_out,
                m_sums: Some(&mut m_sums),
                ..Default::default()
            },
        );
        // per step, the rows' sums in row order, then over the steps
        let mut m_loss = 0f64;
        for i in 0..s {
            let step: f64 = m_sums.chunks_exact(s).map(|r| r[i]).sum();
            m_loss += step / rows as f64;
        }
        let m_loss = Tensor::from((m_loss / s as f64) as f32);
        EncoderOutput {
            steps,
            decision: None,
            m_loss,
            masks,
            pass: Pass {
                backend: Backend::Fused,
                tape: None,
            },
        }
    })
}

/// Inference on a batch of a data set with a cached plan: the embedded input
/// and the prior (missing values) by libtorch, then [`EvalPlan::run`].
pub(crate) fn run_batch(
    plan: &EvalPlan,
    embedder: &Embedder,
    b: &crate::data::Batch,
    outs: Outputs<'_>,
) {
    let x = embedder
        .forward(&b.x_num, b.x_cat.as_ref())
        .to_kind(Kind::Float)
        .contiguous();
    let prior = b
        .present
        .as_ref()
        .map(|p| embedder.group_prior(p).to_kind(Kind::Float).contiguous());
    let n = x.size()[0] as usize;
    plan.run(values(&x), prior.as_ref().map(values), n, outs);
}
