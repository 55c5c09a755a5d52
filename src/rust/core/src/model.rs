//! A network with its `VarStore` and config; bytes in, bytes out.
//!
//! The weights are libtorch's archive of every named tensor (parameters and
//! batch-norm running statistics); the config is JSON. Both are kept by the R
//! object, so `saveRDS()` needs nothing else.
use crate::config::NetConfig;
use crate::data::{Batch, Dataset};
use crate::embedding::Embedder;
use crate::encoder::{Backend, Encoder, EvalPlan, Pass};
use crate::error::{corrupt, invalid, torch_message, Error, Result};
use crate::loss;
use crate::msg;
use crate::network::TabNet;
use crate::pretrainer::Pretrainer;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The inference plan ([`EvalPlan`]: every batch norm folded into its
/// product) of a model, built at its first prediction and reused while the
/// weights it was folded from are unchanged. It keeps a copy of those values
/// and compares them with the live ones at each use (a read of the encoder's
/// weights, ~0.3 MB at TabNet-S): whatever edits the weights in place (the
/// optimiser, the fused pass's running statistics, `load_bytes`,
/// `copy_encoder_from`) can never leave a stale fold behind.
#[derive(Default)]
pub(crate) struct PlanCache(Mutex<Option<Arc<FoldedPlan>>>);

/// A plan and the values it was folded from (in [`EvalPlan::sources`] order).
pub(crate) struct FoldedPlan {
    pub(crate) plan: EvalPlan,
    from: Vec<f32>,
}

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanCache")
    }
}

/// The values of a contiguous f32 CPU tensor (None for any other).
fn host_values(t: &Tensor) -> Option<&[f32]> {
    // SAFETY: only read, while `t` is borrowed; parameters are not written
    // while a call that holds the model reads them.
    (crate::kernels::supported(t) && t.kind() == Kind::Float)
        .then(|| unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel()) })
}

impl PlanCache {
    /// The cached plan if `sources` still hold the values it was folded
    /// from, else a new one from `build` (kept for the next call).
    fn get(&self, sources: &[&Tensor], build: impl FnOnce() -> EvalPlan) -> Arc<FoldedPlan> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref() {
            let mut at = 0;
            let same = sources.iter().all(|t| match host_values(t) {
                Some(v) => {
                    let ok = p.from.get(at..at + v.len()) == Some(v);
                    at += v.len();
                    ok
                }
                None => false,
            }) && at == p.from.len();
            if same {
                return p.clone();
            }
        }
        let mut from = Vec::new();
        for t in sources {
            match host_values(t) {
                Some(v) => from.extend_from_slice(v),
                // never equal again: such a plan is rebuilt at every use
                None => from.push(f32::NAN),
            }
        }
        let p = Arc::new(FoldedPlan {
            plan: build(),
            from,
        });
        *slot = Some(p.clone());
        p
    }

    fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A batch's loss, ready to back-propagate.
pub struct BatchLoss {
    /// task loss minus λ × the sparsity term: what the optimiser minimises
    pub loss: Tensor,
    /// the task loss alone (reported)
    pub task: Tensor,
    pass: Pass,
}

impl BatchLoss {
    /// Gradients of `loss` into every parameter's `.grad()`: autograd for the
    /// head/decoder and the loss, then (fused backend) the encoder's
    /// hand-derived backward.
    pub fn backward(self) {
        self.loss.backward();
        self.pass.backward();
    }

    /// The backend that ran the encoder.
    pub fn backend(&self) -> Backend {
        self.pass.backend()
    }
}

#[derive(Debug)]
pub(crate) enum Net {
    Supervised(TabNet),
    Pretrain(Pretrainer),
}

impl Net {
    /// The embedder and encoder, which both kinds of network have.
    pub(crate) fn embedder_encoder(&self) -> (&Embedder, &Encoder) {
        match self {
            Net::Supervised(n) => (&n.embedder, &n.encoder),
            Net::Pretrain(p) => (&p.embedder, &p.encoder),
        }
    }
}

