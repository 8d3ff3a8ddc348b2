//! A batch norm whose output only a ReLU reads runs with the ReLU fused into its passes in
//! training, and with the max pooling after that too where only it reads the ReLU
//! (`Model::forward_all`). These tests hold the fused model to the unfused one bit for bit
//! (the unfused run: the same model asked to capture the batch norms' outputs, which keeps
//! them apart), and check where fusion must not happen.

use convnet::layers::ForwardCtx;
use convnet::model::BackwardRequest;
use convnet::{Model, ModelSpec};
use convnet_core::Tensor;

/// conv-bn-relu twice, a pool and a head; then a batch norm read by a ReLU and by an add (not
/// fused), and a batch norm + ReLU + max pooling at the end of the features (all three
/// fused).
const MODEL: &str = r#"
[model]
input = [2, 8, 8]

[[layer]]
name = "c1"
type = "conv2d"
out_channels = 4
kernel = 3
padding = 1

[[layer]]
name = "bn1"
type = "batchnorm2d"

[[layer]]
name = "r1"
type = "relu"

[[layer]]
name = "c2"
type = "conv2d"
out_channels = 4
kernel = 3
padding = 1

[[layer]]
name = "bn2"
type = "batchnorm2d"

[[layer]]
name = "r2"
type = "relu"

[[layer]]
name = "skip"
type = "add"
inputs = ["r2", "bn2"]

[[layer]]
name = "bn3"
type = "batchnorm2d"

[[layer]]
name = "r3"
type = "relu"

[[layer]]
name = "pool"
type = "max_pool2d"
kernel = 2

[[layer]]
name = "flat"
type = "flatten"

[[layer]]
name = "fc"
type = "linear"
out_features = 3
"#;

fn model() -> Model {
    Model::from_spec(&ModelSpec::from_toml(MODEL).unwrap(), 3).unwrap()
}

fn input() -> Tensor {
    Tensor::from_fn([5, 2, 8, 8], |i| ((i * 7919 % 97) as f32 - 48.0) / 17.0).unwrap()
}

/// Bits of every value.
fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

/// Every parameter's gradient and every buffer's value, by name, as bits.
fn state(model: &Model) -> Vec<(String, Vec<u32>)> {
    let mut all: Vec<(String, Vec<u32>)> = (model.params().into_iter())
        .map(|(name, p)| (name, bits(&p.grad)))
        .collect();
    for (name, b) in model.buffers() {
        if let convnet::layers::Buffer::Tensor(t) = b {
            all.push((name, bits(t)));
        }
    }
    all
}

fn index(model: &Model, name: &str) -> usize {
    model.node_index(name).unwrap()
}

#[test]
fn a_training_step_with_fused_relus_is_the_unfused_step_to_the_bit() {
    let (mut fused, mut plain) = (model(), model());
    let x = input();
    let ctx = ForwardCtx::train(1, 0);
    let y = fused.forward(&x, ctx).unwrap();
    // bn1 and bn3 fuse; bn2 is read by the add too. bn3 takes the pooling as well.
    assert_eq!(
        fused.fused_relus(),
        [index(&fused, "bn1"), index(&fused, "bn3")]
    );
    assert_eq!(fused.fused_max_pools(), [index(&fused, "bn3")]);
    let keep_apart = [index(&plain, "bn1"), index(&plain, "bn3")];
    let (y_plain, _) = plain.forward_capture(&x, ctx, &keep_apart).unwrap();
    assert!(plain.fused_relus().is_empty());
    assert_eq!(bits(&y), bits(&y_plain));
    let g = Tensor::from_fn(y.dims().to_vec(), |i| (i % 7) as f32 - 3.0).unwrap();
    fused.backward(&g).unwrap();
    plain.backward(&g).unwrap();
    let (a, b) = (state(&fused), state(&plain));
    assert_eq!(a.len(), b.len());
    for ((name, a), (_, b)) in a.iter().zip(&b) {
        assert_eq!(a, b, "{name}");
    }
    // Some gradient reached the first conv (the masks do not zero everything).
    let grads = fused.params();
    let (_, c1) = grads.iter().find(|(n, _)| n == "c1.weight").unwrap();
    assert!(c1.grad.data().iter().any(|&v| v != 0.0));
}

