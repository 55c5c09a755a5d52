//! Fused CPU kernels for the hand-derived encoder pass (`encoder::fused`,
//! whose layers are built from them): ghost batch norm fused with GLU and the
//! residual, its backward, and the row-wise sparsemax / entmax-1.5 with their
//! backward. A group of virtual batches ([`Chunks::tasks`]) is one rayon task,
//! which the encoder pass runs through every layer in turn, instead of a dozen
//! full-batch passes of separate libtorch kernels per layer; each task's
//! matrix products run on the crate's own micro-kernels ([`crate::gemm`])
//! where the CPU has AVX2 or AVX-512, else on libtorch (BLAS).
//!
//! Virtual batches are cut exactly like pytorch-tabnet's `torch.chunk`: contiguous
//! runs of rows (the sizes come from the caller, see `ghost_bn::chunk_sizes`;
//! this module is a leaf and knows no network type), so each task streams through
//! memory the prefetcher can follow. (The autograd path interleaves its chunks to
//! reach libtorch's fused batch norm; batches are shuffled, so both are random
//! virtual batches of the same sizes.)
use tch::{Device, Kind, Tensor};

mod chunks;
mod folded;
mod mask_row;
#[cfg(all(target_arch = "x86_64", tabnet_avx512))]
mod sparsemax_avx512;
mod storage;
pub use chunks::Chunks;
#[cfg(test)]
pub(crate) use folded::glu_rows;
pub use folded::{
    affine_rows, entmax_rows, head_rows, sparsemax_rows, FoldedGlu, FoldedLinear,
    SPARSEMAX_MAX_GROUPS,
};
pub(crate) use mask_row::row_threshold;
pub use mask_row::{mask_row, mask_row_backward};
pub use storage::{columns_into, Strided};
pub(crate) use storage::{split_rows, values, values_mut, view};

fn is_contiguous(t: &Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    let mut expect = 1i64;
    for (s, st) in size.iter().zip(stride.iter()).rev() {
        if *s != 1 && *st != expect {
            return false;
        }
        expect *= *s;
    }
    true
}

/// True when `t` can be handled by these kernels (contiguous f32 on the CPU).
pub fn supported(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && is_contiguous(t)
}

/// The elements of a contiguous f32 CPU tensor (None for any other tensor).
/// (Inference, the optimiser and the running statistics use it; the fused
/// passes take their tensors' storage with [`values_mut`], from a `&mut`
/// handle.)
///
/// # Safety
/// A `Tensor` handle does not own its storage exclusively: the caller must be
/// the storage's only reader and writer while the slice lives (no other handle
/// or view of it is used meanwhile).
// The storage behind a `Tensor` is shared and mutable (like an `UnsafeCell`):
// a `&Tensor` is all any libtorch in-place operation needs, so the usual
// reasoning behind `mut_from_ref` does not apply; the function is `unsafe`
// and exclusive use is its caller's contract instead.
#[allow(clippy::mut_from_ref)]
pub(crate) unsafe fn as_mut_slice(t: &Tensor) -> Option<&mut [f32]> {
    // SAFETY: checked contiguous f32 CPU storage of numel() elements; exclusive
    // use is the caller's contract.
    supported(t)
        .then(|| unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel()) })
}

/// A fresh, uninitialised (rows, cols) f32 CPU tensor.
pub(crate) fn empty(rows: usize, cols: usize) -> Tensor {
    Tensor::empty(&[rows as i64, cols as i64], (Kind::Float, Device::Cpu))
}

/// Parallel tasks a batch is split into at most. Reductions over rows
/// (gradients, batch statistics) are summed per task and then over tasks in
/// task order, so the split must not follow the thread count: it is fixed by
/// the data's shape, and a seed gives bit-identical weights on 1, 2 or 8
/// threads. (More threads than this do not speed up one batch.)
pub const MAX_SPLIT: usize = 8;

