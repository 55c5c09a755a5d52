//! Forward-only micro-timings of TabNet-S building blocks at batch 16384 (single thread).
use std::time::Instant;
use tabnet_core::ghost_bn::GhostBatchNorm;
use tabnet_core::mask;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) {
    for _ in 0..2 { f(); }
    let t = Instant::now();
    for _ in 0..reps { f(); }
    println!("{name}: {:.2} ms", t.elapsed().as_secs_f64() / reps as f64 * 1e3);
}

fn main() {
    tch::set_num_threads(1);
    let vs = VarStore::new(Device::Cpu);
    let b = 16384i64;
    let x28 = Tensor::randn(&[b, 28], (Kind::Float, Device::Cpu));
    let h50 = Tensor::randn(&[b, 50], (Kind::Float, Device::Cpu));
    let h100 = Tensor::randn(&[b, 100], (Kind::Float, Device::Cpu));
    let w1 = Tensor::randn(&[100, 28], (Kind::Float, Device::Cpu));
    let w2 = Tensor::randn(&[100, 50], (Kind::Float, Device::Cpu));
    let wa = Tensor::randn(&[28, 26], (Kind::Float, Device::Cpu));
    let a26 = Tensor::randn(&[b, 26], (Kind::Float, Device::Cpu));
    let g = GhostBatchNorm::new(&vs.root(), 100, 512, 0.4);
    time("linear 28->100", 10, || { let _ = x28.linear::<Tensor>(&w1, None); });
    time("linear 50->100", 10, || { let _ = h50.linear::<Tensor>(&w2, None); });
    time("mm 50->100 (tr)", 10, || { let _ = h50.mm(&w2.tr()); });
    time("linear 26->28", 10, || { let _ = a26.linear::<Tensor>(&wa, None); });
    time("gbn 100", 10, || { let _ = g.forward_t(&h100, true); });
    time("glu 100", 10, || { let _ = h100.glu(-1); });
    time("add+scale 50", 10, || { let _ = (&h50 + &h50) * 0.7; });
    time("sparsemax 28", 10, || { let _ = mask::sparsemax(&x28); });
    time("entmax 28", 10, || { let _ = mask::entmax15(&x28); });
    time("relu 24", 10, || { let _ = h50.narrow(1, 0, 24).relu(); });
}
