//! Adam (Kingma & Ba), as `torch.optim.Adam` computes it (no weight decay, no
//! AMSGrad), with gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.
//!
//! One fused loop per parameter over raw memory on the CPU instead of libtorch's
//! ~10 kernels per parameter (a TabNet has ~60 parameter tensors, so at batch 1024
//! the optimiser was an eighth of a step). Other devices use tensor operations.
use crate::kernels;
use tch::{nn::VarStore, Kind, Tensor};

struct Slot {
    param: Tensor,
    m: Tensor,
    v: Tensor,
}

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    step: i64,
    slots: Vec<Slot>,
}

/// # Safety
/// As [`kernels::as_mut_slice`]: the optimiser's state and the parameters it
/// steps are used by nothing else during a step.
#[allow(clippy::mut_from_ref)] // see kernels::as_mut_slice
unsafe fn raw(t: &Tensor) -> Option<&mut [f32]> {
    // SAFETY: forwarded contract.
    unsafe { kernels::as_mut_slice(t) }
}

impl Adam {
    pub fn new(vs: &VarStore, lr: f64) -> Adam {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(_, p)| Slot {
                m: p.zeros_like().detach(),
                v: p.zeros_like().detach(),
                param: p,
            })
            .collect();
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            slots,
        }
    }

    /// Sets every existing gradient to zero (keeping it allocated).
    pub fn zero_grad(&self) {
        for s in &self.slots {
            let mut g = s.param.grad();
            if g.defined() {
                // SAFETY: see `raw`.
                match unsafe { raw(&g) } {
                    Some(g) => g.iter_mut().for_each(|v| *v = 0.0),
                    None => {
                        let _ = g.zero_();
                    }
                }
            }
        }
    }

    /// Scales the gradients so their global L2 norm is at most `max_norm`.
    pub fn clip_grad_norm(&self, max_norm: f64) {
        let grads: Vec<Tensor> = self
            .slots
            .iter()
            .map(|s| s.param.grad())
            .filter(|g| g.defined())
            .collect();
        let total = grads
            .iter()
            // SAFETY: see `raw`.
            .map(|g| match unsafe { raw(g) } {
                Some(v) => v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>(),
                None => g.square().sum(Kind::Double).double_value(&[]),
            })
            .sum::<f64>()
            .sqrt();
        let coef = max_norm / (total + 1e-6);
        if coef < 1.0 {
            tch::no_grad(|| {
                for g in &grads {
                    // SAFETY: see `raw`.
                    match unsafe { raw(g) } {
                        Some(v) => v.iter_mut().for_each(|x| *x *= coef as f32),
                        None => {
                            let mut g = g.shallow_clone();
                            let _ = g.g_mul_scalar_(coef);
                        }
                    }
                }
            });
        }
    }

    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let step_size = self.lr / bc1;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        tch::no_grad(|| {
            for s in &self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                // SAFETY: see `raw`; parameter, gradient and moments are four
                // distinct tensors.
                match unsafe { (raw(&s.param), raw(&g), raw(&s.m), raw(&s.v)) } {
                    (Some(p), Some(g), Some(m), Some(v)) => {
                        let (b1, b2, bc2s, ss, eps) = (
                            b1 as f32,
                            b2 as f32,
                            bc2.sqrt() as f32,
                            step_size as f32,
                            eps as f32,
                        );
                        for i in 0..p.len() {
                            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                            p[i] -= ss * m[i] / (v[i].sqrt() / bc2s + eps);
                        }
                    }
                    _ => {
                        let (mut m, mut v, mut p) = (
                            s.m.shallow_clone(),
                            s.v.shallow_clone(),
                            s.param.shallow_clone(),
                        );
                        let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                        let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
                        let denom = v.sqrt() / bc2.sqrt() + eps;
                        let _ = p.g_sub_(&(m / denom * step_size));
                    }
                }
            }
        });
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::OptimizerConfig, Device};

    /// Same trajectory as libtorch's own Adam, with and without clipping.
    #[test]
    fn matches_libtorch_adam() {
        for clip in [None, Some(0.05)] {
            tch::manual_seed(1);
            let vs_a = VarStore::new(Device::Cpu);
            let wa = vs_a.root().randn("w", &[7, 3], 0.0, 1.0);
            let vs_b = VarStore::new(Device::Cpu);
            let wb = vs_b.root().zeros("w", &[7, 3]);
            tch::no_grad(|| wb.shallow_clone().copy_(&wa));
            let x = Tensor::randn(&[20, 7], (Kind::Float, Device::Cpu));
            let mut ours = Adam::new(&vs_a, 0.05);
            let mut theirs = nn::Adam::default().build(&vs_b, 0.05).unwrap();
            for _ in 0..25 {
                ours.zero_grad();
                x.mm(&wa).tanh().square().sum(Kind::Float).backward();
                if let Some(c) = clip {
                    ours.clip_grad_norm(c);
                }
                ours.step();
                theirs.zero_grad();
                x.mm(&wb).tanh().square().sum(Kind::Float).backward();
                if let Some(c) = clip {
                    theirs.clip_grad_norm(c);
                }
                theirs.step();
            }
            let d = (&wa - &wb).abs().max().double_value(&[]);
            assert!(d < 1e-5, "weights differ by {d} (clip {clip:?})");
        }
    }
}
