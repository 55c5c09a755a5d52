//! A GLU layer's product with the gate in its epilogue, for the eval pass:
//! out = y₁ ⊙ σ(y₂) (with a residual input h: (y₁ ⊙ σ(y₂) + h) · √½) where
//! (y₁, y₂) = x Bᵀ + b, the two halves of the folded layer's 2d outputs.
//!
//! B is packed so that a register tile holds the values and the gates of the
//! same outputs ([`GluPacked`]): the gate is applied while the tile is in
//! registers, and the 2d pre-activations never go to memory (the separate
//! product and GLU pass wrote and re-read them, and its sigmoid chains ran
//! one short row at a time; here each tile's rows are independent chains).
//!
//! Same arithmetic, same bits: each pre-activation is the fused multiply-add
//! chain of [`super::gemm`] (from the bias, over K in order), and the gate is
//! [`crate::kernels::sigmoid_f32`] with the same roundings as
//! `kernels::glu_rows` (tested bit for bit below).
use super::{Kernel, Mat, Packed};

/// A GLU layer's folded wᵀ and bias for [`gemm_glu`]: the 2d output columns
/// in chunks of the kernel's lanes W, chunk c's value columns c·W .. c·W + W
/// beside its gate columns d + c·W .. . A last partial chunk of at most W/2
/// outputs shares one vector: its values in the low lanes, its gates from
/// lane W/2 (so d = 50 packs into 112 columns on AVX-512 as the plain
/// product does, not 128); a wider one takes a pair as the others (zeros
/// past d).
pub struct GluPacked {
    pub(super) b: Packed,
    /// outputs per row (half the layer's product columns)
    pub d: usize,
    pub(super) lanes: usize,
}

impl GluPacked {
    /// From the folded wᵀ (`n_in` rows of 2d values, row-major) and the bias
    /// (2d values), for `kernel`'s lanes.
    pub fn new(kernel: Kernel, wt: &[f32], n_in: usize, d: usize, bias: &[f32]) -> GluPacked {
        assert_eq!(wt.len(), n_in * 2 * d, "wᵀ holds n_in rows of 2d values");
        assert_eq!(bias.len(), 2 * d, "a bias per product column");
        let lanes = kernel.lanes();
        let (pairs, tail) = Self::split(d, lanes);
        // the product column of packed column j (None: padding)
        let source = |j: usize| {
            if j < 2 * pairs * lanes {
                let (c, r) = (j / (2 * lanes), j % (2 * lanes));
                let o = c * lanes + r % lanes;
                (o < d).then_some((r / lanes) * d + o)
            } else {
                // the shared tail vector: values, then gates from lane W/2
                let (l, o) = (j - 2 * pairs * lanes, pairs * lanes);
                let half = lanes / 2;
                if l < tail {
                    Some(o + l)
                } else if (half..half + tail).contains(&l) {
                    Some(d + o + l - half)
                } else {
                    None
                }
            }
        };
        let n = Self::columns(d, lanes);
        let b = Packed::with(n_in, n, |i, j| source(j).map_or(0.0, |o| wt[i * 2 * d + o]));
        let packed_bias: Vec<f32> = (0..n).map(|j| source(j).map_or(0.0, |o| bias[o])).collect();
        GluPacked {
            b: b.with_bias(&packed_bias),
            d,
            lanes,
        }
    }

    /// The chunks with a pair of vectors (value, gate) and the outputs of a
    /// shared tail vector (0: none) of d outputs at `lanes` lanes.
    pub(super) fn split(d: usize, lanes: usize) -> (usize, usize) {
        let rem = d % lanes;
        if rem > 0 && rem <= lanes / 2 {
            (d / lanes, rem)
        } else {
            (d.div_ceil(lanes), 0)
        }
    }

    /// Packed product columns for d outputs at `lanes` lanes (the plain
    /// product pads 2d to whole vectors).
    pub fn columns(d: usize, lanes: usize) -> usize {
        let (pairs, tail) = Self::split(d, lanes);
        2 * pairs * lanes + if tail > 0 { lanes } else { 0 }
    }

    /// The layer's fan-in.
    pub fn n_in(&self) -> usize {
        self.b.k
    }
}

