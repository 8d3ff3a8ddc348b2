//! Time each layer of the reference model in a training step (forward and backward), to see
//! where a step's time goes; then whole steps through the model (with its fusions).
//!
//!     cargo run --release -p convnet --example profile_step [-- BATCH_SIZE [STEPS]]

use std::time::Instant;

use convnet::layers::ForwardCtx;
use convnet::{Model, ModelSpec};
use convnet_core::{Tensor, cross_entropy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batch: usize = std::env::args().nth(1).map_or(Ok(128), |s| s.parse())?;
    // As training does: freed blocks stay in the process, so steps do not fault pages in.
    convnet_core::cpu::keep_freed_memory();
    let spec = ModelSpec::from_toml(include_str!("../../../models/fashion_cnn.toml"))?;
    let mut model = Model::from_spec(&spec, 0)?;
    let x = Tensor::from_fn([batch, 1, 28, 28], |i| {
        ((i * 7919) % 255) as f32 / 127.0 - 1.0
    })?;
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let n = model.nodes().len();
    let (mut fwd, mut bwd) = (vec![0.0f64; n], vec![0.0f64; n]);
    let reps: usize = std::env::args().nth(2).map_or(Ok(5), |s| s.parse())?;
    let mut total = 0.0;
    for rep in 0..reps + 1 {
        let start = Instant::now();
        // Forward node by node, timing each, handing each output over to the next layer as
        // the model does (a chain: each output has one reader).
        let mut value = x.clone();
        for (i, node) in model.nodes_mut().iter_mut().enumerate() {
            let t = Instant::now();
            value = node
                .layer
                .forward(vec![value], &ForwardCtx::train(0, rep as u64))?;
            if rep > 0 {
                fwd[i] += t.elapsed().as_secs_f64();
            }
        }
        let out = cross_entropy(&value, &labels, 0.0)?;
        let mut g = out.grad_input;
        for i in (0..n).rev() {
            let t = Instant::now();
            let mut grads = model.nodes_mut()[i].layer.backward(g, i > 0)?;
            if rep > 0 {
                bwd[i] += t.elapsed().as_secs_f64();
            }
            g = match grads.remove(0) {
                Some(gi) => gi,
                None => break,
            };
        }
        if rep > 0 {
            total += start.elapsed().as_secs_f64();
        }
    }
    println!(
        "batch {batch}, {} thread(s), mean of {reps} steps (optimizer step not included)",
        rayon::current_num_threads()
    );
    println!(
        "{:<14} {:<12} {:>9} {:>9}",
        "layer", "type", "fwd ms", "bwd ms"
    );
    for (i, node) in model.nodes().iter().enumerate() {
        println!(
            "{:<14} {:<12} {:>9.2} {:>9.2}",
            node.name,
            node.kind,
            1e3 * fwd[i] / reps as f64,
            1e3 * bwd[i] / reps as f64
        );
    }
    let (f, b): (f64, f64) = (fwd.iter().sum(), bwd.iter().sum());
    println!(
        "{:<27} {:>9.2} {:>9.2}   step {:.2} ms",
        "total",
        1e3 * f / reps as f64,
        1e3 * b / reps as f64,
        1e3 * total / reps as f64
    );
    // The same steps through the model, which fuses what the layer-by-layer loop above
    // cannot (batch norm + ReLU).
    let mut total = 0.0;
    for rep in 0..reps + 1 {
        let start = Instant::now();
        let y = model.forward(&x, ForwardCtx::train(0, rep as u64))?;
        let out = cross_entropy(&y, &labels, 0.0)?;
        model.backward(&out.grad_input)?;
        if rep > 0 {
            total += start.elapsed().as_secs_f64();
        }
    }
    println!(
        "through the model ({} batch norm(s) with ReLU fused, {} of them with the max pooling \
         too): step {:.2} ms",
        model.fused_relus().len(),
        model.fused_max_pools().len(),
        1e3 * total / reps as f64
    );
    Ok(())
}