#[derive(Debug)]
pub struct Model {
    pub vs: VarStore,
    pub cfg: NetConfig,
    pub(crate) net: Net,
    /// the folded inference plan (see [`PlanCache`])
    plan: PlanCache,
}

impl Model {
    /// A freshly initialised supervised network (uses libtorch's RNG).
    pub fn new(cfg: NetConfig, device: Device) -> Result<Model> {
        cfg.validate()?;
        let vs = VarStore::new(device);
        let net = Net::Supervised(TabNet::new(&vs.root(), &cfg));
        Ok(Model {
            vs,
            cfg,
            net,
            plan: PlanCache::default(),
        })
    }

    /// A freshly initialised pretraining network (encoder + decoder).
    pub fn new_pretrainer(cfg: NetConfig, ratio: f64, device: Device) -> Result<Model> {
        cfg.validate()?;
        if !(ratio > 0.0 && ratio < 1.0) {
            return invalid(msg!(
                "{.arg pretraining_ratio} must be strictly between 0 and 1."
            ));
        }
        let vs = VarStore::new(device);
        let net = Net::Pretrain(Pretrainer::new(&vs.root(), &cfg, ratio));
        Ok(Model {
            vs,
            cfg,
            net,
            plan: PlanCache::default(),
        })
    }

    /// Rebuilds a model from its config and weight bytes.
    pub fn load(
        cfg: NetConfig,
        pretrain_ratio: Option<f64>,
        bytes: &[u8],
        device: Device,
    ) -> Result<Model> {
        let mut m = match pretrain_ratio {
            Some(r) => Model::new_pretrainer(cfg, r, device)?,
            None => Model::new(cfg, device)?,
        };
        m.load_bytes(bytes)?;
        Ok(m)
    }

