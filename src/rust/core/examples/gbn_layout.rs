//! Ghost BN forward+backward: contiguous chunks (current) vs an interleaved view
//! handed to libtorch's fused batch_norm (single thread).
use std::time::Instant;
use tabnet_core::ghost_bn::GhostBatchNorm;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) {
    for _ in 0..3 { f(); }
    let t = Instant::now();
    for _ in 0..reps { f(); }
    println!("{name}: {:.2} ms", t.elapsed().as_secs_f64() / reps as f64 * 1e3);
}

fn main() {
    let threads: i32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    tch::set_num_threads(threads);
    for &(b, c, vbs) in &[(16384i64, 100i64, 512i64), (1024, 32, 128), (16384, 28, 512)] {
        let vs = VarStore::new(Device::Cpu);
        let g = GhostBatchNorm::new(&vs.root(), c, vbs, 0.4);
        let x = Tensor::randn(&[b, c], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let gout = Tensor::randn(&[b, c], (Kind::Float, Device::Cpu));
        time(&format!("{b}x{c}/{vbs} current fwd+bwd"), 20, || {
            let y = g.forward_t(&x, true);
            (y * &gout).sum(Kind::Float).backward();
        });
        let k = b / vbs;
        time(&format!("{b}x{c}/{vbs} interleaved batch_norm fwd+bwd"), 20, || {
            let w = g.weight.repeat(&[k]);
            let bb = g.bias.repeat(&[k]);
            let y = x.view([vbs, k * c]).batch_norm(Some(&w), Some(&bb), None::<&Tensor>, None::<&Tensor>, true, 0.1, 1e-5, false).view([b, c]);
            (y * &gout).sum(Kind::Float).backward();
        });
        time(&format!("{b}x{c}/{vbs} interleaved native_batch_norm fwd only"), 20, || {
            let w = g.weight.repeat(&[k]);
            let bb = g.bias.repeat(&[k]);
            let _ = x.view([vbs, k * c]).native_batch_norm(Some(&w), Some(&bb), None::<&Tensor>, None::<&Tensor>, true, 0.1, 1e-5);
        });
        time(&format!("{b}x{c}/{vbs} current fwd only"), 20, || { let _ = g.forward_t(&x, true); });
    }
}

#[allow(dead_code)]
pub fn big_ops() {}