/// The constants of [`exp_f32`] (shared with the GEMM epilogue's vector
/// sigmoid, `gemm::glu`, which repeats its operations in intrinsics).
pub mod exp_consts {
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// ln 2 = LN2_HI + LN2_LO (Cody–Waite split: n · LN2_HI is exact)
    pub const LN2_HI: f32 = 0.693_359_4;
    pub const LN2_LO: f32 = -2.121_944_4e-4;
    /// 1.5 · 2²³: adding it rounds to an integer
    pub const ROUND: f32 = 12_582_912.0;
    /// the polynomial's coefficients, highest degree first (Horner)
    #[allow(clippy::excessive_precision)]
    pub const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5e-1,
    ];
}

/// e^x in f32 (Cephes polynomial, ≤ 2 ulp), written so loops vectorise. Its
/// multiply-adds are explicit fused ones (`mul_add`: one rounding, in every
/// build: a CPU without FMA gets libm's correctly rounded `fmaf`), so the
/// AVX-512, AVX2 and generic builds give the same bits.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    use exp_consts::{LN2_HI, LN2_LO, LOG2E, P, ROUND};
    let x = x.clamp(-87.0, 88.0);
    // t's low mantissa bits hold round(x·log2 e) (|n| < 2^22): integer ops only
    let t = x.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = P[0];
    for &c in &P[1..] {
        p = p.mul_add(r, c);
    }
    let y = (p * r).mul_add(r, r) + 1.0;
    y * f32::from_bits(((ni + 127) as u32) << 23)
}

/// ln x in f32 for positive normal x (Cephes `logf`, ≤ 2 ulp away from 0),
/// branch-free so that loops vectorise; fused multiply-adds as in [`exp_f32`].
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn ln_f32(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits() as i32;
    // x = m · 2^e with m in [½, 1)
    let e = ((bits >> 23) & 0xff) - 126;
    let m = f32::from_bits(((bits & 0x007f_ffff) | 0x3f00_0000) as u32);
    // m in [√½, √2) after the shift, less 1
    let small = m < SQRT_HALF;
    let e = (e - i32::from(small)) as f32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let mut y = 7.037_683_629_2e-2f32;
    y = y.mul_add(m, -1.151_461_031_0e-1);
    y = y.mul_add(m, 1.167_699_874_0e-1);
    y = y.mul_add(m, -1.242_014_084_6e-1);
    y = y.mul_add(m, 1.424_932_278_7e-1);
    y = y.mul_add(m, -1.666_805_766_5e-1);
    y = y.mul_add(m, 2.000_071_476_5e-1);
    y = y.mul_add(m, -2.499_999_399_3e-1);
    y = y.mul_add(m, 3.333_333_117_4e-1);
    y = y * m * z;
    y = e.mul_add(-2.121_944_4e-4, y);
    y = z.mul_add(-0.5, y);
    e.mul_add(0.693_359_375, m + y)
}

#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// Defines a row function compiled three times, generic x86-64, AVX2+FMA and
/// AVX-512 (when the compiler has it, `cfg(tabnet_avx512)`), picking the widest
/// build the CPU runs (the loops are written with equal-length slices so LLVM
/// vectorises them). Every function is element-wise across a row (no
/// reduction across a row; sums over rows run in row order per column) and
/// fuses a·b + c only where it says so (`mul_add`, one rounding in every
/// build; Rust never contracts on its own), so the three builds give the same
/// results bit for bit. The block functions (`*_rows`) take whole blocks of
/// rows, one call per virtual batch: rows of the encoder are 8–128 values, too
/// short to pay a call, a dispatch and a scalar tail per row.
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $t:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[inline]
        $vis fn $name($($arg: $t),*) $(-> $ret)? {
            // row kernels take their rows and constants as arguments
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $t),*) $(-> $ret)? $body
            #[cfg(all(target_arch = "x86_64", tabnet_avx512))]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $t),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features just checked.
                    return unsafe { avx512($($arg),*) };
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $t),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features just checked.
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

/// The step glue (`encoder::fused::glue`) defines its row functions this way too.
pub(crate) use simd_fn;

simd_fn! {
    /// acc += x
    pub fn add_row(acc: &mut [f32], x: &[f32]) {
        let n = acc.len();
        let x = &x[..n];
        for j in 0..n {
            acc[j] += x[j];
        }
    }
}