    /// Overwrites the weights with `bytes`, which must hold exactly this
    /// network's tensors (every name, each with its shape and type); anything
    /// else is a corrupted or mismatched model and leaves the weights untouched.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let loaded = Tensor::load_multi_from_stream(Cursor::new(bytes)).map_err(|e| {
            Error::Model(msg!(
                "The weights cannot be read ({reason}).",
                reason = torch_message(&e)
            ))
        })?;
        let vars = self.vs.variables();
        let mut pairs = Vec::with_capacity(vars.len());
        let mut seen = std::collections::HashSet::new();
        for (name, src) in loaded {
            let dst = match vars.get(&name) {
                Some(d) => d,
                None => {
                    return corrupt(msg!(
                    "The weights hold a tensor {.field {name}} that this network does not have.",
                    name = name
                ))
                }
            };
            if src.size() != dst.size() || src.kind() != dst.kind() {
                return corrupt(msg!(
                    "Tensor {.field {name}} has shape {got} in the weights but {want} in the network.",
                    name = name,
                    got = format!("{:?} ({:?})", src.size(), src.kind()),
                    want = format!("{:?} ({:?})", dst.size(), dst.kind())
                ));
            }
            if !seen.insert(name.clone()) {
                return corrupt(msg!(
                    "The weights hold tensor {.field {name}} twice.",
                    name = name
                ));
            }
            pairs.push((dst.shallow_clone(), src));
        }
        if let Some(missing) = vars.keys().find(|k| !seen.contains(*k)) {
            return corrupt(msg!(
                "The weights lack tensor {.field {name}} of this network.",
                name = missing
            ));
        }
        self.plan.clear();
        tch::no_grad(|| -> Result<()> {
            for (mut dst, src) in pairs {
                dst.f_copy_(&src.to_device(dst.device()))?;
            }
            Ok(())
        })
    }

    /// The tensors are written sorted by name (`VarStore::save_to_stream()`
    /// follows its HashMap's randomised order, so the same weights would give
    /// different bytes in every call) and from the CPU, so the bytes hold no
    /// device state.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut named: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.to_device(Device::Cpu)))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut buf = Vec::new();
        Tensor::save_multi_to_stream(&named, &mut buf)?;
        Ok(buf)
    }

    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).expect("config serialises")
    }

    /// True when every parameter and batch-norm statistic is finite.
    pub fn is_finite(&self) -> bool {
        tch::no_grad(|| {
            self.vs
                .variables()
                .values()
                .all(|t| t.isfinite().all().int64_value(&[]) != 0)
        })
    }

    pub fn n_parameters(&self) -> i64 {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    /// Copies the embedder and encoder weights (and BN statistics) of `other`
    /// into this model: fine-tuning from a pretrained model, or from a fit with
    /// the same predictors. Returns how many tensors were copied.
    pub fn copy_encoder_from(&mut self, other: &Model) -> Result<usize> {
        let src = other.vs.variables();
        let dst = self.vs.variables();
        let mut copied = 0;
        self.plan.clear();
        tch::no_grad(|| -> Result<()> {
            for (name, t) in dst.iter() {
                if !(name.starts_with("embedder.") || name.starts_with("encoder.")) {
                    continue;
                }
                match src.get(name) {
                    Some(s) if s.size() == t.size() => {
                        let mut t = t.shallow_clone();
                        t.f_copy_(&s.to_device(t.device()))?;
                        copied += 1;
                    }
                    _ => {
                        return invalid(msg!(
                            "Model dimensions don't match: {.field {name}} differs.",
                            name = name
                        ))
                    }
                }
            }
            Ok(())
        })?;
        Ok(copied)
    }

    pub fn supervised(&self) -> Result<&TabNet> {
        match &self.net {
            Net::Supervised(n) => Ok(n),
            Net::Pretrain(_) => invalid(msg!(
                "A pretrained model has no prediction head; fine-tune it with {.code tabnet_fit(..., tabnet_model = <pretrained>)}."
            )),
        }
    }

    /// The encoder's store of training-tape buffers (see `encoder::fused::TapeBuffers`).
    pub(crate) fn tape_buffers(&self) -> std::sync::Arc<crate::encoder::TapeBuffers> {
        self.net.embedder_encoder().1.tape_buffers.clone()
    }

    /// The inference plan of this model's current weights (folded at the
    /// first call after they changed, see [`PlanCache`]).
    pub(crate) fn eval_plan(&self) -> Arc<FoldedPlan> {
        let (embedder, encoder) = self.net.embedder_encoder();
        let head = match &self.net {
            Net::Supervised(n) => Some(&n.head),
            Net::Pretrain(_) => None,
        };
        let sources = EvalPlan::sources(encoder, head);
        self.plan.get(&sources, || {
            EvalPlan::new(embedder, encoder, head.map(|h| (h, &self.cfg)), true)
        })
    }

    /// The default encoder backend for this model's device ([`Backend::for_device`]).
    pub fn backend(&self) -> Backend {
        Backend::for_device(self.vs.device())
    }

    /// The loss of a batch: what to optimise, the task loss to report, and the
    /// encoder's pass (see [`BatchLoss::backward`]).
    pub fn batch_loss(
        &self,
        b: &Batch,
        train: bool,
        lambda_sparse: f64,
        backend: Backend,
    ) -> Result<BatchLoss> {
        let (task, m_loss, pass) = match &self.net {
            Net::Supervised(net) => {
                let y = match &b.y {
                    Some(y) => y,
                    None => return invalid(msg!("Training needs an outcome.")),
                };
                let (out, m_loss, pass) = net.forward(b, train, backend);
                let task = loss::batch_loss(&self.cfg, &out, y, b.w.as_ref());
                (task, m_loss, pass)
            }
            Net::Pretrain(p) => p.loss(b, train, backend),
        };
        Ok(BatchLoss {
            loss: &task - m_loss * lambda_sparse,
            task,
            pass,
        })
    }

    /// Prepares model-specific state that depends on the training data.
    pub fn prepare(&self, data: &Dataset) {
        if let Net::Pretrain(p) = &self.net {
            p.init_target_var(data);
        }
    }
}
