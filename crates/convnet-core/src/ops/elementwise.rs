//! Element-wise arithmetic between two tensors of the same shape: [`add_in_place`], the join
//! of a residual block and the sum of the gradients that reach one tensor; and the parallel
//! chunk loop the element-wise kernels share.

use rayon::prelude::*;

use crate::cpu::simd::{Simd, multiversion};
use crate::error::Result;
use crate::tensor::{Tensor, check_same_shape};

const ADD_OP: &str = "add";

/// Elements per parallel task of the element-wise loops; smaller slices stay on one thread.
pub(crate) const CHUNK: usize = 1 << 14;

/// `acc += other`, element by element; both must have the same shape. Large tensors are
/// added in parallel chunks (each element's sum is the same whatever the split).
///
/// ```
/// use convnet_core::{Tensor, add_in_place};
/// let mut acc = Tensor::new([2], vec![1.0, 2.0])?;
/// add_in_place(&mut acc, &Tensor::new([2], vec![0.5, -2.0])?)?;
/// assert_eq!(acc.data(), &[1.5, 0.0]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn add_in_place(acc: &mut Tensor, other: &Tensor) -> Result<()> {
    check_same_shape(ADD_OP, ("the sum", acc), ("the tensor added", other))?;
    zip_chunks(acc.data_mut(), other.data(), add_slices);
    Ok(())
}

/// `f(a chunk, the matching chunk of b)` over the two slices, in parallel when they are longer
/// than one [`CHUNK`].
pub(crate) fn zip_chunks(a: &mut [f32], b: &[f32], f: impl Fn(&mut [f32], &[f32]) + Send + Sync) {
    if a.len() <= CHUNK {
        f(a, b);
    } else {
        a.par_chunks_mut(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .for_each(|(a, b)| f(a, b));
    }
}

// A plain loop that the compiler vectorizes, compiled once per instruction set.
multiversion!(fn add_slices(a: &mut [f32], b: &[f32]) => add_impl);

/// `a[i] += b[i]` over the common length.
#[inline(always)]
fn add_impl<S: Simd>(_: S, a: &mut [f32], b: &[f32]) {
    for (a, &b) in a.iter_mut().zip(b) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::testing::for_each_simd;

    fn values(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37) % 101) as f32 * scale - 1.0)
            .collect()
    }

    #[test]
    fn add_matches_the_scalar_sum_on_every_length_and_instruction_set() {
        for_each_simd!(|name, s| {
            for n in [0, 1, 7, 8, 15, 16, 17, 31, 33, 100] {
                let (mut a, b) = (values(n, 0.25), values(n, -0.5));
                let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
                add_impl(s, &mut a, &b);
                assert_eq!(a, want, "{name} n = {n}");
            }
        });
    }

    #[test]
    fn add_in_place_sums_large_tensors_in_parallel_chunks() {
        let n = 3 * CHUNK + 5;
        let mut acc = Tensor::new([n], values(n, 0.25)).unwrap();
        let other = Tensor::new([n], values(n, 0.75)).unwrap();
        let want: Vec<f32> = acc
            .data()
            .iter()
            .zip(other.data())
            .map(|(x, y)| x + y)
            .collect();
        add_in_place(&mut acc, &other).unwrap();
        assert_eq!(acc.data(), want.as_slice());
    }

    #[test]
    fn add_in_place_leaves_a_tensor_sharing_its_storage_alone() {
        let mut acc = Tensor::full([2, 2], 1.0).unwrap();
        let shared = acc.clone();
        add_in_place(&mut acc, &shared).unwrap();
        assert_eq!(acc.data(), &[2.0; 4]);
        assert_eq!(shared.data(), &[1.0; 4]);
    }

    #[test]
    fn add_in_place_refuses_tensors_of_different_shapes() {
        let mut acc = Tensor::zeros([2, 3]).unwrap();
        let err = add_in_place(&mut acc, &Tensor::zeros([3, 2]).unwrap()).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "add: the sum has shape [2, 3] but the tensor added has shape [3, 2]"
        );
        assert_eq!(acc.data(), &[0.0; 6], "nothing written");
    }
}
