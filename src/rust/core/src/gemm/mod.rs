//! The encoder's own small matrix products: AVX-512F and AVX2+FMA micro-kernels
//! for the shapes of the fused pass (rows × K = 8–100 by K × N = 10–128), where a
//! general BLAS spends its time packing, dispatching and in kernels tuned for
//! large squares (and OpenBLAS 0.3.21 runs SSE3 kernels on CPUs it does not know).
//!
//! The products, each for one task's rows on one thread (see [`crate::kernels`]):
//! * [`gemm`]: C = A · B with B packed once per layer and pass ([`Packed`]): the
//!   forward z = x wᵀ (B = wᵀ) and the backward ∂x = ∂z w (B = w);
//! * [`gemm_tn`]: the weight gradient's transpose, acc = xᵀ ∂z, over the task's
//!   rows (the caller sums tasks in task order);
//! * [`gemm_glu`] (in `glu.rs`): an eval-mode GLU layer, the product with the
//!   gate applied in registers.
//!
//! Every output element is one fused multiply-add chain in a fixed order (over K,
//! or over the task's rows in row order), starting from 0: the register tiling
//! changes which elements are computed together, never an element's arithmetic.
//! So results do not depend on the thread count, the tile an element falls in,
//! or the vector width: the AVX2 and AVX-512 kernels give the same bits.
//!
//! The kernel is chosen once per process: `TABNETRS_KERNELS=blas|avx2|avx512`
//! forces one (an unavailable choice falls back to the best available), else
//! the best the CPU runs; on other CPUs (and other architectures) the products
//! stay with libtorch's BLAS. The AVX-512 set needs Rust ≥ 1.89 (build.rs).

mod glu;
pub use glu::{gemm_glu, GluPacked};

/// The implementation of the fused pass's products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// libtorch `mm` (the BLAS it links)
    Blas,
    /// AVX2 + FMA micro-kernels (8 lanes)
    Avx2,
    /// AVX-512F micro-kernels (16 lanes)
    Avx512,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Blas => "blas",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// True when this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Kernel::Blas => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(all(target_arch = "x86_64", tabnet_avx512))]
            Kernel::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(all(target_arch = "x86_64", tabnet_avx512)))]
            Kernel::Avx512 => false,
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 => false,
        }
    }

    /// f32 lanes of the kernel's vectors (1 for BLAS).
    pub fn lanes(self) -> usize {
        match self {
            Kernel::Blas => 1,
            Kernel::Avx2 => 8,
            Kernel::Avx512 => 16,
        }
    }

    /// The best kernel this CPU runs.
    pub fn best() -> Kernel {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .find(|k| k.available())
            .unwrap_or(Kernel::Blas)
    }

    /// The kernel named by `TABNETRS_KERNELS`-style text, if it is available;
    /// otherwise (unknown name, unset, unavailable) the best one.
    pub fn from_setting(s: Option<&str>) -> Kernel {
        let asked = match s.map(|s| s.trim().to_ascii_lowercase()) {
            Some(s) if s == "blas" => Some(Kernel::Blas),
            Some(s) if s == "avx2" => Some(Kernel::Avx2),
            Some(s) if s == "avx512" || s == "avx-512" => Some(Kernel::Avx512),
            _ => None,
        };
        match asked {
            Some(k) if k.available() => k,
            _ => Kernel::best(),
        }
    }
}

/// B (k × n) packed row-major with its columns padded with zeros to a multiple
/// of 16 (every row starts at a multiple of 16 floats from the start), and an
/// optional bias row that [`gemm`] starts each output row's sums from.
pub struct Packed {
    pub k: usize,
    pub n: usize,
    npad: usize,
    data: Vec<f32>,
    /// C = b + A · B: each element's chain starts at b[j] instead of 0 (npad values)
    bias: Option<Vec<f32>>,
}

