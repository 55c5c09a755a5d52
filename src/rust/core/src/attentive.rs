//! Attentive transformer: M = mask(prior ⊙ GBN(FC(a))) over the feature groups.
use crate::config::{Initialization, MaskType};
use crate::ghost_bn::GhostBatchNorm;
use crate::{init, mask};
use tch::nn::ModuleT;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct AttentiveTransformer {
    pub fc: Tensor,
    pub bn: GhostBatchNorm,
    pub mask: MaskType,
}

impl AttentiveTransformer {
    pub fn new(
        p: &nn::Path,
        n_a: i64,
        n_groups: i64,
        vbs: i64,
        momentum: f64,
        mask: MaskType,
        init: Initialization,
    ) -> Self {
        AttentiveTransformer {
            fc: p.var(
                "fc",
                &[n_groups, n_a],
                init::non_glu_fc(init, n_a, n_groups),
            ),
            bn: GhostBatchNorm::new(&(p / "bn"), n_groups, vbs, momentum),
            mask,
        }
    }

    /// The prior multiplies the logits before normalisation (paper eq. for M[i]).
    pub fn forward_t(&self, prior: &Tensor, a: &Tensor, train: bool) -> Tensor {
        let logits = self
            .bn
            .forward_t(&a.linear::<Tensor>(&self.fc, None), train)
            * prior;
        mask::apply(self.mask, &logits)
    }
}
