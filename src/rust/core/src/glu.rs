//! GLU layer (bias-free FC → ghost BN → GLU) and GLU block with √0.5 residuals.
use crate::ghost_bn::GhostBatchNorm;
use tch::nn::ModuleT;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct GluLayer {
    /// FC weight (2·out × in); may be shared with other transformers.
    pub fc: Tensor,
    pub bn: GhostBatchNorm,
}

impl GluLayer {
    pub fn new(p: &nn::Path, fc: Tensor, out: i64, vbs: i64, momentum: f64) -> Self {
        GluLayer {
            fc,
            bn: GhostBatchNorm::new(&(p / "bn"), 2 * out, vbs, momentum),
        }
    }
}

impl ModuleT for GluLayer {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn
            .forward_t(&x.linear::<Tensor>(&self.fc, None), train)
            .glu(-1)
    }
}

/// A stack of GLU layers; every layer but the first of a `first` block adds its
/// input back and scales by √0.5.
#[derive(Debug)]
pub struct GluBlock {
    pub layers: Vec<GluLayer>,
    pub first: bool,
}

impl ModuleT for GluBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let scale = 0.5f64.sqrt();
        let mut h = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            if i == 0 && self.first {
                h = layer.forward_t(&h, train);
            } else {
                h = (&h + layer.forward_t(&h, train)) * scale;
            }
        }
        h
    }
}
