//! 1x1 convolutions with stride 1 and no padding: the input of one image and group already is
//! the im2col matrix `[C_g, H*W]`, so each is one GEMM with no copy.
//!
//! - forward: `Y[K_g, HW] = W[K_g, C_g] * X[C_g, HW]`,
//! - input gradient: `dX[C_g, HW] = W^T * dY[K_g, HW]`,
//! - weight gradient: `dW[K_g, C_g] = sum_n dY[K_g, HW] * X^T`.

use super::params::Conv2dGeometry;
use crate::cpu::linalg::{Mat, MatMut, gemm};
use crate::cpu::parallel::{Split, sum_over_parts};

/// Forward: `y` (`[N, K, H, W]`) is overwritten.
pub(crate) fn forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let (cg, kg, hw) = (g.in_per_group(), g.out_per_group(), g.in_hw[0] * g.in_hw[1]);
    let split = Split::new(g.batch * g.groups);
    // Task t = n * groups + grp owns output channels grp*kg.. of image n.
    split.run_chunks(y, kg * hw, |task, y_g| {
        let (n, grp) = (task / g.groups, task % g.groups);
        if let Some(b) = b {
            for (row, &bias) in y_g.chunks_exact_mut(hw).zip(&b[grp * kg..]) {
                row.fill(bias);
            }
        }
        gemm(
            MatMut::row_major(y_g, kg, hw),
            Mat::row_major(&w[grp * kg * cg..][..kg * cg], kg, cg),
            Mat::row_major(&x[(n * g.in_channels + grp * cg) * hw..][..cg * hw], cg, hw),
            b.is_some(),
            split.gemm_threads,
        );
    });
}

/// Input gradient: `gx` (`[N, C, H, W]`) is overwritten.
pub(crate) fn input_grad(g: &Conv2dGeometry, gy: &[f32], w: &[f32], gx: &mut [f32]) {
    let (cg, kg, hw) = (g.in_per_group(), g.out_per_group(), g.in_hw[0] * g.in_hw[1]);
    let split = Split::new(g.batch * g.groups);
    split.run_chunks(gx, cg * hw, |task, gx_g| {
        let (n, grp) = (task / g.groups, task % g.groups);
        gemm(
            MatMut::row_major(gx_g, cg, hw),
            Mat::row_major(&w[grp * kg * cg..][..kg * cg], kg, cg).t(),
            Mat::row_major(
                &gy[(n * g.out_channels + grp * kg) * hw..][..kg * hw],
                kg,
                hw,
            ),
            false,
            split.gemm_threads,
        );
    });
}

/// Weight gradient: `gw` (`[K, C_g, 1, 1]`) is overwritten.
pub(crate) fn weight_grad(g: &Conv2dGeometry, gy: &[f32], x: &[f32], gw: &mut [f32]) {
    let (cg, kg, hw) = (g.in_per_group(), g.out_per_group(), g.in_hw[0] * g.in_hw[1]);
    sum_over_parts(g.batch, gw, |images, acc, gemm_threads| {
        for n in images {
            for grp in 0..g.groups {
                let x_g = &x[(n * g.in_channels + grp * cg) * hw..][..cg * hw];
                let gy_g = &gy[(n * g.out_channels + grp * kg) * hw..][..kg * hw];
                gemm(
                    MatMut::row_major(&mut acc[grp * kg * cg..][..kg * cg], kg, cg),
                    Mat::row_major(gy_g, kg, hw),
                    Mat::row_major(x_g, cg, hw).t(),
                    true,
                    gemm_threads,
                );
            }
        }
    });
}
