//! Eval-mode layers with their batch norm folded into the product: with the
//! running statistics a batch norm is the affine map y = s ⊙ z + t (s = γ/√(σ² + ε),
//! t = β − μ s), so y = x (diag(s) W)ᵀ + t is one product whose chains start
//! from the bias ([`crate::gemm::Packed::with_bias`]). Folded once per model
//! (the inference plan caches it), not per call or per batch. Also the
//! element-wise kernels of the eval pass on blocks of rows.
use super::{exp_f32, sigmoid_f32, simd_fn};
use crate::gemm::{self, GluPacked, Kernel, Mat, Packed};
use tch::{Device, Kind, Tensor};

/// y = x wᵀ + b with w's rows scaled by the batch norm (see the module docs),
/// on one task's rows at a time.
pub struct FoldedLinear {
    pub n_in: usize,
    pub n_out: usize,
    /// (n_in, n_out) row-major: the folded wᵀ (the BLAS path's operand)
    wt: Vec<f32>,
    bias: Vec<f32>,
    /// the micro-kernel and the folded wᵀ packed with its bias
    micro: Option<(Kernel, Packed)>,
}

impl FoldedLinear {
    /// From w (n_out, n_in) row-major and the batch norm's (scale, shift) per
    /// output: w'[j, i] = scale[j] · w[j, i], b = shift.
    pub fn fold(w: &[f32], n_out: usize, n_in: usize, scale: &[f32], shift: &[f32]) -> Self {
        assert_eq!(w.len(), n_out * n_in);
        assert!(scale.len() == n_out && shift.len() == n_out);
        let mut wf = w.to_vec();
        for (row, &s) in wf.chunks_exact_mut(n_in).zip(scale) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        let mut wt = vec![0f32; n_in * n_out];
        for j in 0..n_out {
            for i in 0..n_in {
                wt[i * n_out + j] = wf[j * n_in + i];
            }
        }
        let kern = crate::runtime::selected_kernel();
        let micro = (kern != Kernel::Blas)
            .then(|| (kern, Packed::transposed(&wf, n_out, n_in).with_bias(shift)));
        FoldedLinear {
            n_in,
            n_out,
            wt,
            bias: shift.to_vec(),
            micro,
        }
    }

    /// out (rows × n_out, contiguous) = x wᵀ + b for `rows` rows of x whose
    /// starts are `ld` apart (x may be a column range of wider rows).
    pub fn apply(&self, x: &[f32], rows: usize, ld: usize, out: &mut [f32]) {
        if rows == 0 {
            return;
        }
        assert!(ld >= self.n_in && x.len() >= (rows - 1) * ld + self.n_in);
        assert_eq!(out.len(), rows * self.n_out);
        match &self.micro {
            Some((k, b)) => {
                let a = Mat {
                    ptr: x.as_ptr(),
                    rows,
                    cols: self.n_in,
                    ld,
                };
                // SAFETY: x holds `rows` rows of n_in values `ld` apart and out
                // rows × n_out values (both asserted), which do not overlap
                // (one is borrowed mutably); the kernel was found available.
                unsafe { gemm::gemm(*k, a, b, out.as_mut_ptr(), self.n_out) }
            }
            None => {
                let view = |p: *const f32, r: usize, c: usize, ld: usize| {
                    // SAFETY: `p` points at r rows of c values `ld` apart that
                    // outlive the tensor (dropped at the end of this call);
                    // libtorch only reads the operands and writes `out`.
                    unsafe {
                        Tensor::of_blob(
                            p as *const u8,
                            &[r as i64, c as i64],
                            &[ld as i64, 1],
                            Kind::Float,
                            Device::Cpu,
                        )
                    }
                };
                let xt = view(x.as_ptr(), rows, self.n_in, ld);
                let wt = view(self.wt.as_ptr(), self.n_in, self.n_out, self.n_out);
                let ot = view(out.as_mut_ptr(), rows, self.n_out, self.n_out);
                tch::no_grad(|| {
                    let _ = xt.mm_out(&ot, &wt);
                });
                for r in out.chunks_exact_mut(self.n_out) {
                    super::add_row(r, &self.bias);
                }
            }
        }
    }
}

