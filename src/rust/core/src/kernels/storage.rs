//! The one boundary between libtorch tensors and the slices the kernels work
//! on. A pass takes each tensor's storage here once, as one slice, and from
//! then on hands rows to its tasks with the borrow checker (`split_at_mut`,
//! `chunks_mut`, zips of chunk iterators): no task ever makes a slice from a
//! pointer.
//!
//! A `Tensor` is a handle to shared, mutable storage (like an `UnsafeCell`):
//! shallow clones and views of it may exist, and libtorch writes through any
//! of them. So the mutable slice is `unsafe` to take ([`values_mut`]): its
//! caller promises that no other handle of the storage is used while the slice
//! lives. The read-only slices ([`values`], [`view`]) borrow the handle, and
//! the passes never write a tensor they are reading through another handle.
use crate::gemm::Mat;
use tch::{Device, Kind, Tensor};

/// True when `t` is a 2-D (or 1-D) f32 CPU tensor whose rows are contiguous
/// (a column range of a contiguous matrix is one).
fn rows_contiguous(t: &Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    t.device() == Device::Cpu
        && t.kind() == Kind::Float
        && match size.len() {
            1 => stride[0] == 1 || size[0] <= 1,
            2 => (stride[1] == 1 || size[1] <= 1) && stride[0] >= size[1],
            _ => false,
        }
}

/// The elements of a contiguous f32 CPU tensor, read only (panics for any
/// other tensor).
pub(crate) fn values(t: &Tensor) -> &[f32] {
    assert!(super::supported(t), "a contiguous f32 CPU tensor");
    // SAFETY: checked contiguous f32 CPU storage of numel() elements, alive
    // while `t` is borrowed; nothing writes it while a pass reads it (see the
    // module docs).
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel()) }
}

/// `f` on the elements of `t` as f32 values in row-major order: the tensor's
/// own storage when it is a contiguous f32 CPU tensor (no copy), else a
/// contiguous f32 CPU copy's.
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> R {
    if super::supported(t) {
        f(values(t))
    } else {
        let c = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        f(values(&c))
    }
}

/// Writes the (n, p) matrix `t` column by column into `cols` (p slices of n
/// f64 values): the R layer's data-frame columns. Blocks of rows go to the
/// kernels' pool (each block's values stay in L1 across the columns).
pub fn columns_into(t: &Tensor, cols: &mut [&mut [f64]]) {
    use rayon::prelude::*;
    const BLOCK: usize = 1024;
    let size = t.size();
    let (n, p) = (size[0] as usize, size[1] as usize);
    assert!(
        cols.len() == p && cols.iter().all(|c| c.len() == n),
        "p columns of n values"
    );
    if n == 0 || p == 0 {
        return;
    }
    // blocks[b][j]: rows b·BLOCK.. of column j
    let mut blocks: Vec<Vec<&mut [f64]>> = (0..n.div_ceil(BLOCK))
        .map(|_| Vec::with_capacity(p))
        .collect();
    for col in cols.iter_mut() {
        for (b, piece) in col.chunks_mut(BLOCK).enumerate() {
            blocks[b].push(piece);
        }
    }
    with_values(t, |v| {
        crate::runtime::with_pool(|| {
            blocks
                .into_par_iter()
                .enumerate()
                .for_each(|(b, mut pieces)| {
                    let r0 = b * BLOCK;
                    let r1 = (r0 + BLOCK).min(n);
                    let rows = &v[r0 * p..r1 * p];
                    for (j, piece) in pieces.iter_mut().enumerate() {
                        for (o, row) in piece.iter_mut().zip(rows.chunks_exact(p)) {
                            *o = row[j] as f64;
                        }
                    }
                })
        })
    })
}

/// The elements of a contiguous f32 CPU tensor, to write (panics for any
/// other tensor).
///
/// # Safety
/// No other handle (shallow clone, view) of `t`'s storage may be used, by
/// libtorch or through another slice, while the returned slice lives.
pub(crate) unsafe fn values_mut(t: &mut Tensor) -> &mut [f32] {
    assert!(super::supported(t), "a contiguous f32 CPU tensor");
    // SAFETY: checked contiguous f32 CPU storage of numel() elements, alive
    // while `t` is borrowed; exclusive use is the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel()) }
}

/// A row-major matrix in a slice: `rows` rows of `cols` values, `ld` apart
/// (a column range of a wider matrix starts the slice at its first column).
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

