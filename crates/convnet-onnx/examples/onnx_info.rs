//! Reads ONNX model files and prints what the reader found: producer, opsets, inputs and
//! outputs with their shapes, operator counts, and parameters.
//!
//!     cargo run --release -p convnet-onnx --example onnx_info -- MODEL.onnx...
//!
//! Exits with status 1 and the reader's error on the first file that is refused.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use convnet_onnx::{OnnxModel, ValueInfo, shape_text};

fn shape(v: &ValueInfo) -> String {
    v.shape.as_deref().map_or("?".into(), shape_text)
}

fn describe(model: &OnnxModel, seconds: f64) {
    let g = &model.graph;
    println!("{}", model.path.display());
    println!(
        "  producer {} {}, IR {}, opsets {}",
        model.producer_name,
        model.producer_version,
        model.ir_version,
        model
            .opsets
            .iter()
            .map(|o| format!(
                "{}:{}",
                if o.domain.is_empty() {
                    "ai.onnx"
                } else {
                    &o.domain
                },
                o.version
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for v in &g.inputs {
        println!("  input  {} {}", v.name, shape(v));
    }
    for v in &g.outputs {
        println!("  output {} {}", v.name, shape(v));
    }
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &g.nodes {
        *ops.entry(n.op_type.as_str()).or_default() += 1;
    }
    let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
    println!("  {} nodes: {}", g.nodes.len(), ops.join(", "));
    let params: usize = g.initializers.iter().map(|t| t.len()).sum();
    let constants: usize = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "Constant")
        .filter_map(|n| n.get_tensor("value").ok().flatten())
        .map(|t| t.len())
        .sum();
    println!(
        "  {} initializers ({params} elements), {constants} elements in Constant nodes, {} \
         value_info; read in {seconds:.3} s",
        g.initializers.len(),
        g.value_info.len()
    );
}

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: onnx_info MODEL.onnx...");
        return ExitCode::from(2);
    }
    for path in paths {
        let started = Instant::now();
        match OnnxModel::load(&path) {
            Ok(model) => describe(&model, started.elapsed().as_secs_f64()),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