/// A GLU layer folded for eval: out = GLU(x wᵀ + b), with a residual input
/// (GLU + x) · √½. With a micro-kernel the gate runs in the product's
/// epilogue ([`gemm::gemm_glu`]); else (or where that pads much more) the
/// product, then [`glu_rows`]. Both give the same bits.
pub struct FoldedGlu {
    pub lin: FoldedLinear,
    residual: bool,
    fused: Option<(Kernel, GluPacked)>,
}

impl FoldedGlu {
    /// The layer whose folded product is `lin` (2d outputs); `residual`
    /// needs a fan-in of d.
    pub fn new(lin: FoldedLinear, residual: bool) -> FoldedGlu {
        assert_eq!(lin.n_out % 2, 0, "a GLU layer has 2d outputs");
        let d = lin.n_out / 2;
        assert!(!residual || lin.n_in == d, "a residual layer maps d to d");
        // the GLU product wherever there are micro-kernels: its packing is
        // as wide as the plain product's (`GluPacked::columns`, tested)
        let fused = lin
            .micro
            .as_ref()
            .map(|(k, _)| (*k, GluPacked::new(*k, &lin.wt, lin.n_in, d, &lin.bias)));
        FoldedGlu {
            lin,
            residual,
            fused,
        }
    }

    /// Outputs per row.
    pub fn d(&self) -> usize {
        self.lin.n_out / 2
    }

    /// out (rows × d) for `rows` rows of x (rows of the fan-in, contiguous);
    /// `z` (rows × 2d) is scratch for the BLAS path.
    pub fn apply(&self, x: &[f32], rows: usize, z: &mut Vec<f32>, out: &mut [f32]) {
        let (k, d) = (self.lin.n_in, self.d());
        assert!(x.len() >= rows * k && out.len() == rows * d);
        match &self.fused {
            Some((kern, g)) => {
                let a = Mat {
                    ptr: x.as_ptr(),
                    rows,
                    cols: k,
                    ld: k,
                };
                // SAFETY: x holds `rows` rows of k values and out rows × d
                // (both asserted), not overlapping (out is borrowed
                // mutably); the kernel was found available and g packed for it.
                unsafe { gemm::gemm_glu(*kern, a, g, self.residual, out.as_mut_ptr(), d) }
            }
            None => {
                if z.len() < rows * 2 * d {
                    z.resize(rows * 2 * d, 0.0);
                }
                let z = &mut z[..rows * 2 * d];
                self.lin.apply(x, rows, k, z);
                let h: &[f32] = if self.residual { &x[..rows * k] } else { &[] };
                glu_rows(z, h, out, d);
            }
        }
    }
}

simd_fn! {
    /// out = x ⊙ scale + shift for each row (the eval-mode initial batch norm)
    pub fn affine_rows(x: &[f32], scale: &[f32], shift: &[f32], out: &mut [f32]) {
        let n = scale.len();
        let shift = &shift[..n];
        for (o, r) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
            let (o, r) = (&mut o[..n], &r[..n]);
            for j in 0..n {
                o[j] = r[j].mul_add(scale[j], shift[j]);
            }
        }
    }
}

simd_fn! {
    /// The GLU of each row of `y` (rows of 2d, batch norm already applied):
    /// first half ⊙ σ(second half) into `out` (rows of d); with a residual
    /// input `h` (non-empty, rows of d), out = (GLU + h) · √½.
    pub fn glu_rows(y: &[f32], h: &[f32], out: &mut [f32], d: usize) {
        // one loop per case, so that the residual sum is taken in registers
        // (a second loop over the stored GLU waited on each row's division)
        let rows = y.chunks_exact(2 * d).zip(out.chunks_exact_mut(d));
        if h.is_empty() {
            for (yr, o) in rows {
                let (y1, y2, o) = (&yr[..d], &yr[d..2 * d], &mut o[..d]);
                for j in 0..d {
                    o[j] = y1[j] * sigmoid_f32(y2[j]);
                }
            }
        } else {
            for ((yr, o), hr) in rows.zip(h.chunks_exact(d)) {
                let (y1, y2, hr, o) = (&yr[..d], &yr[d..2 * d], &hr[..d], &mut o[..d]);
                for j in 0..d {
                    o[j] = (y1[j] * sigmoid_f32(y2[j]) + hr[j]) * std::f32::consts::FRAC_1_SQRT_2;
                }
            }
        }
    }
}

