//! Sparse attention normalisers over the last dimension: sparsemax
//! (Martins & Astudillo 2016) and entmax-1.5 (Peters et al. 2019).
//!
//! The threshold τ and the support are found without autograd (sort + cumsum);
//! τ is then re-expressed as a differentiable closed form over the detached
//! support, so autograd yields exactly the published Jacobians:
//! sparsemax `J = diag(s) - s sᵀ/|S|`, entmax-1.5 `J = diag(√p) - √p √pᵀ/Σ√p`.
//!
//! On the CPU the support is found by a per-row sort in Rust (rayon over row
//! blocks, straight on the tensor's memory): libtorch 1.13's `sort` over many
//! short rows costs far more than the rest of the step. Elsewhere (CUDA) the
//! support comes from libtorch's sort, as it does everywhere while a network
//! is traced for export ([`traceable`]): a support computed in Rust would be
//! frozen into the traced graph as a constant of the tracing example.
use crate::config::MaskType;
use crate::kernels::row_threshold;
use rayon::prelude::*;
use std::cell::Cell;
use tch::{Device, Kind, Tensor};

pub fn apply(mask: MaskType, z: &Tensor) -> Tensor {
    match mask {
        MaskType::Sparsemax => sparsemax(z),
        MaskType::Entmax => entmax15(z),
    }
}

fn ranks(z: &Tensor) -> Tensor {
    let g = *z.size().last().expect("mask input needs a last dimension");
    Tensor::arange_start(1, g + 1, (z.kind(), z.device()))
}

/// Euclidean projection of each row onto the probability simplex.
pub fn sparsemax(z: &Tensor) -> Tensor {
    let z = z - z.amax(&[-1], true).detach();
    let s = match host_support(&z, false) {
        Some(s) => s,
        None => sparsemax_support_torch(&z),
    };
    let k = s.sum_dim_intlist(Some(&[-1i64][..]), true, z.kind());
    let tau = ((&z * &s).sum_dim_intlist(Some(&[-1i64][..]), true, z.kind()) - 1.0) / k;
    (z - tau).clamp_min(0.0)
}

/// Support of sparsemax from libtorch's sort (any device).
pub fn sparsemax_support_torch(z: &Tensor) -> Tensor {
    let tau = tch::no_grad(|| {
        let (zs, _) = z.sort(-1, true);
        let cs = zs.cumsum(-1, z.kind());
        let k = ranks(z);
        let support = (&k * &zs).gt_tensor(&(&cs - 1.0));
        let kstar = support.sum_dim_intlist(Some(&[-1i64][..]), true, Kind::Int64);
        (cs.gather(-1, &(kstar.shallow_clone() - 1), false) - 1.0) / kstar.to_kind(z.kind())
    });
    z.gt_tensor(&tau).to_kind(z.kind())
}

/// Entmax with α = 1.5: p = [z/2 - τ]₊² with Σp = 1.
pub fn entmax15(z: &Tensor) -> Tensor {
    let x = (z - z.amax(&[-1], true).detach()) / 2.0;
    let s = match host_support(&x, true) {
        Some(s) => s,
        None => entmax_support_torch(&x),
    };
    let k = s.sum_dim_intlist(Some(&[-1i64][..]), true, x.kind());
    let xs = &x * &s;
    let mu = xs.sum_dim_intlist(Some(&[-1i64][..]), true, x.kind()) / &k;
    let mu2 = (&xs * &x).sum_dim_intlist(Some(&[-1i64][..]), true, x.kind()) / &k;
    let delta = (1.0f64 - &k * (mu2 - mu.square())) / &k;
    let tau = mu - delta.clamp_min(1e-12).sqrt();
    (x - tau).clamp_min(0.0).square()
}

/// Support of entmax-1.5 (on x = z/2) from libtorch's sort (any device).
pub fn entmax_support_torch(x: &Tensor) -> Tensor {
    let tau = tch::no_grad(|| {
        let (xs, _) = x.sort(-1, true);
        let k = ranks(x);
        let mean = xs.cumsum(-1, x.kind()) / &k;
        let mean_sq = xs.square().cumsum(-1, x.kind()) / &k;
        let ss = &k * (mean_sq - mean.square());
        let delta = (1.0f64 - ss) / &k;
        let tau = &mean - delta.clamp_min(0.0).sqrt();
        let support = tau
            .le_tensor(&xs)
            .sum_dim_intlist(Some(&[-1i64][..]), true, Kind::Int64);
        tau.gather(-1, &(support - 1), false)
    });
    x.gt_tensor(&tau).to_kind(x.kind())
}

