//! What the per-layer tests share: each fused layer is run on one batch and
//! compared with its tch reference twin (the same parameters) and autograd:
//! forward values, running statistics and every gradient.
//!
//! Tolerances come from float32 rounding. Each compared value is a sum of at
//! most `n` rounded terms (a product's fan-in, a batch norm's rows, a weight
//! gradient's rows; the longest chain that reaches it), computed in a
//! different order on each side: the difference of two such sums is
//! ≤ 2 γ_n Σ|terms| in the worst case, and about u √n · scale for rounding
//! errors of random sign (u = 2⁻²⁴). The few O(1)-conditioned operations
//! around the sums (normalisation, σ, the GLU, a residual) add a constant
//! factor. So each check is
//!   |fused − reference|_∞ ≤ k · u · √n · scale,  scale = |reference|_∞,
//! with `k` stated beside it (a few times above the seen errors, which each
//! test prints in units of u √n scale); a wrong or missing term moves a value
//! by ≥ 1e-2 of its scale, tens of thousands of times the tolerance.
use crate::ghost_bn::chunk_sizes;
use tch::{Kind, Tensor};

/// float32's unit roundoff, 2⁻²⁴.
pub(super) const U: f64 = f32::EPSILON as f64 / 2.0;

/// The row order under which the reference ghost BN's interleaved virtual
/// batches (chunk i = rows i, i + k, …) are the fused pass's contiguous ones:
/// feed the reference `x.index_select(0, p)` and compare it with the fused
/// rows `index_select(0, p)`.
pub(super) fn interleaving(rows: usize, vbs: usize) -> Tensor {
    let sizes = chunk_sizes(rows as i64, vbs as i64);
    let c = sizes[0] as usize;
    let k = sizes.iter().take_while(|&&s| s as usize == c).count();
    let mut p = vec![0i64; rows];
    for i in 0..k {
        for j in 0..c {
            p[i + j * k] = (i * c + j) as i64;
        }
    }
    for (r, slot) in p.iter_mut().enumerate().skip(k * c) {
        *slot = r as i64;
    }
    Tensor::of_slice(&p)
}

/// Asserts |got − want|_∞ ≤ k · u · √n · |want|_∞ (see the module docs) and
/// prints the error in units of u √n |want|_∞.
pub(super) fn close(what: &str, got: &Tensor, want: &Tensor, n: usize, k: f64) {
    assert_eq!(got.size(), want.size(), "{what}: shapes");
    let (got, want) = (got.to_kind(Kind::Double), want.to_kind(Kind::Double));
    let err = (&got - &want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    let unit = U * (n as f64).sqrt() * scale;
    println!(
        "{what}: error {:.2} u√n·scale (n = {n}, bound {k})",
        err / unit
    );
    assert!(
        err <= k * unit,
        "{what}: differs by {err:e}, more than {k} u √{n} · {scale:e}"
    );
}

/// A float32 (rows, cols) matrix of standard normal draws with columns of
/// different spreads and offsets (seeded, see `crate::test_data`).
pub(super) fn input(rows: usize, cols: usize, seed: u64) -> Tensor {
    let z = crate::test_data::normal(&[rows as i64, cols as i64], seed);
    let scale: Vec<f64> = (0..cols).map(|j| 0.5 + (j % 5) as f64 * 0.6).collect();
    let shift: Vec<f64> = (0..cols).map(|j| (j % 3) as f64 - 1.0).collect();
    (z * Tensor::of_slice(&scale) + Tensor::of_slice(&shift))
        .to_kind(Kind::Float)
        .contiguous()
}