/// The widest head [`head_rows`] takes 16 rows at a time (n_d inputs and
/// outputs per row); wider ones go row by row ([`head_each`]).
const HEAD_MAX_IN: usize = 64;
const HEAD_MAX_OUT: usize = 16;

simd_fn! {
    /// The supervised head on each row of decision sums `sum` (rows of n_d):
    /// out = sum · wᵀ (w (outputs, n_d) row-major; rows of `out` hold the
    /// outputs), then a softmax over each run of `widths` columns (one per
    /// outcome; none when `widths` is empty: values or logits). Sixteen rows
    /// at a time, one row per vector lane, with [`head_each`]'s operations
    /// in its order (the same bits; rows are too short to vectorise along).
    pub fn head_rows(sum: &[f32], w: &[f32], out: &mut [f32], n_d: usize, widths: &[usize]) {
        let n_out = w.len() / n_d;
        if n_d > HEAD_MAX_IN || n_out > HEAD_MAX_OUT {
            return head_each(sum, w, out, n_d, widths);
        }
        // lanes a short last block does not fill keep earlier values (never written out)
        let mut s = [[0f32; LANES]; HEAD_MAX_IN];
        let mut o = [[0f32; LANES]; HEAD_MAX_OUT];
        for (sb, ob) in sum.chunks(LANES * n_d).zip(out.chunks_mut(LANES * n_out)) {
            for (l, r) in sb.chunks_exact(n_d).enumerate() {
                for j in 0..n_d {
                    s[j][l] = r[j];
                }
            }
            for (k, ok) in o[..n_out].iter_mut().enumerate() {
                let wr = &w[k * n_d..(k + 1) * n_d];
                let mut acc = [0f32; LANES];
                for (sj, &wj) in s[..n_d].iter().zip(wr) {
                    for l in 0..LANES {
                        acc[l] = sj[l].mul_add(wj, acc[l]);
                    }
                }
                *ok = acc;
            }
            let mut off = 0;
            for &wd in widths {
                let v = &mut o[off..off + wd];
                let mut max = [f32::NEG_INFINITY; LANES];
                for x in v.iter() {
                    for l in 0..LANES {
                        max[l] = max[l].max(x[l]);
                    }
                }
                let mut total = [0f32; LANES];
                for x in v.iter_mut() {
                    for l in 0..LANES {
                        x[l] = exp_f32(x[l] - max[l]);
                        total[l] += x[l];
                    }
                }
                let mut inv = [0f32; LANES];
                for l in 0..LANES {
                    inv[l] = 1.0 / total[l];
                }
                for x in v.iter_mut() {
                    for l in 0..LANES {
                        x[l] *= inv[l];
                    }
                }
                off += wd;
            }
            for (l, r) in ob.chunks_exact_mut(n_out).enumerate() {
                for k in 0..n_out {
                    r[k] = o[k][l];
                }
            }
        }
    }
}

simd_fn! {
    /// [`head_rows`] row by row (heads too wide for its lanes; its reference twin).
    pub fn head_each(sum: &[f32], w: &[f32], out: &mut [f32], n_d: usize, widths: &[usize]) {
        let n_out = w.len() / n_d;
        for (sr, or) in sum.chunks_exact(n_d).zip(out.chunks_exact_mut(n_out)) {
            for (k, ov) in or.iter_mut().enumerate() {
                let wr = &w[k * n_d..(k + 1) * n_d];
                let mut acc = 0f32;
                for j in 0..n_d {
                    acc = sr[j].mul_add(wr[j], acc);
                }
                *ov = acc;
            }
            let mut off = 0;
            for &wd in widths {
                let v = &mut or[off..off + wd];
                let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut s = 0f32;
                for x in v.iter_mut() {
                    *x = exp_f32(*x - max);
                    s += *x;
                }
                let inv = 1.0 / s;
                v.iter_mut().for_each(|x| *x *= inv);
                off += wd;
            }
        }
    }
}