impl Packed {
    fn with(k: usize, n: usize, at: impl Fn(usize, usize) -> f32) -> Packed {
        let npad = n.div_ceil(16) * 16;
        let mut data = vec![0f32; k * npad];
        for i in 0..k {
            for j in 0..n {
                data[i * npad + j] = at(i, j);
            }
        }
        Packed {
            k,
            n,
            npad,
            data,
            bias: None,
        }
    }

    /// The same B with C = b + A · B: every output element's fused
    /// multiply-add chain starts from b[j] (one rounding per term, as from 0).
    pub fn with_bias(mut self, b: &[f32]) -> Packed {
        assert_eq!(b.len(), self.n, "a bias per column");
        let mut v = vec![0f32; self.npad];
        v[..self.n].copy_from_slice(b);
        self.bias = Some(v);
        self
    }

    /// B = wᵀ for a row-major w of (n, k): the forward product x wᵀ.
    pub fn transposed(w: &[f32], n: usize, k: usize) -> Packed {
        assert_eq!(w.len(), n * k);
        Packed::with(k, n, |i, j| w[j * k + i])
    }

    /// B = w for a row-major w of (k, n): the backward product ∂z w.
    pub fn plain(w: &[f32], k: usize, n: usize) -> Packed {
        assert_eq!(w.len(), k * n);
        Packed::with(k, n, |i, j| w[i * n + j])
    }
}

