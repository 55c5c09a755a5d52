//! Micro-timings of the building blocks (single thread).
use std::time::Instant;
use tabnet_core::ghost_bn::GhostBatchNorm;
use tabnet_core::mask;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) {
    for _ in 0..3 {
        f();
    }
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    println!(
        "{name}: {:.1} us",
        t.elapsed().as_secs_f64() / reps as f64 * 1e6
    );
}

fn main() {
    tch::set_num_threads(1);
    let vs = VarStore::new(Device::Cpu);
    let x = Tensor::randn(&[1024, 32], (Kind::Float, Device::Cpu));
    let gbn = GhostBatchNorm::new(&vs.root(), 32, 128, 0.02);
    time("gbn train 1024x32 vbs128", 200, || {
        let _ = gbn.forward_t(&x, true);
    });
    time("gbn eval", 200, || {
        let _ = gbn.forward_t(&x, false);
    });
    time("plain batch_norm train", 200, || {
        let _ = x.batch_norm(
            Some(&gbn.weight),
            Some(&gbn.bias),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.1,
            1e-5,
            false,
        );
    });
    let w = Tensor::randn(&[32, 16], (Kind::Float, Device::Cpu));
    let h = Tensor::randn(&[1024, 16], (Kind::Float, Device::Cpu));
    time("linear 1024x16 -> 32", 200, || {
        let _ = h.linear::<Tensor>(&w, None);
    });
    time("glu 1024x32", 200, || {
        let _ = x.glu(-1);
    });
    let z = Tensor::randn(&[1024, 10], (Kind::Float, Device::Cpu));
    time("sparsemax 1024x10", 200, || {
        let _ = mask::sparsemax(&z);
    });
    time("entmax 1024x10", 200, || {
        let _ = mask::entmax15(&z);
    });
    time("add 1024x32", 200, || {
        let _ = &x + &x;
    });
    time("sort 1024x10", 200, || {
        let _ = z.sort(-1, true);
    });
    let big = Tensor::randn(&[16384, 100], (Kind::Float, Device::Cpu));
    let g2 = GhostBatchNorm::new(&vs.root(), 100, 512, 0.4);
    time("gbn train 16384x100 vbs512", 20, || {
        let _ = g2.forward_t(&big, true);
    });
    time("plain batch_norm 16384x100", 20, || {
        let _ = big.batch_norm(
            Some(&g2.weight),
            Some(&g2.bias),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.1,
            1e-5,
            false,
        );
    });
    time("add 16384x100", 20, || {
        let _ = &big + &big;
    });
    let xv = big.view([32, 512, 100]);
    time("var_mean 16384x100 (32,512,100)", 20, || {
        let _ = xv.var_mean_dim(Some(&[1i64][..]), false, true);
    });
    let sc = Tensor::randn(&[32, 1, 100], (Kind::Float, Device::Cpu));
    time("addcmul broadcast", 20, || {
        let _ = sc.addcmul(&xv, &sc);
    });
    time("mean dim1", 20, || {
        let _ = xv.mean_dim(Some(&[1i64][..]), true, Kind::Float);
    });
    time("gbn eval 16384x100", 20, || {
        let _ = g2.forward_t(&big, false);
    });
    let zz = Tensor::randn(&[16384, 28], (Kind::Float, Device::Cpu));
    time("sparsemax 16384x28", 20, || {
        let _ = mask::sparsemax(&zz);
    });
}