/// Rows per group of [`sparsemax_rows`]: one lane per row.
const LANES: usize = 16;

/// Groups [`sparsemax_rows`] and [`entmax_rows`] handle (longer rows go row
/// by row through [`super::mask_row`]).
pub const SPARSEMAX_MAX_GROUPS: usize = 32;

/// A block of up to [`LANES`] rows of `g` logits as lanes (entry j of row l
/// at `x[j][l]`; the rows a short last block lacks are zeros), less each
/// row's max, times `scale` (1 for sparsemax, ½ for entmax-1.5; exact either
/// way). Inlined into the callers' SIMD builds.
#[inline(always)]
fn shifted_lanes(block: &[f32], g: usize, scale: f32) -> [[f32; LANES]; SPARSEMAX_MAX_GROUPS] {
    let mut x = [[0f32; LANES]; SPARSEMAX_MAX_GROUPS];
    for (l, r) in block.chunks_exact(g).enumerate() {
        for j in 0..g {
            x[j][l] = r[j];
        }
    }
    let mut mx = [f32::NEG_INFINITY; LANES];
    for xj in x[..g].iter() {
        for l in 0..LANES {
            mx[l] = mx[l].max(xj[l]);
        }
    }
    for xj in x[..g].iter_mut() {
        for l in 0..LANES {
            xj[l] = (xj[l] - mx[l]) * scale;
        }
    }
    x
}

/// Sparsemax of each row of `m` (rows of `g` ≤ [`SPARSEMAX_MAX_GROUPS`]
/// logits) in place: [`sparsemax_lanes`], in AVX-512 intrinsics where the CPU
/// has them (`super::sparsemax_avx512`, the same bits).
pub fn sparsemax_rows(m: &mut [f32], g: usize) {
    #[cfg(all(target_arch = "x86_64", tabnet_avx512))]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (just checked).
        return unsafe { super::sparsemax_avx512::sparsemax_rows(m, g) };
    }
    sparsemax_lanes(m, g)
}

simd_fn! {
    /// Sparsemax of each row of `m` (rows of `g` ≤ [`SPARSEMAX_MAX_GROUPS`]
    /// logits) in place, 16 rows at a time, one row per vector lane, without
    /// sorting: after subtracting the row's max, the support is found by
    /// Michelot's fixed point: start from the entries above −1 (no other can
    /// be in it), τ = (Σ_S x − 1)/|S|,
    /// keep the entries of S above τ, repeat until no lane's S changes (τ
    /// only grows, so an entry left out stays out and the support is
    /// {x > τ}; ties in or out together; at most g rounds, two or three on
    /// usual rows, against the g² comparisons of the pairwise criterion).
    /// Then M = max(x − τ, 0) with τ = (Σ_support x − 1)/k summed in index
    /// order. A short last group is padded with zero rows, and a lane's
    /// arithmetic does not depend on the others (an extra round on a settled
    /// lane recomputes the same sums), so every row gets the same bits
    /// wherever it falls (float32; the training pass's [`super::mask_row`]
    /// sorts in float64, agreeing to float32 rounding).
    pub fn sparsemax_lanes(m: &mut [f32], g: usize) {
        assert!((1..=SPARSEMAX_MAX_GROUPS).contains(&g));
        for block in m.chunks_mut(LANES * g) {
            let rows = block.len() / g;
            let mut x = shifted_lanes(block, g, 1.0);
            let x = &mut x[..g];
            // S as 1/0 per entry, from the entries above −1 (τ ≥ −1: the
            // max's own term 0 − τ is at most 1); k = |S|, s = Σ_S x in index order
            let mut inside = [[0f32; LANES]; SPARSEMAX_MAX_GROUPS];
            let (mut k, mut s) = ([0f32; LANES], [0f32; LANES]);
            for (xj, ins) in x.iter().zip(inside.iter_mut()) {
                for l in 0..LANES {
                    let keep = xj[l] > -1.0;
                    ins[l] = if keep { 1.0 } else { 0.0 };
                    k[l] += ins[l];
                    s[l] += if keep { xj[l] } else { 0.0 };
                }
            }
            let mut tau = [0f32; LANES];
            for _ in 0..g {
                for l in 0..LANES {
                    tau[l] = (s[l] - 1.0) / k[l];
                }
                let (mut k2, mut s2) = ([0f32; LANES], [0f32; LANES]);
                for (xj, ins) in x.iter().zip(inside.iter_mut()) {
                    for l in 0..LANES {
                        let keep = (ins[l] > 0.0) & (xj[l] > tau[l]);
                        ins[l] = if keep { 1.0 } else { 0.0 };
                        k2[l] += ins[l];
                        s2[l] += if keep { xj[l] } else { 0.0 };
                    }
                }
                let mut settled = true;
                for l in 0..LANES {
                    settled &= k2[l] == k[l];
                }
                k = k2;
                s = s2;
                if settled {
                    break;
                }
            }
            for l in 0..LANES {
                tau[l] = (s[l] - 1.0) / k[l];
            }
            for (l, r) in block.chunks_exact_mut(g).enumerate().take(rows) {
                for j in 0..g {
                    r[j] = (x[j][l] - tau[l]).max(0.0);
                }
            }
        }
    }
}