/// A row-major matrix view: `rows` rows of `cols` values, `ld` apart.
#[derive(Clone, Copy)]
pub struct Mat {
    pub ptr: *const f32,
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

/// C (a.rows × b.n, rows `ldc` apart) = A · B (+ B's bias row, see
/// [`Packed::with_bias`]) with the given micro-kernel (Avx2 or Avx512).
///
/// # Safety
/// `a` must describe readable memory, `c` writable memory of a.rows rows of
/// b.n values `ldc` apart, not overlapping `a`; `kernel` must be available.
pub unsafe fn gemm(kernel: Kernel, a: Mat, b: &Packed, c: *mut f32, ldc: usize) {
    assert_eq!(a.cols, b.k, "inner dimensions");
    match kernel {
        #[cfg(all(target_arch = "x86_64", tabnet_avx512))]
        // SAFETY: the caller's contract; the kernel is available.
        Kernel::Avx512 => unsafe { avx512::gemm(a, b, c, ldc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { avx2::gemm(a, b, c, ldc) },
        _ => panic!("gemm: no micro-kernel {kernel:?}"),
    }
}

/// acc (x.cols × npad(dz.cols), row-major, from [`tn_buffer`]) = xᵀ · dz over
/// the rows of x and dz (the same count), each element summed in row order.
///
/// # Safety
/// `x` and `dz` must describe readable memory with x.rows == dz.rows; `kernel`
/// must be available.
pub unsafe fn gemm_tn(kernel: Kernel, x: Mat, dz: Mat, acc: &mut TnAcc) {
    assert_eq!(x.rows, dz.rows, "row counts");
    assert!(acc.k == x.cols && acc.n == dz.cols, "accumulator shape");
    acc.data.iter_mut().for_each(|v| *v = 0.0);
    match kernel {
        #[cfg(all(target_arch = "x86_64", tabnet_avx512))]
        // SAFETY: the caller's contract; the kernel is available.
        Kernel::Avx512 => unsafe { avx512::gemm_tn(x, dz, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { avx2::gemm_tn(x, dz, acc) },
        _ => panic!("gemm_tn: no micro-kernel {kernel:?}"),
    }
}

/// The (k × n) result of [`gemm_tn`], columns padded to a multiple of 16.
pub struct TnAcc {
    pub k: usize,
    pub n: usize,
    npad: usize,
    data: Vec<f32>,
}

impl TnAcc {
    pub fn new(k: usize, n: usize) -> TnAcc {
        let npad = n.div_ceil(16) * 16;
        TnAcc {
            k,
            n,
            npad,
            data: vec![0f32; k * npad],
        }
    }

    /// Element (i, j).
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.npad + j]
    }

    /// this += other, element by element (accumulators of the same shape).
    pub fn add(&mut self, other: &TnAcc) {
        assert_eq!((self.k, self.n), (other.k, other.n));
        for (a, b) in self.data.iter_mut().zip(&other.data) {
            *a += *b;
        }
    }

    /// out (n × k, row-major) += thisᵀ: the weight gradient ∂w = ∂zᵀ x.
    pub fn add_transposed_into(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.n * self.k);
        for j in 0..self.n {
            for i in 0..self.k {
                out[j * self.k + i] += self.data[i * self.npad + j];
            }
        }
    }
}

/// Shared body of the two micro-kernel sets. The module using it defines the
/// vector type `V`, its width `W`, `MR` (rows per register tile), `NV` (vectors
/// per register tile) and the `#[inline]` helpers zero, set1, load, load_part,
/// store, store_part and fma with its target features.
#[cfg(target_arch = "x86_64")]
macro_rules! micro_kernels {
    ($feat:literal) => {
        use super::{Mat, Packed, TnAcc};

        /// One register tile of C: rows r0..r0+R, vectors v0..v0+NVT of B's
        /// padded columns; the last vector is stored partially (`tail` columns)
        /// when it is the matrix's last.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile<const R: usize, const NVT: usize>(
            a: Mat,
            r0: usize,
            b: &Packed,
            v0: usize,
            c: *mut f32,
            ldc: usize,
        ) {
            // SAFETY: rows r0..r0+R of a and c exist (the caller's loop), B's
            // padded rows and its bias hold (v0 + NVT) · W values; the last vector of C is
            // stored with `store_part` when it runs past column n.
            unsafe {
                let mut acc = [[zero(); NVT]; R];
                if let Some(bias) = &b.bias {
                    for row in acc.iter_mut() {
                        for (v, s) in row.iter_mut().enumerate() {
                            *s = load(bias.as_ptr().add((v0 + v) * W));
                        }
                    }
                }
                let bp = b.data.as_ptr().add(v0 * W);
                for kk in 0..a.cols {
                    let brow = bp.add(kk * b.npad);
                    let mut bv = [zero(); NVT];
                    for (v, slot) in bv.iter_mut().enumerate() {
                        *slot = load(brow.add(v * W));
                    }
                    for (i, row) in acc.iter_mut().enumerate() {
                        let x = set1(*a.ptr.add((r0 + i) * a.ld + kk));
                        for (v, s) in row.iter_mut().enumerate() {
                            *s = fma(x, bv[v], *s);
                        }
                    }
                }
                for (i, row) in acc.iter().enumerate() {
                    let crow = c.add((r0 + i) * ldc);
                    for (v, s) in row.iter().enumerate() {
                        let col = (v0 + v) * W;
                        if col + W <= b.n {
                            store(crow.add(col), *s);
                        } else {
                            store_part(crow.add(col), *s, b.n - col);
                        }
                    }
                }
            }
        }

        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile_rows<const NVT: usize>(
            a: Mat,
            b: &Packed,
            v0: usize,
            c: *mut f32,
            ldc: usize,
        ) {
            // SAFETY: every tile covers rows inside a.rows (the caller's contract).
            unsafe {
                let mut r = 0;
                while r + MR <= a.rows {
                    tile::<MR, NVT>(a, r, b, v0, c, ldc);
                    r += MR;
                }
                match a.rows - r {
                    0 => {}
                    1 => tile::<1, NVT>(a, r, b, v0, c, ldc),
                    2 => tile::<2, NVT>(a, r, b, v0, c, ldc),
                    3 => tile::<3, NVT>(a, r, b, v0, c, ldc),
                    4 => tile::<4, NVT>(a, r, b, v0, c, ldc),
                    5 => tile::<5, NVT>(a, r, b, v0, c, ldc),
                    _ => unreachable!("MR is at most 6"),
                }
            }
        }

        /// C = A · B (see [`super::gemm`]). Rows are taken in blocks so that
        /// a block of A stays in L1 across the column tiles.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn gemm(a: Mat, b: &Packed, c: *mut f32, ldc: usize) {
            const BLOCK: usize = 48;
            let nvec = b.n.div_ceil(W);
            let mut r = 0;
            while r < a.rows {
                let rows = BLOCK.min(a.rows - r);
                let ab = Mat {
                    // SAFETY: the block's rows of a and c lie inside the caller's matrices.
                    ptr: unsafe { a.ptr.add(r * a.ld) },
                    rows,
                    ..a
                };
                // SAFETY: as above.
                let cb = unsafe { c.add(r * ldc) };
                let mut v = 0;
                while v < nvec {
                    let left = nvec - v;
                    // SAFETY: tiles cover vectors v.. of B's padded columns.
                    unsafe {
                        if left >= NV {
                            tile_rows::<NV>(ab, b, v, cb, ldc);
                            v += NV;
                        } else {
                            match left {
                                1 => tile_rows::<1>(ab, b, v, cb, ldc),
                                2 => tile_rows::<2>(ab, b, v, cb, ldc),
                                3 => tile_rows::<3>(ab, b, v, cb, ldc),
                                _ => unreachable!("NV is at most 4"),
                            }
                            v = nvec;
                        }
                    }
                }
                r += rows;
            }
        }

        /// One register tile of xᵀ dz: x columns k0..k0+R by vectors v0..v0+NVT
        /// of dz's columns, over rows r0..r1, added to the accumulator.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tn_tile<const R: usize, const NVT: usize>(
            x: Mat,
            dz: Mat,
            k0: usize,
            v0: usize,
            rows: (usize, usize),
            acc: &mut TnAcc,
        ) {
            // SAFETY: rows r0..r1 of x and dz exist, columns k0..k0+R of x exist;
            // dz's last vector is loaded with `load_part` when it runs past its
            // columns; the accumulator has k rows of npad ≥ (v0 + NVT) · W values.
            unsafe {
                let ap = acc.data.as_mut_ptr();
                let mut s = [[zero(); NVT]; R];
                for (i, row) in s.iter_mut().enumerate() {
                    for (v, e) in row.iter_mut().enumerate() {
                        *e = load(ap.add((k0 + i) * acc.npad + (v0 + v) * W));
                    }
                }
                for r in rows.0..rows.1 {
                    let dzr = dz.ptr.add(r * dz.ld);
                    let mut d = [zero(); NVT];
                    for (v, slot) in d.iter_mut().enumerate() {
                        let col = (v0 + v) * W;
                        *slot = if col + W <= dz.cols {
                            load(dzr.add(col))
                        } else {
                            load_part(dzr.add(col), dz.cols - col)
                        };
                    }
                    let xr = x.ptr.add(r * x.ld + k0);
                    for (i, row) in s.iter_mut().enumerate() {
                        let xv = set1(*xr.add(i));
                        for (v, e) in row.iter_mut().enumerate() {
                            *e = fma(xv, d[v], *e);
                        }
                    }
                }
                for (i, row) in s.iter().enumerate() {
                    for (v, e) in row.iter().enumerate() {
                        store(ap.add((k0 + i) * acc.npad + (v0 + v) * W), *e);
                    }
                }
            }
        }

        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tn_cols<const NVT: usize>(
            x: Mat,
            dz: Mat,
            v0: usize,
            rows: (usize, usize),
            acc: &mut TnAcc,
        ) {
            // SAFETY: tiles cover columns inside x.cols (the caller's contract).
            unsafe {
                let mut k = 0;
                while k + MR <= x.cols {
                    tn_tile::<MR, NVT>(x, dz, k, v0, rows, acc);
                    k += MR;
                }
                match x.cols - k {
                    0 => {}
                    1 => tn_tile::<1, NVT>(x, dz, k, v0, rows, acc),
                    2 => tn_tile::<2, NVT>(x, dz, k, v0, rows, acc),
                    3 => tn_tile::<3, NVT>(x, dz, k, v0, rows, acc),
                    4 => tn_tile::<4, NVT>(x, dz, k, v0, rows, acc),
                    5 => tn_tile::<5, NVT>(x, dz, k, v0, rows, acc),
                    _ => unreachable!("MR is at most 6"),
                }
            }
        }