#[test]
fn gradients_asked_at_a_fused_batch_norm_or_its_relu_are_the_unfused_ones() {
    let x = input();
    let ctx = ForwardCtx::train(1, 0);
    let (bn1, r1, bn3, r3, pool) = {
        let m = model();
        let at = |name| index(&m, name);
        (at("bn1"), at("r1"), at("bn3"), at("r3"), at("pool"))
    };
    // Gradients captured at a batch norm's output (before its ReLU), at a ReLU's output, and
    // at the fused pooling's (which stays fused).
    for capture in [
        vec![bn1],
        vec![r1],
        vec![bn3, r1],
        vec![r3],
        vec![pool],
        vec![pool, r3],
    ] {
        let (mut fused, mut plain) = (model(), model());
        let y = fused.forward(&x, ctx).unwrap();
        assert_eq!(fused.fused_relus(), [bn1, bn3]);
        assert_eq!(fused.fused_max_pools(), [bn3]);
        plain.forward_capture(&x, ctx, &[bn1, bn3]).unwrap();
        let g = Tensor::from_fn(y.dims().to_vec(), |i| (i % 5) as f32 - 2.0).unwrap();
        let request = BackwardRequest {
            input: true,
            capture: &capture,
            params: true,
        };
        let a = fused.backward_with(&g, &request).unwrap();
        let b = plain.backward_with(&g, &request).unwrap();
        assert_eq!(
            bits(a.input.as_ref().unwrap()),
            bits(b.input.as_ref().unwrap())
        );
        for (ga, gb) in a.captured.iter().zip(&b.captured) {
            assert_eq!(
                bits(ga.as_ref().unwrap()),
                bits(gb.as_ref().unwrap()),
                "{capture:?}"
            );
        }
        let (sa, sb) = (state(&fused), state(&plain));
        for ((name, a), (_, b)) in sa.iter().zip(&sb) {
            assert_eq!(a, b, "{capture:?}: {name}");
        }
        let unfused = capture.contains(&bn3) || capture.contains(&r3);
        assert_eq!(fused.fused_max_pools().is_empty(), unfused, "{capture:?}");
        // A second backward pass of the same forward pass gives the same again.
        let again = fused.backward_with(&g, &request).unwrap();
        assert_eq!(
            bits(again.input.as_ref().unwrap()),
            bits(a.input.as_ref().unwrap())
        );
    }
    // Backward from a fused batch norm's own output: its plain gradient, and again from
    // the output after that.
    let (mut fused, mut plain) = (model(), model());
    fused.forward(&x, ctx).unwrap();
    plain.forward_capture(&x, ctx, &[bn1, bn3]).unwrap();
    let g = Tensor::from_fn([5, 4, 8, 8], |i| (i % 3) as f32 - 1.0).unwrap();
    let request = BackwardRequest {
        input: true,
        ..BackwardRequest::default()
    };
    let a = fused.backward_from(bn1, &g, &request).unwrap();
    let b = plain.backward_from(bn1, &g, &request).unwrap();
    assert_eq!(
        bits(a.input.as_ref().unwrap()),
        bits(b.input.as_ref().unwrap())
    );
    let a = fused.backward_from(r1, &g, &request).unwrap();
    let b = plain.backward_from(r1, &g, &request).unwrap();
    assert_eq!(
        bits(a.input.as_ref().unwrap()),
        bits(b.input.as_ref().unwrap())
    );
    // The same from the ReLU and the batch norm whose pooling was fused, then from the
    // pooling's output again.
    assert_eq!(fused.fused_max_pools(), [bn3]);
    let g = Tensor::from_fn([5, 4, 8, 8], |i| (i % 4) as f32 - 1.5).unwrap();
    for start in [r3, bn3] {
        let a = fused.backward_from(start, &g, &request).unwrap();
        let b = plain.backward_from(start, &g, &request).unwrap();
        assert_eq!(
            bits(a.input.as_ref().unwrap()),
            bits(b.input.as_ref().unwrap())
        );
    }
    assert!(fused.fused_max_pools().is_empty());
    let g = Tensor::from_fn([5, 4, 4, 4], |i| (i % 3) as f32 - 1.0).unwrap();
    let a = fused.backward_from(pool, &g, &request).unwrap();
    let b = plain.backward_from(pool, &g, &request).unwrap();
    assert_eq!(
        bits(a.input.as_ref().unwrap()),
        bits(b.input.as_ref().unwrap())
    );
}

#[test]
fn relus_fuse_only_on_batch_statistics_and_where_nothing_else_reads_the_batch_norm() {
    let mut m = model();
    let x = input();
    // Evaluation on running statistics: no fusion.
    let eval = m.forward(&x, ForwardCtx::eval(true)).unwrap();
    assert!(m.fused_relus().is_empty());
    let (bn1, r1) = (index(&m, "bn1"), index(&m, "r1"));
    // A captured ReLU output is the fused output; a captured batch norm keeps it apart.
    let (_, cap) = m
        .forward_capture(&x, ForwardCtx::train(1, 0), &[r1])
        .unwrap();
    assert!(m.fused_relus().contains(&bn1));
    assert!(cap[0].data().iter().all(|&v| v >= 0.0));
    m.forward_capture(&x, ForwardCtx::train(1, 1), &[bn1])
        .unwrap();
    assert!(!m.fused_relus().contains(&bn1));
    // A captured pooling output is the fused output; a captured ReLU before it keeps the
    // pooling apart (the ReLU still fuses).
    let (bn3, r3, pool) = (index(&m, "bn3"), index(&m, "r3"), index(&m, "pool"));
    let (_, cap) = m
        .forward_capture(&x, ForwardCtx::train(1, 2), &[pool])
        .unwrap();
    assert_eq!(m.fused_max_pools(), [bn3]);
    assert_eq!(cap[0].dims(), [5, 4, 4, 4]);
    m.forward_capture(&x, ForwardCtx::train(1, 3), &[r3])
        .unwrap();
    assert!(m.fused_max_pools().is_empty());
    assert!(m.fused_relus().contains(&bn3));
    m.clear();
    assert!(m.fused_relus().is_empty());
    assert_eq!(eval.dims(), [5, 3]);
}