thread_local! {
    /// True while `traceable` runs on this thread.
    static TRACEABLE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the supports found by libtorch ops only (sort, cumsum,
/// gather, comparisons), which a TorchScript trace records for any input.
/// The Rust per-row sort is invisible to the tracer: its result would become
/// a constant, the support of the tracing example's rows.
pub(crate) fn traceable<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            TRACEABLE.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(TRACEABLE.with(|t| t.replace(true)));
    f()
}

/// The 0/1 support of each row computed in Rust on a CPU tensor (None on
/// other devices or kinds, and inside [`traceable`]).
fn host_support(z: &Tensor, entmax: bool) -> Option<Tensor> {
    if z.device() != Device::Cpu || z.dim() != 2 || TRACEABLE.with(|t| t.get()) {
        return None;
    }
    let size = z.size();
    let (rows, g) = (size[0] as usize, size[1] as usize);
    let z = z.detach().contiguous();
    let out = Tensor::empty(&[rows as i64, g as i64], (z.kind(), Device::Cpu));
    match z.kind() {
        Kind::Float => fill_support::<f32>(&z, &out, rows, g, entmax),
        Kind::Double => fill_support::<f64>(&z, &out, rows, g, entmax),
        _ => return None,
    }
    Some(out)
}

trait Real: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_bool(b: bool) -> Self;
}
impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_bool(b: bool) -> Self {
        b as u8 as f32
    }
}
impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_bool(b: bool) -> Self {
        b as u8 as f64
    }
}

