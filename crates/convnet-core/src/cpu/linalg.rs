//! Strided matrix views and the one call into the `gemm` crate.
//!
//! Kernels describe their operands as [`Mat`] / [`MatMut`] views (rows, columns, row stride,
//! column stride) whose extents are checked against the backing slice when the view is made,
//! so a wrong stride fails loudly instead of reading out of bounds. Transposes are free:
//! [`Mat::t`] swaps the strides.

use std::marker::PhantomData;

/// A read-only strided `rows x cols` matrix over a slice.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    ptr: *const f32,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    _data: PhantomData<&'a [f32]>,
}

/// Index one past the last element a strided view touches (0 for an empty view).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

impl<'a> Mat<'a> {
    /// A view of `data` with element `(r, c)` at `r * rs + c * cs`.
    ///
    /// Panics if the view reaches past the end of `data` (a bug in the caller, never input).
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            extent(rows, cols, rs, cs) <= data.len(),
            "matrix view {rows}x{cols} (strides {rs}, {cs}) exceeds {} elements",
            data.len()
        );
        Mat {
            ptr: data.as_ptr(),
            rows,
            cols,
            rs,
            cs,
            _data: PhantomData,
        }
    }

    /// A contiguous row-major view.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(r, c)`; panics outside the view.
    #[inline]
    pub(crate) fn get(&self, r: usize, c: usize) -> f32 {
        assert!(
            r < self.rows && c < self.cols,
            "({r}, {c}) outside {}x{}",
            self.rows,
            self.cols
        );
        // SAFETY: inside the view, whose extent was checked against its slice.
        unsafe { *self.ptr.add(r * self.rs + c * self.cs) }
    }

    /// The transpose (no copy).
    pub(crate) fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// A writable strided `rows x cols` matrix.
pub(crate) struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    _data: PhantomData<&'a mut [f32]>,
}

impl<'a> MatMut<'a> {
    /// A view of `data` with element `(r, c)` at `r * rs + c * cs`. Panics if it reaches past
    /// the end of `data`.
    pub(crate) fn new(data: &'a mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            extent(rows, cols, rs, cs) <= data.len(),
            "matrix view {rows}x{cols} (strides {rs}, {cs}) exceeds {} elements",
            data.len()
        );
        MatMut {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            rs,
            cs,
            _data: PhantomData,
        }
    }

    pub(crate) fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// A view from a raw pointer, for tiles of one output that several threads fill at once
    /// (e.g. disjoint column ranges of the same rows).
    ///
    /// # Safety
    /// Every element the view reaches must be valid for writes for `'a`, and no other thread
    /// or view may access those elements while this view lives.
    pub(crate) unsafe fn from_raw(
        ptr: *mut f32,
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        MatMut {
            ptr,
            rows,
            cols,
            rs,
            cs,
            _data: PhantomData,
        }
    }
}

/// `dst = lhs * rhs`, or `dst += lhs * rhs` when `accumulate`.
///
/// `threads > 1` lets the GEMM split the work over rayon's pool; kernels that already run one
/// GEMM per rayon task pass 1.
pub(crate) fn gemm(dst: MatMut<'_>, lhs: Mat<'_>, rhs: Mat<'_>, accumulate: bool, threads: usize) {
    assert!(
        dst.rows == lhs.rows && dst.cols == rhs.cols && lhs.cols == rhs.rows,
        "gemm shapes: dst {}x{} = lhs {}x{} * rhs {}x{}",
        dst.rows,
        dst.cols,
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the views' extents were checked against their slices (or promised by the
    // caller of `MatMut::from_raw`), `dst` is borrowed mutably so it aliases neither operand,
    // and the shapes agree (asserted above).
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.ptr,
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.ptr,
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn gemm_with_transposed_views_matches_naive() {
        let (m, k, n) = (7, 5, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.7).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        // b^T stored row-major, viewed transposed.
        let mut bt = vec![0.0; n * k];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let mut c = vec![1.0; m * n];
        gemm(
            MatMut::row_major(&mut c, m, n),
            Mat::row_major(&a, m, k),
            Mat::row_major(&bt, n, k).t(),
            false,
            1,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5);
        }
        // Accumulate: c = c + a*b = 2 * want.
        gemm(
            MatMut::row_major(&mut c, m, n),
            Mat::row_major(&a, m, k),
            Mat::row_major(&b, k, n),
            true,
            2,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-5);
        }
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn a_view_past_the_slice_is_refused() {
        let a = [0.0f32; 5];
        let _ = Mat::new(&a, 2, 3, 3, 1);
    }
}
