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
use tch::{Kind, Tensor};

/// float32's unit roundoff, 2⁻²⁴.
pub(super) const U: f64 = f32::EPSILON as f64 / 2.0;

/// [`crate::ghost_bn::interleaved_order`] as an index tensor.
pub(super) fn interleaving(rows: usize, vbs: usize) -> Tensor {
    Tensor::of_slice(&crate::ghost_bn::interleaved_order(rows, vbs))
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