/// out (a.rows × g.d, rows `ldo` apart) = the GLU of A · B + b (see the
/// module docs); with `residual`, A is also the residual input (a.cols ==
/// g.d).
///
/// # Safety
/// `a` must describe readable memory, `out` writable memory of a.rows rows of
/// g.d values `ldo` apart, not overlapping `a`; `kernel` must be available
/// and the one `g` was packed for.
pub unsafe fn gemm_glu(
    kernel: Kernel,
    a: Mat,
    g: &GluPacked,
    residual: bool,
    out: *mut f32,
    ldo: usize,
) {
    assert_eq!(a.cols, g.b.k, "inner dimensions");
    assert_eq!(g.lanes, kernel.lanes(), "packed for this kernel");
    assert!(!residual || a.cols == g.d, "a residual input of d values");
    match kernel {
        #[cfg(all(target_arch = "x86_64", tabnet_avx512))]
        // SAFETY: the caller's contract; the kernel is available.
        Kernel::Avx512 => unsafe { super::avx512::gemm_glu(a, g, residual, out, ldo) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { super::avx2::gemm_glu(a, g, residual, out, ldo) },
        _ => panic!("gemm_glu: no micro-kernel {kernel:?}"),
    }
}

/// Rows `from .. to` in tiles: `f::<MR>` on each whole tile of MR rows, then
/// `f::<R>` on the R < MR rows left; `_` marks the argument that takes the
/// tile's first row.
#[cfg(target_arch = "x86_64")]
macro_rules! tiles {
    ($from:expr, $to:expr, $f:ident($a:expr, _ $(, $rest:expr)*)) => {{
        let (mut i, to) = ($from, $to);
        while i + MR <= to {
            $f::<MR>($a, i $(, $rest)*);
            i += MR;
        }
        match to - i {
            0 => {}
            1 => $f::<1>($a, i $(, $rest)*),
            2 => $f::<2>($a, i $(, $rest)*),
            3 => $f::<3>($a, i $(, $rest)*),
            4 => $f::<4>($a, i $(, $rest)*),
            5 => $f::<5>($a, i $(, $rest)*),
            _ => unreachable!("MR is at most 6"),
        }
    }};
}
#[cfg(target_arch = "x86_64")]
pub(super) use tiles;

/// The GLU kernels of one instruction set, defined beside [`super::micro_kernels`]
/// with the same helpers.
#[cfg(target_arch = "x86_64")]
macro_rules! glu_kernels {
    ($feat:literal) => {
        use super::glu::GluPacked;

        /// σ(v) lane by lane with the operations of
        /// [`crate::kernels::sigmoid_f32`] in its order (the scalar code the
        /// element-wise kernels vectorise): 1 / (1 + exp(−v)), exp by its
        /// clamp, the split x = n ln 2 + r and the degree-6 polynomial. The
        /// argument's negation is folded into the multiply-adds that read it
        /// (fma(−a, b, c) = −(a·b) + c exactly, so the same value rounded
        /// once), and on AVX-512 the scaling by 2ⁿ is one `vscalefps`: the
        /// same bits for every number (a NaN may come out with the other sign).
        #[inline]
        #[target_feature(enable = $feat)]
        fn sigmoid(v: V) -> V {
            use crate::kernels::exp_consts as e;
            // −x = clamp(v, −88, 87) for x = clamp(−v, −87, 88) (a NaN stays
            // NaN: min/max return their second operand then)
            let xn = max(set1(-88.0), min(set1(87.0), v));
            let t = fnmadd(xn, set1(e::LOG2E), set1(e::ROUND));
            let n = sub(t, set1(e::ROUND));
            let r = fma(n, set1(-e::LN2_LO), fnmsub(n, set1(e::LN2_HI), xn));
            let mut p = set1(e::P[0]);
            for &c in &e::P[1..] {
                p = fma(p, r, set1(c));
            }
            let y = add(fma(mul(p, r), r, r), set1(1.0));
            let ex = times_pow2(y, t, n);
            div(set1(1.0), add(set1(1.0), ex))
        }

        /// Rows r0 .. r0 + R of chunk c of the GLU's outputs.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn glu_tile<const R: usize>(
            a: Mat,
            r0: usize,
            g: &GluPacked,
            c: usize,
            residual: bool,
            out: *mut f32,
            ldo: usize,
        ) {
            // SAFETY: rows r0..r0+R of a and out exist (the caller's loop);
            // B's padded rows and its bias hold (2c + 2) · W values; out's
            // and the residual's last chunk is stored and loaded partially
            // when it runs past column d.
            unsafe {
                let b = &g.b;
                let bias = b.bias.as_ref().expect("a GLU product has its bias");
                let mut acc = [[zero(); 2]; R];
                for row in acc.iter_mut() {
                    for (v, s) in row.iter_mut().enumerate() {
                        *s = load(bias.as_ptr().add((2 * c + v) * W));
                    }
                }
                let bp = b.data.as_ptr().add(2 * c * W);
                for kk in 0..a.cols {
                    let brow = bp.add(kk * b.npad);
                    let (b0, b1) = (load(brow), load(brow.add(W)));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let x = set1(*a.ptr.add((r0 + i) * a.ld + kk));
                        row[0] = fma(x, b0, row[0]);
                        row[1] = fma(x, b1, row[1]);
                    }
                }
                // the gate of each row (R independent chains), then the outputs
                let col = c * W;
                let cols = W.min(g.d - col);
                let mut gate = [zero(); R];
                for (gv, row) in gate.iter_mut().zip(&acc) {
                    *gv = sigmoid(row[1]);
                }
                for (i, (row, gv)) in acc.iter().zip(&gate).enumerate() {
                    let mut v = mul(row[0], *gv);
                    if residual {
                        let hp = a.ptr.add((r0 + i) * a.ld + col);
                        let h = if cols == W {
                            load(hp)
                        } else {
                            load_part(hp, cols)
                        };
                        v = mul(add(v, h), set1(std::f32::consts::FRAC_1_SQRT_2));
                    }
                    let o = out.add((r0 + i) * ldo + col);
                    if cols == W {
                        store(o, v);
                    } else {
                        store_part(o, v, cols);
                    }
                }
            }
        }

        /// Rows r0 .. r0 + R of the shared tail vector (`tail` ≤ W/2 outputs
        /// from column `pairs`·W; see [`GluPacked`]): one accumulator per
        /// row, whose gate lanes (from W/2) are moved under the value lanes
        /// after the sigmoid. Each lane is the same chain as in a pair.
        #[inline]
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn glu_tail_tile<const R: usize>(
            a: Mat,
            r0: usize,
            g: &GluPacked,
            pairs: usize,
            tail: usize,
            residual: bool,
            out: *mut f32,
            ldo: usize,
        ) {
            // SAFETY: rows r0..r0+R of a and out exist (the caller's loop);
            // B's padded rows and its bias hold (2 pairs + 1) · W values;
            // out's and the residual's `tail` columns are stored and loaded
            // partially.
            unsafe {
                let b = &g.b;
                let bias = b.bias.as_ref().expect("a GLU product has its bias");
                let at = 2 * pairs * W;
                let mut acc = [load(bias.as_ptr().add(at)); R];
                let bp = b.data.as_ptr().add(at);
                for kk in 0..a.cols {
                    let b0 = load(bp.add(kk * b.npad));
                    for (i, v) in acc.iter_mut().enumerate() {
                        *v = fma(set1(*a.ptr.add((r0 + i) * a.ld + kk)), b0, *v);
                    }
                }
                let col = pairs * W;
                for (i, v) in acc.iter().enumerate() {
                    let gate = swap_halves(sigmoid(*v));
                    let mut y = mul(*v, gate);
                    if residual {
                        let h = load_part(a.ptr.add((r0 + i) * a.ld + col), tail);
                        y = mul(add(y, h), set1(std::f32::consts::FRAC_1_SQRT_2));
                    }
                    store_part(out.add((r0 + i) * ldo + col), y, tail);
                }
            }
        }

        /// The GLU product (see [`super::glu::gemm_glu`]), rows in blocks
        /// that stay in L1 across the chunks.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn gemm_glu(
            a: Mat,
            g: &GluPacked,
            residual: bool,
            out: *mut f32,
            ldo: usize,
        ) {
            const BLOCK: usize = 48;
            let (chunks, tail) = GluPacked::split(g.d, W);
            let mut r = 0;
            while r < a.rows {
                let end = (r + BLOCK).min(a.rows);
                // SAFETY: every tile covers rows inside a.rows and chunks
                // inside the packed columns (the caller's contract).
                unsafe {
                    if tail > 0 {
                        super::glu::tiles!(
                            r,
                            end,
                            glu_tail_tile(a, _, g, chunks, tail, residual, out, ldo)
                        );
                    }
                    for c in 0..chunks {
                        super::glu::tiles!(r, end, glu_tile(a, _, g, c, residual, out, ldo));
                    }
                }
                r = end;
            }
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(super) use glu_kernels;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::glu_rows;

    /// The products' test matrices, times `scale`.
    fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let v = super::super::tests::rand_mat(n, seed);
        v.into_iter().map(|x| x * scale).collect()
    }

    /// The GLU packing is exactly as wide as the plain product's (2d padded
    /// to whole vectors), for every width up to 200 at both lane counts.
    #[test]
    fn the_packing_is_as_wide_as_the_plain_product() {
        for lanes in [8, 16] {
            for d in 1..=200 {
                assert_eq!(
                    GluPacked::columns(d, lanes),
                    (2 * d).div_ceil(lanes) * lanes,
                    "d {d}, {lanes} lanes"
                );
            }
        }
    }

    /// Bit for bit the separate product (the plain micro-kernel with the
    /// bias) and `glu_rows`, with and without the residual, for widths that
    /// fill whole vectors and ones that leave a partial last chunk (d = 50,
    /// TabNet-S's), row counts with every tile tail, and rows read from
    /// wider rows (ld > n_in). Any change of an operation or its order shows
    /// as a differing bit; inputs up to ±4 reach both tails of the sigmoid.
    #[test]
    fn equals_the_product_then_the_glu() {
        let kernels: Vec<Kernel> = [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .filter(|k| k.available())
            .collect();
        if kernels.is_empty() {
            eprintln!("no micro-kernel on this CPU: nothing to compare");
        }
        // the last case's pre-activations reach ±200: the exponential's clamp
        // and the sigmoid's saturation at 0 and 1
        let cases = [
            (10, 16, 301, false, 2.0),
            (16, 16, 97, true, 2.0),
            (28, 50, 53, false, 2.0),
            (50, 50, 250, true, 2.0),
            (5, 3, 7, false, 2.0),
            (3, 3, 13, true, 2.0),
            (16, 16, 61, false, 60.0),
            (13, 13, 29, true, 2.0),
            (7, 13, 31, false, 2.0),
        ];
        for (kernel, &(k, d, rows, residual, scale)) in kernels
            .iter()
            .flat_map(|&kern| cases.iter().map(move |c| (kern, c)))
        {
            let ld = k + 3;
            let x = rand_vec(rows * ld, (k * d + rows) as u64, scale);
            let wt = rand_vec(k * 2 * d, 7 + d as u64, 1.0);
            let bias = rand_vec(2 * d, 3, 0.5);
            let plain = Packed::with(k, 2 * d, |i, j| wt[i * 2 * d + j]).with_bias(&bias);
            let a = Mat {
                ptr: x.as_ptr(),
                rows,
                cols: k,
                ld,
            };
            let mut z = vec![0f32; rows * 2 * d];
            // SAFETY: x holds rows rows of k values ld apart, z rows × 2d.
            unsafe { super::super::gemm(kernel, a, &plain, z.as_mut_ptr(), 2 * d) };
            let h: Vec<f32> = if residual {
                x.chunks_exact(ld).flat_map(|r| r[..d].to_vec()).collect()
            } else {
                Vec::new()
            };
            let mut want = vec![0f32; rows * d];
            glu_rows(&z, &h, &mut want, d);
            let g = GluPacked::new(kernel, &wt, k, d, &bias);
            // a sentinel after each row checks that nothing past d is written
            let mut got = vec![f32::NAN; rows * (d + 1)];
            // SAFETY: as above; got holds rows rows of d values d + 1 apart.
            unsafe { gemm_glu(kernel, a, &g, residual, got.as_mut_ptr(), d + 1) };
            for (r, (gr, wr)) in got
                .chunks_exact(d + 1)
                .zip(want.chunks_exact(d))
                .enumerate()
            {
                let (gb, wb): (Vec<u32>, Vec<u32>) = (
                    gr[..d].iter().map(|v| v.to_bits()).collect(),
                    wr.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(
                    gb, wb,
                    "{kernel:?}: k {k}, d {d}, residual {residual}: row {r}"
                );
                assert!(gr[d].is_nan(), "row {r}: wrote past d");
            }
        }
    }
}