simd_fn! {
    /// Entmax-1.5 of each row of `m` (rows of `g` ≤ [`SPARSEMAX_MAX_GROUPS`]
    /// logits) in place, 16 rows at a time as [`sparsemax_rows`]: x = (z − max)/2;
    /// entry i is in the support iff Σ_{xⱼ ≥ xᵢ} (xⱼ − xᵢ)² ≤ 1 (float32: the
    /// sorted criterion τᵢ ≤ xᵢ of the training pass's [`super::mask_row`],
    /// τᵢ = mean − √((1 − (Σx² − c·mean²))/c) over the c entries {xⱼ ≥ xᵢ},
    /// squared and multiplied out: no division or root per entry, ties in or
    /// out together; an entry at the boundary gets 0 either way); then, in
    /// float64 as the training pass, the closed form on the support,
    /// M = max(x − τ, 0)².
    pub fn entmax_rows(m: &mut [f32], g: usize) {
        assert!((1..=SPARSEMAX_MAX_GROUPS).contains(&g));
        for block in m.chunks_mut(LANES * g) {
            let rows = block.len() / g;
            // (z − max)/2 as the float64 reference computes it: the halving is
            // exact, and so is the difference wherever it decides the mask
            // (entries within 2 of the max, Sterbenz)
            let mut x = shifted_lanes(block, g, 0.5);
            let x = &mut x[..g];
            // the support test of every entry first (float32, in registers),
            // then the support's sums in float64
            let mut inside = [[0f32; LANES]; SPARSEMAX_MAX_GROUPS];
            for (i, ins) in inside.iter_mut().enumerate().take(g) {
                let xi = x[i];
                let mut q = [0f32; LANES];
                for xj in x.iter() {
                    for l in 0..LANES {
                        let d = xj[l] - xi[l];
                        q[l] += if xj[l] >= xi[l] { d * d } else { 0.0 };
                    }
                }
                for l in 0..LANES {
                    ins[l] = if q[l] <= 1.0 { 1.0 } else { 0.0 };
                }
            }
            let (mut k, mut s, mut s2) = ([0f64; LANES], [0f64; LANES], [0f64; LANES]);
            for (xi, ins) in x.iter().zip(&inside) {
                for l in 0..LANES {
                    let (v, w) = (xi[l] as f64, ins[l] as f64);
                    k[l] += w;
                    s[l] += w * v;
                    s2[l] += w * (v * v);
                }
            }
            let mut tau = [0f64; LANES];
            for l in 0..LANES {
                let mu = s[l] / k[l];
                let delta = (1.0 - k[l] * (s2[l] / k[l] - mu * mu)) / k[l];
                tau[l] = mu - delta.max(1e-12).sqrt();
            }
            for (l, r) in block.chunks_exact_mut(g).enumerate().take(rows) {
                for j in 0..g {
                    let v = (x[j][l] as f64 - tau[l]).max(0.0);
                    r[j] = (v * v) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// The folded product against the unfolded map s ⊙ (x wᵀ) + t in f64, on
    /// a column range of wider rows (as the attention reads its input).
    /// Tolerance: a K-term chain from the bias rounds each of its K + 1 terms
    /// once and each folded weight s·w once more: γ_{K+2} (Σ|s x w| + |t|),
    /// γ_m = m u / (1 − m u), u = 2⁻²⁴ (Higham §3.1). A wrong scale or a
    /// missing bias moves a value by O(1) of that scale.
    #[test]
    fn folded_product_is_the_affine_map_of_the_product() {
        let (rows, k, n, ld) = (37, 26, 40, 31);
        let x = data(rows * ld, 1);
        let w = data(n * k, 2);
        let scale = data(n, 3);
        let shift = data(n, 4);
        let f = FoldedLinear::fold(&w, n, k, &scale, &shift);
        let mut out = vec![f32::NAN; rows * n];
        f.apply(&x[3..], rows, ld, &mut out);
        let u = 2f64.powi(-24);
        let gamma = |m: usize| m as f64 * u / (1.0 - m as f64 * u);
        for r in 0..rows {
            for j in 0..n {
                let (mut s, mut abs) = (shift[j] as f64, (shift[j] as f64).abs());
                for i in 0..k {
                    let p = scale[j] as f64 * x[3 + r * ld + i] as f64 * w[j * k + i] as f64;
                    s += p;
                    abs += p.abs();
                }
                let err = (out[r * n + j] as f64 - s).abs();
                assert!(
                    err <= gamma(k + 2) * abs,
                    "({r}, {j}): {err} > {}",
                    gamma(k + 2) * abs
                );
            }
        }
    }

    /// The AVX-512 sparsemax bit for bit as the lane version, on rows of 1
    /// to 32 groups at scales 1e-2 to 1e2, with ties, NaN, ±∞ and −0 entries and
    /// every short last block (a changed operation or order shows as a bit).
    #[test]
    fn sparsemax_intrinsics_equal_the_lanes() {
        if !std::is_x86_feature_detected!("avx512f") || !cfg!(tabnet_avx512) {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        for g in [1usize, 2, 3, 7, 10, 16, 17, 28, 32] {
            for rows in [1usize, 15, 16, 17, 53] {
                let mut logits = data(rows * g, (g * 100 + rows) as u32);
                for (r, row) in logits.chunks_exact_mut(g).enumerate() {
                    let scale = 10f32.powi((r % 5) as i32 - 2);
                    row.iter_mut().for_each(|v| *v *= scale);
                    if r % 6 == 0 && g > 2 {
                        row[1] = row[0];
                    }
                }
                if rows > 4 && g > 1 {
                    logits[2 * g] = f32::NAN;
                    logits[3 * g + 1] = f32::INFINITY;
                    logits[4 * g] = f32::NEG_INFINITY;
                    logits[4 * g + 1] = -0.0;
                }
                let (mut fast, mut lanes) = (logits.clone(), logits);
                sparsemax_rows(&mut fast, g);
                sparsemax_lanes(&mut lanes, g);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&lanes), "g {g}, rows {rows}");
            }
        }
    }

    /// The sort-free float32 sparsemax (and entmax-1.5, float32 support test) against the
    /// sorting float64 ones of the training pass, on rows of 1 to 32 groups at scales 1e-2 to 1e2
    /// with ties: each mask entry within 64 u (u = 2⁻²⁴) of the row's largest
    /// logit gap (the sums of up to 32 float32 terms round at most 32 u of
    /// it, the threshold's division and subtraction a few u more; a wrong
    /// support moves an entry by the gap between two logits, far more), rows
    /// sum to 1 within that, and a row's bits do not depend on which rows
    /// come with it (its lane, a padded last group).
    #[test]
    fn mask_rows_match_the_sorting_masks() {
        for entmax in [false, true] {
            masks_match(entmax);
        }
    }

    fn masks_match(entmax: bool) {
        // rows of mixed scales, then every row at scale 100 (most entries far
        // below the max in every row of a 16-row group: sparsemax starts without them)
        for (g, wide) in [1usize, 2, 3, 7, 10, 16, 28, 32]
            .into_iter()
            .flat_map(|g| [(g, false), (g, true)])
        {
            let rows = 37;
            let mut logits = data(rows * g, g as u32 + 7);
            for (r, row) in logits.chunks_exact_mut(g).enumerate() {
                let scale = if wide {
                    100.0
                } else {
                    10f32.powi((r % 5) as i32 - 2)
                };
                row.iter_mut().for_each(|v| *v *= scale);
                if r % 6 == 0 && g > 2 {
                    row[1] = row[0]; // a tie
                }
            }
            let rows_fn = if entmax { entmax_rows } else { sparsemax_rows };
            let mut fast = logits.clone();
            rows_fn(&mut fast, g);
            for (r, (lr, fr)) in logits.chunks_exact(g).zip(fast.chunks_exact(g)).enumerate() {
                let mut want = lr.to_vec();
                super::super::mask_row(&mut want, entmax);
                let max = lr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let min = lr.iter().copied().fold(f32::INFINITY, f32::min);
                let tol = 64.0 * 2f32.powi(-24) * (max - min).max(1.0);
                for (a, b) in fr.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= tol,
                        "entmax {entmax}, g {g}, row {r}: {a} vs {b}"
                    );
                }
                let sum: f32 = fr.iter().sum();
                assert!(
                    (sum - 1.0).abs() <= tol + g as f32 * 2f32.powi(-24),
                    "g {g}, row {r}: sums to {sum}"
                );
            }
            // the same rows one at a time (each alone in a padded group)
            for (r, lr) in logits.chunks_exact(g).enumerate() {
                let mut one = lr.to_vec();
                rows_fn(&mut one, g);
                assert_eq!(
                    one,
                    fast[r * g..(r + 1) * g].to_vec(),
                    "g {g}, row {r} alone"
                );
            }
        }
    }

    /// The lane version against the row version, bit for bit: a binary
    /// softmax, two outcomes (3 + 4 classes), logits and a partial last
    /// block, on the widest head the lanes take.
    #[test]
    fn head_rows_equal_the_row_by_row_head() {
        for (rows, n_d, widths) in [
            (100, 8, vec![2]),
            (37, 24, vec![3, 4]),
            (16, 5, vec![]),
            (21, HEAD_MAX_IN, vec![HEAD_MAX_OUT]),
        ] {
            let n_out = if widths.is_empty() {
                3
            } else {
                widths.iter().sum()
            };
            let sum = data(rows * n_d, 11);
            let w = data(n_out * n_d, 12)
                .iter()
                .map(|v| 3.0 * v)
                .collect::<Vec<_>>();
            let (mut got, mut want) = (vec![0f32; rows * n_out], vec![0f32; rows * n_out]);
            head_rows(&sum, &w, &mut got, n_d, &widths);
            head_each(&sum, &w, &mut want, n_d, &widths);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got),
                bits(&want),
                "{rows} rows, n_d {n_d}, {widths:?}"
            );
        }
    }

    #[test]
    fn glu_rows_match_their_definition() {
        for (rows, d) in [(9, 13), (70, 8), (33, 50), (3, 300)] {
            glu_case(rows, d);
        }
    }

    fn glu_case(rows: usize, d: usize) {
        let y = data(rows * 2 * d, 5);
        let h = data(rows * d, 6);
        for residual in [false, true] {
            let mut out = vec![0f32; rows * d];
            glu_rows(&y, if residual { &h } else { &[] }, &mut out, d);
            for r in 0..rows {
                for j in 0..d {
                    let (a, b) = (y[r * 2 * d + j] as f64, y[r * 2 * d + d + j] as f64);
                    let mut want = a / (1.0 + (-b).exp());
                    if residual {
                        want = (want + h[r * d + j] as f64) * 0.5f64.sqrt();
                    }
                    // sigmoid_f32 is within a few ulp (exp ≤ 2 ulp, one division)
                    assert!((out[r * d + j] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()));
                }
            }
        }
    }
}
