//! The one matrix product of the CPU ops (the `gemm` crate, which picks its kernels for the
//! CPU at run time).

use crate::Float;

/// A matrix operand: its elements and their strides `(row, column)`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, F> {
    /// The elements; every one the strides reach lies in it (checked).
    pub data: &'a [F],
    /// Elements from one row to the next.
    pub row_stride: usize,
    /// Elements from one column to the next.
    pub col_stride: usize,
}

impl<'a, F> Mat<'a, F> {
    /// A row-major matrix of `cols` columns.
    pub fn rows(data: &'a [F], cols: usize) -> Self {
        Mat {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix of `cols` columns.
    pub fn transposed(data: &'a [F], cols: usize) -> Self {
        Mat {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// Any strides.
    pub fn strided(data: &'a [F], row_stride: usize, col_stride: usize) -> Self {
        Mat {
            data,
            row_stride,
            col_stride,
        }
    }
}

/// How many threads a product may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only (the caller is one of many parallel tasks).
    One,
    /// rayon's pool, as many threads as it has (one: the calling thread).
    Rayon,
}

/// `dst[m, n] (+)= lhs[m, k] * rhs[k, n]` for `(m, n, k)`, `dst` row-major with `dst_rs`
/// elements from one row to the next; `accumulate` keeps (and adds to) the old contents of
/// `dst`, otherwise they are never read. Panics if an operand's strides reach past its slice
/// (a broken invariant of the caller, not bad input).
pub fn matmul<F: Float>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [F],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<'_, F>,
    rhs: Mat<'_, F>,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(dst_rs, 1, m, n) < dst.len(), "matmul: dst too short");
    if k > 0 {
        assert!(
            last(lhs.row_stride, lhs.col_stride, m, k) < lhs.data.len(),
            "matmul: lhs too short"
        );
        assert!(
            last(rhs.row_stride, rhs.col_stride, k, n) < rhs.data.len(),
            "matmul: rhs too short"
        );
    }
    let parallelism = match (threads, rayon::current_num_threads()) {
        (Threads::Rayon, n) if n > 1 => gemm::Parallelism::Rayon(n),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the asserts above bound the last element of each operand inside its slice, and
    // every element gemm touches lies between the first and the last for these strides. `dst`
    // is a distinct `&mut` slice, so it aliases neither input; with `accumulate` false gemm
    // does not read it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { F::ONE } else { F::ZERO },
            F::ONE,
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

    /// Against the triple loop, with every stride arrangement the ops use.
    #[test]
    fn matches_the_triple_loop() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.71).cos()).collect();
        let want = |acc: f64, r: usize, c: usize| -> f64 {
            acc + (0..k).map(|x| a[r * k + x] * b[x * n + c]).sum::<f64>()
        };
        for accumulate in [false, true] {
            for threads in [Threads::One, Threads::Rayon] {
                let mut dst = vec![0.5; m * n];
                matmul(
                    (m, n, k),
                    &mut dst,
                    n,
                    accumulate,
                    Mat::rows(&a, k),
                    Mat::rows(&b, n),
                    threads,
                );
                for r in 0..m {
                    for c in 0..n {
                        let w = want(if accumulate { 0.5 } else { 0.0 }, r, c);
                        assert!((dst[r * n + c] - w).abs() < 1e-12);
                    }
                }
            }
        }
        // b given transposed (`[n, k]` row-major).
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut dst = vec![0.0; m * n];
        matmul(
            (m, n, k),
            &mut dst,
            n,
            false,
            Mat::rows(&a, k),
            Mat::transposed(&bt, k),
            Threads::One,
        );
        assert!((dst[3 * n + 4] - want(0.0, 3, 4)).abs() < 1e-12);
    }
}