fn fill_support<T: Real>(z: &Tensor, out: &Tensor, rows: usize, g: usize, entmax: bool) {
    if rows == 0 || g == 0 {
        return;
    }
    // SAFETY: both tensors are contiguous CPU tensors of rows·g elements of T;
    // `out` is fresh and only written here.
    let src = unsafe { std::slice::from_raw_parts(z.data_ptr() as *const T, rows * g) };
    // SAFETY: as above; `dst` does not overlap `src` (a different tensor).
    let dst = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut T, rows * g) };
    const BLOCK: usize = 1024;
    // on the kernels' pool (fork-safe, see `crate::runtime`)
    crate::runtime::with_pool(|| {
        dst.par_chunks_mut(BLOCK * g)
            .zip(src.par_chunks(BLOCK * g))
            .for_each(|(d, s)| {
                let mut buf = vec![0.0f64; g];
                for (drow, srow) in d.chunks_mut(g).zip(s.chunks(g)) {
                    for (b, v) in buf.iter_mut().zip(srow) {
                        *b = v.to_f64();
                    }
                    buf.sort_unstable_by(|a, b| {
                        b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal)
                    });
                    let tau = row_threshold(&buf, entmax);
                    for (o, v) in drow.iter_mut().zip(srow) {
                        *o = T::from_bool(v.to_f64() > tau);
                    }
                }
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Tensor {
        crate::test_data::normal(&[64, 9], 7) * 2.0
    }

    fn check_simplex(p: &Tensor) {
        let sums = p.sum_dim_intlist(Some(&[-1i64][..]), false, Kind::Double);
        let max_dev = (sums - 1.0).abs().max().double_value(&[]);
        assert!(
            max_dev < 1e-10,
            "rows must sum to 1, max deviation {max_dev}"
        );
        assert!(p.min().double_value(&[]) >= 0.0);
    }

    #[test]
    fn sparsemax_rows_are_sparse_distributions() {
        let p = sparsemax(&rows());
        check_simplex(&p);
        let zeros = p.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(
            zeros > 64,
            "sparsemax should zero out many entries, got {zeros}"
        );
        // a dominant entry takes all the mass
        let one = sparsemax(&Tensor::of_slice(&[10.0f64, 0.0, -1.0]).view([1, 3]));
        assert_eq!(Vec::<f64>::from(&one.view([-1])), vec![1.0, 0.0, 0.0]);
        // equal logits give the uniform distribution
        let u = sparsemax(&Tensor::zeros(&[1, 4], (Kind::Double, tch::Device::Cpu)));
        assert!(Vec::<f64>::from(&u.view([-1]))
            .iter()
            .all(|v| (v - 0.25).abs() < 1e-12));
    }

    #[test]
    fn sparsemax_matches_the_projection_definition() {
        // p = argmin ||p - z||² on the simplex  <=>  p_i = max(z_i - τ, 0), Σp = 1
        let z = Tensor::of_slice(&[0.3f64, 1.2, -0.5, 1.0]).view([1, 4]);
        let p = Vec::<f64>::from(&sparsemax(&z).view([-1]));
        // support {1.2, 1.0}: τ = (2.2 - 1)/2 = 0.6
        let want = [0.0, 0.6, 0.0, 0.4];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn entmax_rows_are_sparse_distributions() {
        let p = entmax15(&rows());
        check_simplex(&p);
        let zeros = p.eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(zeros > 0, "entmax-1.5 should produce exact zeros");
        // entmax is denser than sparsemax on the same logits
        let zs = sparsemax(&rows()).eq(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(zeros < zs);
        // Σ (x - τ)₊² = 1 characterisation
        let z = Tensor::of_slice(&[0.5f64, 0.1, -2.0, 0.3]).view([1, 4]);
        let p = entmax15(&z);
        check_simplex(&p);
    }

    /// Compares the autograd Jacobian-vector product with central finite differences.
    fn check_gradient(f: fn(&Tensor) -> Tensor) {
        let z0 = rows();
        let g = Tensor::randn(&z0.size(), (Kind::Double, tch::Device::Cpu));
        let z = z0.copy().set_requires_grad(true);
        let out = (f(&z) * &g).sum(Kind::Double);
        out.backward();
        let analytic = z.grad();
        let h = 1e-6;
        let mut max_err = 0.0f64;
        for r in 0..8 {
            for c in 0..9 {
                let mut zp = z0.copy();
                let mut zm = z0.copy();
                let _ = zp.get(r).get(c).f_add_(&Tensor::from(h)).unwrap();
                let _ = zm.get(r).get(c).f_sub_(&Tensor::from(h)).unwrap();
                let fp = (f(&zp) * &g).sum(Kind::Double).double_value(&[]);
                let fm = (f(&zm) * &g).sum(Kind::Double).double_value(&[]);
                let numeric = (fp - fm) / (2.0 * h);
                let a = analytic.double_value(&[r, c]);
                max_err = max_err.max((numeric - a).abs());
                let _ = (&mut zp, &mut zm);
            }
        }
        assert!(max_err < 1e-6, "gradient mismatch {max_err}");
    }

    #[test]
    fn sparsemax_gradient_matches_finite_differences() {
        check_gradient(sparsemax);
    }

    #[test]
    fn entmax_gradient_matches_finite_differences() {
        check_gradient(entmax15);
    }

    #[test]
    fn host_and_libtorch_supports_agree() {
        for kind in [Kind::Float, Kind::Double] {
            let z = rows().to_kind(kind) * 3.0;
            let z = &z - z.amax(&[-1], true);
            let host = host_support(&z, false).unwrap();
            assert!(
                host.equal(&sparsemax_support_torch(&z)),
                "sparsemax support, {kind:?}"
            );
            let x = &z / 2.0;
            let host = host_support(&x, true).unwrap();
            assert!(
                host.equal(&entmax_support_torch(&x)),
                "entmax support, {kind:?}"
            );
        }
    }

    #[test]
    fn sparsemax_gradient_is_the_published_jacobian() {
        // grad_i = g_i - mean_{j in S} g_j on the support, 0 elsewhere
        let z = Tensor::of_slice(&[0.3f64, 1.2, -0.5, 1.0])
            .view([1, 4])
            .set_requires_grad(true);
        let g = Tensor::of_slice(&[1.0f64, 2.0, 3.0, 5.0]).view([1, 4]);
        (sparsemax(&z) * &g).sum(Kind::Double).backward();
        let got = Vec::<f64>::from(&z.grad().view([-1]));
        let want = [0.0, 2.0 - 3.5, 0.0, 5.0 - 3.5];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{got:?}");
        }
    }
}