simd_fn! {
    /// y += a · x
    pub fn axpy_row(y: &mut [f32], x: &[f32], a: f32) {
        let n = y.len();
        let x = &x[..n];
        for j in 0..n {
            y[j] += a * x[j];
        }
    }
}

simd_fn! {
    /// acc += each row of `block` (rows of acc.len() values), in row order
    pub fn col_sums(acc: &mut [f32], block: &[f32]) {
        let n = acc.len();
        for r in block.chunks_exact(n) {
            for j in 0..n {
                acc[j] += r[j];
            }
        }
    }
}

simd_fn! {
    /// acc += (x − mean)² for each row x of `block`, in row order
    pub fn col_sq_dev_sums(acc: &mut [f32], block: &[f32], mean: &[f32]) {
        let n = acc.len();
        let mean = &mean[..n];
        for r in block.chunks_exact(n) {
            for j in 0..n {
                let d = r[j] - mean[j];
                acc[j] = d.mul_add(d, acc[j]);
            }
        }
    }
}

simd_fn! {
    /// x ← (x − mean) · rstd for each row x of `block`
    pub fn normalise_rows(block: &mut [f32], mean: &[f32], rstd: &[f32]) {
        let n = mean.len();
        let rstd = &rstd[..n];
        for r in block.chunks_exact_mut(n) {
            for j in 0..n {
                r[j] = (r[j] - mean[j]) * rstd[j];
            }
        }
    }
}

simd_fn! {
    /// Ghost BN's normalisation fused with the GLU, for each row of the
    /// block `z` (rows of 2d): ẑ = (z − mean) · rstd in place (as the
    /// backward reads it), then the GLU of y = γ ẑ + β (first half ⊙
    /// σ(second half)) into `out` (rows of d); with a residual input `h`
    /// (non-empty, rows of d), out = (GLU + h) · √½. With mean 0 and rstd 1
    /// (eval mode, where γ and β carry the running statistics) z is unchanged.
    pub fn bn_glu_rows(z: &mut [f32], mean: &[f32], rstd: &[f32], gamma: &[f32], beta: &[f32], h: &[f32], out: &mut [f32]) {
        let d = gamma.len() / 2;
        let (m1, m2) = (&mean[..d], &mean[d..2 * d]);
        let (r1, r2) = (&rstd[..d], &rstd[d..2 * d]);
        let (g1, g2) = (&gamma[..d], &gamma[d..2 * d]);
        let (b1, b2) = (&beta[..d], &beta[d..2 * d]);
        let residual = !h.is_empty();
        for (i, (zr, o)) in z.chunks_exact_mut(2 * d).zip(out.chunks_exact_mut(d)).enumerate() {
            let (z1, z2) = zr.split_at_mut(d);
            let (z1, z2, o) = (&mut z1[..d], &mut z2[..d], &mut o[..d]);
            for j in 0..d {
                let a = (z1[j] - m1[j]) * r1[j];
                let b = (z2[j] - m2[j]) * r2[j];
                z1[j] = a;
                z2[j] = b;
                o[j] = g1[j].mul_add(a, b1[j]) * sigmoid_f32(g2[j].mul_add(b, b2[j]));
            }
            if residual {
                let hr = &h[i * d..(i + 1) * d];
                for j in 0..d {
                    o[j] = (o[j] + hr[j]) * std::f32::consts::FRAC_1_SQRT_2;
                }
            }
        }
    }
}

