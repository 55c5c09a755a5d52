//! Feature transformer: a block whose FC weights are shared by every transformer
//! of the encoder (batch norms are not), followed by a step-specific block.
use crate::config::Initialization;
use crate::glu::{GluBlock, GluLayer};
use crate::init;
use tch::nn::ModuleT;
use tch::{nn, Tensor};

/// The FC weights shared across steps: first D→2h, then h→2h.
pub fn shared_fcs(
    p: &nn::Path,
    input_dim: i64,
    width: i64,
    n_shared: usize,
    init: Initialization,
) -> Vec<Tensor> {
    (0..n_shared)
        .map(|i| {
            let fan_in = if i == 0 { input_dim } else { width };
            p.var(
                &format!("fc{i}"),
                &[2 * width, fan_in],
                init::glu_fc(init, fan_in, 2 * width),
            )
        })
        .collect()
}

/// What every GLU layer of a transformer shares: its ghost batch norm's
/// virtual batch size and momentum, and how its FC weights are drawn.
#[derive(Clone, Copy, Debug)]
pub struct LayerSettings {
    pub vbs: i64,
    pub momentum: f64,
    pub init: Initialization,
}

#[derive(Debug)]
pub struct FeatureTransformer {
    pub shared: Option<GluBlock>,
    pub specific: Option<GluBlock>,
}

impl FeatureTransformer {
    pub fn new(
        p: &nn::Path,
        shared_fcs: &[Tensor],
        input_dim: i64,
        width: i64,
        n_independent: usize,
        s: LayerSettings,
    ) -> Self {
        let LayerSettings {
            vbs,
            momentum,
            init,
        } = s;
        let shared = if shared_fcs.is_empty() {
            None
        } else {
            let sp = p / "shared";
            let layers = shared_fcs
                .iter()
                .enumerate()
                .map(|(i, w)| GluLayer::new(&(&sp / i), w.shallow_clone(), width, vbs, momentum))
                .collect();
            Some(GluBlock {
                layers,
                first: true,
            })
        };
        let specific = if n_independent == 0 {
            None
        } else {
            let ip = p / "specific";
            let first = shared.is_none();
            let layers = (0..n_independent)
                .map(|i| {
                    let fan_in = if i == 0 && first { input_dim } else { width };
                    let lp = &ip / i;
                    let fc = lp.var(
                        "fc",
                        &[2 * width, fan_in],
                        init::glu_fc(init, fan_in, 2 * width),
                    );
                    GluLayer::new(&lp, fc, width, vbs, momentum)
                })
                .collect();
            Some(GluBlock { layers, first })
        };
        FeatureTransformer { shared, specific }
    }
}

impl ModuleT for FeatureTransformer {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = match &self.shared {
            Some(b) => b.forward_t(x, train),
            None => x.shallow_clone(),
        };
        match &self.specific {
            Some(b) => b.forward_t(&h, train),
            None => h,
        }
    }
}