        /// acc = xᵀ dz (see [`super::gemm_tn`]; acc starts at zero). Rows go in
        /// blocks that stay in L1/L2 across the tiles; each element's sum runs
        /// over the rows in order (the partial sums round-trip through memory
        /// unchanged).
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn gemm_tn(x: Mat, dz: Mat, acc: &mut TnAcc) {
            const BLOCK: usize = 256;
            let nvec = dz.cols.div_ceil(W);
            let mut r = 0;
            while r < x.rows {
                let rows = (r, (r + BLOCK).min(x.rows));
                let mut v = 0;
                while v < nvec {
                    let left = nvec - v;
                    // SAFETY: tiles cover vectors v.. of dz's columns and the block's rows.
                    unsafe {
                        if left >= NV {
                            tn_cols::<NV>(x, dz, v, rows, acc);
                            v += NV;
                        } else {
                            match left {
                                1 => tn_cols::<1>(x, dz, v, rows, acc),
                                2 => tn_cols::<2>(x, dz, v, rows, acc),
                                3 => tn_cols::<3>(x, dz, v, rows, acc),
                                _ => unreachable!("NV is at most 4"),
                            }
                            v = nvec;
                        }
                    }
                }
                r = rows.1;
            }
        }
    };
}

/// AVX-512 intrinsics are stable since Rust 1.89: built only by such a compiler
/// (`cfg(tabnet_avx512)`, set by build.rs), so the MSRV (1.88) build has none.
#[cfg(all(target_arch = "x86_64", tabnet_avx512))]
#[allow(clippy::incompatible_msrv)]
mod avx512 {
    use std::arch::x86_64::*;
    type V = __m512;
    const W: usize = 16;
    /// 6 × 4 accumulators + 4 B vectors + 1 broadcast of the 32 registers
    const MR: usize = 6;
    const NV: usize = 4;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn zero() -> V {
        _mm512_setzero_ps()
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn set1(x: f32) -> V {
        _mm512_set1_ps(x)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(p: *const f32) -> V {
        // SAFETY: the caller passes W readable floats.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_part(p: *const f32, n: usize) -> V {
        // SAFETY: the caller passes n < W readable floats; masked lanes are not read.
        unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store(p: *mut f32, v: V) {
        // SAFETY: the caller passes W writable floats.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_part(p: *mut f32, v: V, n: usize) {
        // SAFETY: the caller passes n < W writable floats; masked lanes are not written.
        unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add(a: V, b: V) -> V {
        _mm512_add_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sub(a: V, b: V) -> V {
        _mm512_sub_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn mul(a: V, b: V) -> V {
        _mm512_mul_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn div(a: V, b: V) -> V {
        _mm512_div_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn min(a: V, b: V) -> V {
        _mm512_min_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn max(a: V, b: V) -> V {
        _mm512_max_ps(a, b)
    }
    /// −(a·b) + c, rounded once
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fnmadd(a: V, b: V, c: V) -> V {
        _mm512_fnmadd_ps(a, b, c)
    }
    /// −(a·b) − c, rounded once
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fnmsub(a: V, b: V, c: V) -> V {
        _mm512_fnmsub_ps(a, b, c)
    }
    /// y · 2ⁿ for whole n in [−126, 127] (`t` = n + round, unused here):
    /// one `vscalefps`, the product y · 2ⁿ rounded once, as the AVX2
    /// version's multiply by the power built from t's bits
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn times_pow2(y: V, _t: V, n: V) -> V {
        _mm512_scalef_ps(y, n)
    }

    /// the vector's upper half of lanes under its lower half, and back
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn swap_halves(v: V) -> V {
        _mm512_shuffle_f32x4::<0b0100_1110>(v, v)
    }

    micro_kernels!("avx512f");
    super::glu::glu_kernels!("avx512f");
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    type V = __m256;
    const W: usize = 8;
    /// 6 × 2 accumulators + 2 B vectors + 1 broadcast of the 16 registers
    const MR: usize = 6;
    const NV: usize = 2;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn zero() -> V {
        _mm256_setzero_ps()
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn set1(x: f32) -> V {
        _mm256_set1_ps(x)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mask(n: usize) -> __m256i {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lane)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(p: *const f32) -> V {
        // SAFETY: the caller passes W readable floats.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_part(p: *const f32, n: usize) -> V {
        // SAFETY: the caller passes n < W readable floats; masked lanes are not read.
        unsafe { _mm256_maskload_ps(p, mask(n)) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(p: *mut f32, v: V) {
        // SAFETY: the caller passes W writable floats.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store_part(p: *mut f32, v: V, n: usize) {
        // SAFETY: the caller passes n < W writable floats; masked lanes are not written.
        unsafe { _mm256_maskstore_ps(p, mask(n), v) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn add(a: V, b: V) -> V {
        _mm256_add_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sub(a: V, b: V) -> V {
        _mm256_sub_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mul(a: V, b: V) -> V {
        _mm256_mul_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn div(a: V, b: V) -> V {
        _mm256_div_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn min(a: V, b: V) -> V {
        _mm256_min_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn max(a: V, b: V) -> V {
        _mm256_max_ps(a, b)
    }
    /// −(a·b) + c, rounded once
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fnmadd(a: V, b: V, c: V) -> V {
        _mm256_fnmadd_ps(a, b, c)
    }
    /// −(a·b) − c, rounded once
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn fnmsub(a: V, b: V, c: V) -> V {
        _mm256_fnmsub_ps(a, b, c)
    }
    /// y · 2ⁿ for whole n in [−126, 127], from t = n + `ROUND` (n in t's low
    /// mantissa bits; see `exp_f32`): the power's bits, then one multiply
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn times_pow2(y: V, t: V, _n: V) -> V {
        let round = crate::kernels::exp_consts::ROUND;
        let n = _mm256_sub_epi32(
            _mm256_castps_si256(t),
            _mm256_set1_epi32(round.to_bits() as i32),
        );
        let e = _mm256_add_epi32(n, _mm256_set1_epi32(127));
        mul(y, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e)))
    }

    /// the vector's upper half of lanes under its lower half, and back
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn swap_halves(v: V) -> V {
        _mm256_permute2f128_ps::<0x01>(v, v)
    }

    micro_kernels!("avx2,fma");
    super::glu::glu_kernels!("avx2,fma");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random matrix in [-1, 1) (xorshift).
    pub(super) fn rand_mat(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn mat(v: &[f32], rows: usize, cols: usize, ld: usize) -> Mat {
        assert!(v.len() >= (rows.max(1) - 1) * ld + cols);
        Mat {
            ptr: v.as_ptr(),
            rows,
            cols,
            ld,
        }
    }

    /// Float32 rounding bound of a K-term dot product accumulated in f32
    /// (with or without FMA): |ŝ − s| ≤ γ_K Σ|aᵢ bᵢ|, γ_K = K u / (1 − K u),
    /// u = 2⁻²⁴ (Higham, Accuracy and Stability of Numerical Algorithms, §3.1).
    fn gamma(k: usize) -> f64 {
        let u = 2f64.powi(-24);
        k as f64 * u / (1.0 - k as f64 * u)
    }

    fn micro_kernels() -> Vec<Kernel> {
        let v: Vec<Kernel> = [Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|k| k.available())
            .collect();
        if v.is_empty() {
            eprintln!("no micro-kernel runs on this CPU: nothing to test");
        }
        v
    }

    // shapes of the fused pass: K 8–100 by N 10–128 (odd sizes hit every tail)
    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 10, 16),
        (7, 8, 10),
        (128, 10, 32),
        (130, 16, 32),
        (517, 28, 100),
        (300, 50, 100),
        (61, 26, 28),
        (33, 100, 128),
        (19, 3, 5),
    ];

    #[test]
    fn gemm_matches_f64_reference_within_float32_rounding() {
        for kern in micro_kernels() {
            for &(m, k, n) in &SHAPES {
                let lda = k + 3; // a strided view (as for narrowed inputs)
                let a = rand_mat(m * lda, (m * 31 + k) as u64);
                let w = rand_mat(n * k, (k * 17 + n) as u64);
                // forward: C = A wᵀ, w (n, k)
                let b = Packed::transposed(&w, n, k);
                let ldc = n + 1;
                let mut c = vec![f32::NAN; m * ldc];
                // SAFETY: a has m rows of lda ≥ k floats, c m rows of ldc ≥ n.
                unsafe { gemm(kern, mat(&a, m, k, lda), &b, c.as_mut_ptr(), ldc) };
                for i in 0..m {
                    for j in 0..n {
                        let (mut s, mut abs) = (0f64, 0f64);
                        for kk in 0..k {
                            let p = a[i * lda + kk] as f64 * w[j * k + kk] as f64;
                            s += p;
                            abs += p.abs();
                        }
                        let err = (c[i * ldc + j] as f64 - s).abs();
                        // the f64 reference's own error is ~2⁻⁵³ K Σ|ab|: negligible
                        assert!(
                            err <= gamma(k) * abs,
                            "{kern:?} {m}x{k}x{n} ({i},{j}): {err} > γ_K Σ|ab| = {}",
                            gamma(k) * abs
                        );
                    }
                    // the padding column is never written
                    if n < ldc {
                        assert!(c[i * ldc + n].is_nan(), "{kern:?} wrote past column n");
                    }
                }
                // backward: ∂x = ∂z w, ∂z (m, n), w (n, k)
                let dz = rand_mat(m * n, (m + n) as u64);
                let bp = Packed::plain(&w, n, k);
                let mut gx = vec![0f32; m * k];
                // SAFETY: dz has m rows of n floats, gx m rows of k.
                unsafe { gemm(kern, mat(&dz, m, n, n), &bp, gx.as_mut_ptr(), k) };
                for i in 0..m {
                    for kk in 0..k {
                        let (mut s, mut abs) = (0f64, 0f64);
                        for j in 0..n {
                            let p = dz[i * n + j] as f64 * w[j * k + kk] as f64;
                            s += p;
                            abs += p.abs();
                        }
                        let err = (gx[i * k + kk] as f64 - s).abs();
                        assert!(
                            err <= gamma(n) * abs,
                            "{kern:?} dX {m}x{n}x{k}: {err} > {}",
                            gamma(n) * abs
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_tn_matches_f64_reference_within_float32_rounding() {
        for kern in micro_kernels() {
            for &(m, k, n) in &SHAPES {
                let m = m * 3; // more than one row block for the larger shapes
                let ldx = k + 2;
                let x = rand_mat(m * ldx, (m * 7 + k) as u64);
                let dz = rand_mat(m * n, (n * 13 + m) as u64);
                let mut acc = TnAcc::new(k, n);
                // SAFETY: x has m rows of ldx ≥ k floats, dz m rows of n.
                unsafe { gemm_tn(kern, mat(&x, m, k, ldx), mat(&dz, m, n, n), &mut acc) };
                let mut dw = vec![0f32; n * k];
                acc.add_transposed_into(&mut dw);
                for j in 0..n {
                    for kk in 0..k {
                        let (mut s, mut abs) = (0f64, 0f64);
                        for r in 0..m {
                            let p = dz[r * n + j] as f64 * x[r * ldx + kk] as f64;
                            s += p;
                            abs += p.abs();
                        }
                        // an m-term sum: γ_m
                        let err = (dw[j * k + kk] as f64 - s).abs();
                        assert!(
                            err <= gamma(m) * abs,
                            "{kern:?} dW {m}x{k}x{n}: {err} > {}",
                            gamma(m) * abs
                        );
                    }
                }
            }
        }
    }

    /// Each element is one FMA chain in a fixed order: the AVX2 and AVX-512
    /// kernels, and any split of the rows, give the same bits.
    #[test]
    fn kernels_agree_bitwise_and_rows_split_freely() {
        let kerns = micro_kernels();
        let (m, k, n) = (203, 28, 100);
        let a = rand_mat(m * k, 5);
        let w = rand_mat(n * k, 6);
        let b = Packed::transposed(&w, n, k);
        let mut results = Vec::new();
        for &kern in &kerns {
            let mut whole = vec![0f32; m * n];
            // SAFETY: shapes as allocated.
            unsafe { gemm(kern, mat(&a, m, k, k), &b, whole.as_mut_ptr(), n) };
            let mut split = vec![0f32; m * n];
            for (f, cnt) in [(0usize, 5usize), (5, 100), (105, 98)] {
                // SAFETY: rows f..f+cnt of a and split exist.
                unsafe {
                    gemm(
                        kern,
                        mat(&a[f * k..], cnt, k, k),
                        &b,
                        split.as_mut_ptr().add(f * n),
                        n,
                    )
                };
            }
            assert_eq!(whole, split, "{kern:?}: the row split changed the bits");
            results.push(whole);
        }
        for r in results.windows(2) {
            assert_eq!(r[0], r[1], "AVX2 and AVX-512 differ");
        }
    }

    /// With a bias row each element is b[j] + Σ a w in one chain: within
    /// γ_{K+1} (Σ|a w| + |b|) of the f64 value, and the AVX2 and AVX-512
    /// kernels agree bit for bit.
    #[test]
    fn gemm_with_bias_starts_each_chain_from_the_bias() {
        let mut results = Vec::new();
        for kern in micro_kernels() {
            let (m, k, n) = (61, 26, 37);
            let a = rand_mat(m * k, 41);
            let w = rand_mat(n * k, 42);
            let bias = rand_mat(n, 43);
            let b = Packed::transposed(&w, n, k).with_bias(&bias);
            let mut c = vec![f32::NAN; m * n];
            // SAFETY: a has m rows of k floats, c m rows of n.
            unsafe { gemm(kern, mat(&a, m, k, k), &b, c.as_mut_ptr(), n) };
            for i in 0..m {
                for j in 0..n {
                    let (mut s, mut abs) = (bias[j] as f64, (bias[j] as f64).abs());
                    for kk in 0..k {
                        let p = a[i * k + kk] as f64 * w[j * k + kk] as f64;
                        s += p;
                        abs += p.abs();
                    }
                    let err = (c[i * n + j] as f64 - s).abs();
                    assert!(err <= gamma(k + 1) * abs, "{kern:?} ({i},{j}): {err}");
                }
            }
            results.push(c);
        }
        for r in results.windows(2) {
            assert_eq!(r[0], r[1], "AVX2 and AVX-512 differ");
        }
    }

    #[test]
    fn setting_picks_an_available_kernel() {
        assert_eq!(Kernel::from_setting(Some("blas")), Kernel::Blas);
        assert_eq!(Kernel::from_setting(None), Kernel::best());
        assert_eq!(Kernel::from_setting(Some("nonsense")), Kernel::best());
        for k in [Kernel::Avx2, Kernel::Avx512] {
            let got = Kernel::from_setting(Some(k.name()));
            assert_eq!(got == k, k.available(), "{k:?}");
            assert!(got.available());
        }
    }
}