simd_fn! {
    /// ∂L/∂y of [`bn_glu_rows`] (y = γ ẑ + β) for each row of the block, from
    /// ∂L/∂out `go` (rows of d) times `scale`, into `gy` (rows of 2d); adds
    /// Σ gy and Σ gy ẑ per channel into `sum_g` and `sum_gz` (in row order,
    /// as [`bn_grad_sums_rows`]).
    #[allow(clippy::too_many_arguments)]
    pub fn glu_grad_rows(zhat: &[f32], gamma: &[f32], beta: &[f32], go: &[f32], scale: f32, gy: &mut [f32], sum_g: &mut [f32], sum_gz: &mut [f32]) {
        let d = gamma.len() / 2;
        let (g1, g2) = (&gamma[..d], &gamma[d..2 * d]);
        let (b1, b2) = (&beta[..d], &beta[d..2 * d]);
        let (sg1, sg2) = sum_g.split_at_mut(d);
        let (sz1, sz2) = sum_gz.split_at_mut(d);
        let (sg1, sg2, sz1, sz2) = (&mut sg1[..d], &mut sg2[..d], &mut sz1[..d], &mut sz2[..d]);
        for ((z, go), gy) in zhat.chunks_exact(2 * d).zip(go.chunks_exact(d)).zip(gy.chunks_exact_mut(2 * d)) {
            let (z1, z2) = (&z[..d], &z[d..2 * d]);
            let (gy1, gy2) = gy.split_at_mut(d);
            let (gy1, gy2, go) = (&mut gy1[..d], &mut gy2[..d], &go[..d]);
            for j in 0..d {
                let y1 = g1[j].mul_add(z1[j], b1[j]);
                let s = sigmoid_f32(g2[j].mul_add(z2[j], b2[j]));
                let g = go[j] * scale;
                let (a, b) = (g * s, g * y1 * s * (1.0 - s));
                gy1[j] = a;
                gy2[j] = b;
                sg1[j] += a;
                sz1[j] = a.mul_add(z1[j], sz1[j]);
                sg2[j] += b;
                sz2[j] = b.mul_add(z2[j], sz2[j]);
            }
        }
    }
}

simd_fn! {
    /// sum_g += gy, sum_gz += gy · ẑ over the rows of the blocks, in row order
    pub fn bn_grad_sums_rows(gy: &[f32], zhat: &[f32], sum_g: &mut [f32], sum_gz: &mut [f32]) {
        let n = sum_g.len();
        let sum_gz = &mut sum_gz[..n];
        for (g, z) in gy.chunks_exact(n).zip(zhat.chunks_exact(n)) {
            for j in 0..n {
                sum_g[j] += g[j];
                sum_gz[j] = g[j].mul_add(z[j], sum_gz[j]);
            }
        }
    }
}