impl<'a> Strided<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        assert!(cols <= ld, "rows do not overlap");
        assert!(
            rows == 0 || data.len() >= (rows - 1) * ld + cols,
            "the slice holds every row"
        );
        Strided {
            data,
            rows,
            cols,
            ld,
        }
    }

    /// Rows of `cols` values, back to back.
    pub fn dense(data: &'a [f32], cols: usize) -> Self {
        Strided::new(data, data.len() / cols.max(1), cols, cols)
    }

    /// Rows `first .. first + n`.
    pub fn rows(self, first: usize, n: usize) -> Strided<'a> {
        assert!(first + n <= self.rows, "rows inside the matrix");
        let data = if n == 0 {
            &self.data[..0]
        } else {
            &self.data[first * self.ld..(first + n - 1) * self.ld + self.cols]
        };
        Strided::new(data, n, self.cols, self.ld)
    }

    /// The micro-kernels' view of it (valid while the borrow lasts).
    pub fn mat(self) -> Mat {
        Mat {
            ptr: self.data.as_ptr(),
            rows: self.rows,
            cols: self.cols,
            ld: self.ld,
        }
    }
}

/// A 2-D f32 CPU tensor with contiguous rows (e.g. a column range of a
/// contiguous matrix), read only (panics for any other tensor).
pub(crate) fn view(t: &Tensor) -> Strided<'_> {
    assert!(rows_contiguous(t), "an f32 CPU matrix with contiguous rows");
    let (size, stride) = (t.size(), t.stride());
    let (rows, cols) = (size[0] as usize, *size.get(1).unwrap_or(&1) as usize);
    let ld = if size.len() == 2 {
        stride[0] as usize
    } else {
        1
    };
    let len = if rows == 0 { 0 } else { (rows - 1) * ld + cols };
    // SAFETY: the tensor's storage holds its rows, `ld` apart from its data
    // pointer (checked layout), alive while `t` is borrowed; read only, as
    // for `values`.
    let data = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, len) };
    Strided::new(data, rows, cols, ld)
}

/// Cuts a slice of rows of `width` values into consecutive pieces of
/// `counts[i]` rows each (the tasks' rows).
pub(crate) fn split_rows<T>(
    mut v: &mut [T],
    width: usize,
    counts: impl IntoIterator<Item = usize>,
) -> Vec<&mut [T]> {
    let mut out = Vec::new();
    for n in counts {
        let (head, tail) = std::mem::take(&mut v).split_at_mut(n * width);
        out.push(head);
        v = tail;
    }
    assert!(v.is_empty(), "the pieces cover every row");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_and_splits_cover_the_rows() {
        let t = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]);
        let cols = t.narrow(1, 1, 2);
        let v = view(&cols);
        assert_eq!((v.rows, v.cols, v.ld, v.data.len()), (3, 2, 4, 10));
        assert_eq!(v.rows(1, 2).data, &[5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        let mut w = vec![0u8; 12];
        let parts = split_rows(&mut w, 2, [1, 3, 2]);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [2, 6, 4]);
    }

    /// Columns of a matrix spanning several row blocks (2,500 × 3, the last
    /// block short), of a non-contiguous and a double tensor (copied first),
    /// and of empty ones: every value lands in its row of its column.
    #[test]
    fn columns_are_the_matrix_transposed() {
        let t = Tensor::arange(7500, (Kind::Float, Device::Cpu)).view([2500, 3]);
        for t in [
            t.shallow_clone(),
            t.tr().contiguous().tr(),
            t.to_kind(Kind::Double),
        ] {
            let (n, p) = (t.size()[0] as usize, t.size()[1] as usize);
            let mut data = vec![f64::NAN; n * p];
            let mut cols: Vec<&mut [f64]> = data.chunks_mut(n).collect();
            columns_into(&t, &mut cols);
            let want = Vec::<f64>::from(&t.to_kind(Kind::Double).tr().contiguous().view([-1]));
            assert_eq!(data, want);
        }
        for (n, p) in [(0, 3), (4, 0)] {
            let t = Tensor::zeros(&[n, p], (Kind::Float, Device::Cpu));
            let mut data = vec![0f64; (n * p) as usize];
            let mut cols: Vec<&mut [f64]> = data
                .chunks_mut((n as usize).max(1))
                .take(p as usize)
                .collect();
            if n == 0 {
                cols = (0..p).map(|_| &mut [][..]).collect();
            }
            columns_into(&t, &mut cols);
        }
    }
}