simd_fn! {
    /// d ← a · (d − mg − ẑ · mgz) for each row: ghost BN's input gradient from
    /// ∂L/∂y in the block `d`
    pub fn bn_grad_rows(d: &mut [f32], zhat: &[f32], a: &[f32], mg: &[f32], mgz: &[f32]) {
        let n = a.len();
        let (mg, mgz) = (&mg[..n], &mgz[..n]);
        for (dr, z) in d.chunks_exact_mut(n).zip(zhat.chunks_exact(n)) {
            for j in 0..n {
                dr[j] = a[j] * z[j].mul_add(-mgz[j], dr[j] - mg[j]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            let (a, b) = (exp_f32(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(exp_f32(-200.0) >= 0.0 && exp_f32(-200.0) < 1e-37);
        assert!((sigmoid_f32(0.0) - 0.5).abs() < 1e-7);
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 8.0 - 4.0
            })
            .collect()
    }

    /// The fused normalisation + GLU + residual, and its backward with the
    /// batch norm's sums, against their definitions in f64. Tolerance: each
    /// value's error is a few float32 units u = 2⁻²⁴ times its *scale*, the
    /// same expression evaluated on magnitudes, plus how far the rounding of
    /// the logits y = γ ẑ + β moves σ (running-error analysis; σ(1 − σ) is the
    /// slope). TOL = 1e-5 ≈ 170 u covers the dozen roundings of the exp
    /// polynomial and the division; a missing or swapped term moves a value by
    /// ≥ 1e-2 of its scale on these data.
    #[test]
    fn glu_kernels_match_their_definitions() {
        const TOL: f64 = 1e-5;
        let (rows, d) = (5, 26);
        let (mean, rstd) = (data(2 * d, 11), data(2 * d, 12));
        let rstd: Vec<f32> = rstd.iter().map(|v| v.abs() * 0.5 + 0.1).collect();
        let (gamma, beta) = (data(2 * d, 13), data(2 * d, 14));
        let z0 = data(rows * 2 * d, 15);
        let h = data(rows * d, 16);
        let mut z = z0.clone();
        let mut out = vec![0f32; rows * d];
        bn_glu_rows(&mut z, &mean, &rstd, &gamma, &beta, &h, &mut out);
        let go = data(rows * d, 17);
        let mut gy = vec![0f32; rows * 2 * d];
        let (mut sg, mut sz) = (vec![0f32; 2 * d], vec![0f32; 2 * d]);
        glu_grad_rows(&z, &gamma, &beta, &go, 0.7, &mut gy, &mut sg, &mut sz);
        let check = |what: &str, got: f32, want: f64, scale: f64| {
            assert!(
                (got as f64 - want).abs() <= TOL * scale.max(1e-30),
                "{what}: {got} vs {want} (scale {scale})"
            )
        };
        // per channel: Σ of the terms, and Σ of their error scales
        let mut sums = vec![(0f64, 0f64, 0f64, 0f64); 2 * d];
        for r in 0..rows {
            let zh = |c: usize| (z0[r * 2 * d + c] as f64 - mean[c] as f64) * rstd[c] as f64;
            for j in 0..d {
                let (k1, k2) = (j, d + j);
                let y1 = gamma[k1] as f64 * zh(k1) + beta[k1] as f64;
                let y2 = gamma[k2] as f64 * zh(k2) + beta[k2] as f64;
                let (m1, m2) = (
                    (gamma[k1] as f64 * zh(k1)).abs() + (beta[k1] as f64).abs(),
                    (gamma[k2] as f64 * zh(k2)).abs() + (beta[k2] as f64).abs(),
                );
                let s = 1.0 / (1.0 + (-y2).exp());
                let slope = s * (1.0 - s);
                let hv = h[r * d + j] as f64;
                let half = 0.5f64.sqrt();
                check("ẑ", z[r * 2 * d + k1], zh(k1), zh(k1).abs());
                check("ẑ", z[r * 2 * d + k2], zh(k2), zh(k2).abs());
                let want = (y1 * s + hv) * half;
                check(
                    "out",
                    out[r * d + j],
                    want,
                    (s * m1 + y1.abs() * slope * m2 + hv.abs()) * half,
                );
                // ∂/∂y1 = g σ, ∂/∂y2 = g y1 σ (1 − σ), g = go · scale
                let g = go[r * d + j] as f64 * 0.7;
                let (a, b) = (g * s, g * y1 * slope);
                let sa = g.abs() * (s + slope * m2);
                let sb = g.abs()
                    * (slope * m1 + s * y1.abs() + y1.abs() * slope * (1.0 - 2.0 * s).abs() * m2);
                check("∂y1", gy[r * 2 * d + k1], a, sa);
                check("∂y2", gy[r * 2 * d + k2], b, sb);
                for (k, t, st) in [(k1, a, sa), (k2, b, sb)] {
                    let e = &mut sums[k];
                    e.0 += t;
                    e.1 += st;
                    e.2 += t * zh(k);
                    e.3 += st * zh(k).abs();
                }
            }
        }
        for (c, &(g, sg_scale, gz, sz_scale)) in sums.iter().enumerate() {
            check("Σ gy", sg[c], g, sg_scale);
            check("Σ gy ẑ", sz[c], gz, sz_scale);
        }
    }

    #[test]
    fn ln_matches_libm() {
        // the glue takes ln(M + ε) for M in [0, 1], ε = 1e-15; also wider
        let mut worst = 0f32;
        let mut x = 1e-16f32;
        while x < 1e6 {
            let (a, b) = (ln_f32(x), x.ln());
            // a few ulp of the result (relative to max(|ln x|, 1): near x = 1,
            // ln x → 0 and the bound is absolute, as for any f32 logarithm)
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
            x *= 1.000_37;
        }
        assert!(worst < 2.5e-7, "error {worst}");
        for x in [1.0f32, 0.5, 2.0, std::f32::consts::E, 1e-15] {
            assert!(
                (ln_f32(x) - x.ln()).abs() <= 2.0 * f32::EPSILON * x.ln().abs().max(1.0),
                "{x}"
            );
        }
    }
}
