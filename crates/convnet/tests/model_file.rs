//! Model files: the documented examples build and run, round-trip through `to_toml`, cover
//! every layer type, and every kind of mistake is explained with the layer and key.

use std::collections::HashSet;

mod common;
use common::reference::{FASHION, doc_examples};

use convnet::layers::{ForwardCtx, type_names};
use convnet::{Model, ModelSpec};
use convnet_core::Tensor;

fn input_for(spec: &ModelSpec, n: usize) -> Tensor {
    let [c, h, w] = spec.input;
    Tensor::from_fn([n, c, h, w], |i| ((i * 37 % 101) as f32 / 50.0) - 1.0).unwrap()
}

#[test]
fn documented_examples_build_run_and_cover_every_layer_type() {
    let examples = doc_examples();
    assert!(examples.len() >= 2, "found {} examples", examples.len());
    let mut seen = HashSet::new();
    for text in &examples {
        let spec = ModelSpec::from_toml(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for layer in &spec.layers {
            seen.insert(layer.kind.type_name());
        }
        let mut model = Model::from_spec(&spec, 3).unwrap();
        let x = input_for(&spec, 2);
        let y = model.forward(&x, ForwardCtx::train(1, 0)).unwrap();
        assert_eq!(&y.dims()[1..], model.output_shape());
        assert!(y.data().iter().all(|v| v.is_finite()));
        // Backward runs through every layer, to the input.
        let g = Tensor::full(y.dims().to_vec(), 1.0).unwrap();
        let out = model
            .backward_with(
                &g,
                &convnet::model::BackwardRequest {
                    input: true,
                    capture: &[],
                    params: true,
                },
            )
            .unwrap();
        assert_eq!(out.input.unwrap().dims(), x.dims());
    }
    let missing: Vec<_> = type_names().filter(|t| !seen.contains(t)).collect();
    assert!(missing.is_empty(), "no documented example uses {missing:?}");
}

#[test]
fn every_layer_example_has_the_documented_shapes_and_names() {
    let spec = ModelSpec::from_toml(&doc_examples()[0]).unwrap();
    let model = Model::from_spec(&spec, 0).unwrap();
    let shape = |name: &str| {
        model.nodes()[model.node_index(name).unwrap()]
            .output_shape
            .clone()
    };
    assert_eq!(shape("stem"), [8, 28, 28]);
    assert_eq!(shape("pool"), [8, 14, 14]);
    assert_eq!(shape("block.add"), [8, 14, 14]);
    assert_eq!(shape("squeeze"), [8, 3, 3]);
    assert_eq!(shape("flat"), [72]);
    assert_eq!(shape("relu"), [10]);
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"stem_act.weight".to_string()));
    assert!(
        !names.iter().any(|n| n.starts_with("block.conv1.bias")),
        "bias = false"
    );
    let buffers: Vec<String> = model.buffers().into_iter().map(|(n, _)| n).collect();
    assert!(buffers.contains(&"fc1_bn.num_batches_tracked".to_string()));
    // Unnamed layers are numbered as nn.Sequential numbers its modules.
    let pooled = Model::from_spec(&ModelSpec::from_toml(&doc_examples()[1]).unwrap(), 0).unwrap();
    let names: Vec<String> = pooled.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias"]);
}

#[test]
fn reference_model_matches_the_pytorch_recipe() {
    let spec = ModelSpec::from_toml(FASHION).unwrap();
    let model = Model::from_spec(&spec, 0).unwrap();
    // conv(1->32) BN, conv(32->32) BN, conv(32->64) BN, conv(64->64) BN, 3136->128, 128->10.
    let expected = 32 * 9
        + 32
        + 64
        + 32 * 32 * 9
        + 32
        + 64
        + 32 * 64 * 9
        + 64
        + 128
        + 64 * 64 * 9
        + 64
        + 128
        + 3136 * 128
        + 128
        + 128 * 10
        + 10;
    assert_eq!(model.param_count(), expected);
    assert_eq!(model.output_shape(), [10]);
    let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "features.0.weight");
    assert_eq!(names.last().unwrap(), "classifier.4.bias");
}

#[test]
fn to_toml_round_trips() {
    for text in doc_examples().iter().map(String::as_str).chain([FASHION]) {
        let spec = ModelSpec::from_toml(text).unwrap();
        let again = ModelSpec::from_toml(&spec.to_toml().unwrap()).unwrap();
        assert_eq!(spec, again);
    }
}

fn error_of(text: &str) -> String {
    match ModelSpec::from_toml(text).and_then(|s| Model::from_spec(&s, 0)) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn with_layers(layers: &str) -> String {
    format!("[model]\ninput = [1, 8, 8]\n{layers}")
}

#[test]
fn unknown_keys_are_errors_naming_the_layer_and_the_key() {
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"conv2d\"\nout_channels = 4\nkernal = 3\n",
    ));
    assert!(
        err.contains("layer 0 ('0', conv2d)") && err.contains("kernal"),
        "{err}"
    );
    let err = error_of(&with_layers("[[layer]]\ntype = \"relu\"\nslope = 2\n"));
    assert!(err.contains("relu") && err.contains("slope"), "{err}");
    let err = error_of("[model]\ninput = [1, 8, 8]\nsize = 3\n");
    assert!(err.contains("size"), "{err}");
    let err = error_of("[model]\ninput = [1, 8, 8]\ncolour = true\n");
    assert!(err.contains("colour"), "{err}");
    let err = error_of("[model]\ninput = [1, 8, 8]\n[optimizer]\nlr = 1\n");
    assert!(err.contains("unknown top-level key 'optimizer'"), "{err}");
}

#[test]
fn unknown_types_and_bad_values_are_errors() {
    let err = error_of(&with_layers("[[layer]]\ntype = \"conv3d\"\n"));
    assert!(
        err.contains("unknown layer type 'conv3d'") && err.contains("conv2d"),
        "{err}"
    );
    let err = error_of(&with_layers(
        "[[layer]]\nname = \"c\"\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\npadding = \"middle\"\n",
    ));
    assert!(
        err.contains("('c', conv2d)") && err.contains("padding = \"middle\""),
        "{err}"
    );
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"conv2d\"\nout_channels = -4\nkernel = 3\n",
    ));
    assert!(err.contains("conv2d"), "{err}");
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\nstride = 0\n",
    ));
    assert!(err.contains("stride"), "{err}");
    let err = error_of(&with_layers("[[layer]]\ntype = \"dropout\"\np = 1.5\n"));
    assert!(err.contains("dropout") && err.contains("1.5"), "{err}");
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\npadding_mode = \"mirror\"\n",
    ));
    assert!(err.contains("padding_mode = \"mirror\""), "{err}");
    let err = error_of(&with_layers("[[layer]]\nout_channels = 4\n"));
    assert!(err.contains("missing `type`"), "{err}");
    let err = error_of("[model]\ninput = [1, 8]\n");
    assert!(err.contains("[model]"), "{err}");
    let err = error_of("not toml at all [");
    assert!(err.contains("not valid TOML"), "{err}");
}

#[test]
fn shape_mismatches_between_layers_are_explained() {
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\n[[layer]]\nname = \"fc\"\ntype = \"linear\"\nout_features = 2\n",
    ));
    assert!(
        err.contains("('fc', linear)") && err.contains("add a flatten layer"),
        "{err}"
    );
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\n[[layer]]\ntype = \"conv2d\"\nin_channels = 3\nout_channels = 4\nkernel = 3\n",
    ));
    assert!(
        err.contains("in_channels = 3 does not match its input, which has 4"),
        "{err}"
    );
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 9\n",
    ));
    assert!(err.contains("larger than the padded input"), "{err}");
    let err = error_of(&with_layers(
        "[[layer]]\nname = \"a\"\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\n[[layer]]\ntype = \"add\"\ninputs = [\"a\", \"input\"]\n",
    ));
    assert!(
        err.contains("shapes [4, 6, 6] and [1, 8, 8] do not broadcast"),
        "{err}"
    );
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"add\"\ninputs = [\"nowhere\", \"input\"]\n",
    ));
    assert!(
        err.contains("input 'nowhere' is not an earlier layer"),
        "{err}"
    );
    let err = error_of(&with_layers(
        "[[layer]]\nname = \"x\"\ntype = \"relu\"\n[[layer]]\nname = \"x\"\ntype = \"relu\"\n",
    ));
    assert!(
        err.contains("a layer with this name comes earlier"),
        "{err}"
    );
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"relu\"\ninputs = [\"input\", \"input\"]\n",
    ));
    assert!(err.contains("takes 1 input(s), 2 given"), "{err}");
    let err = error_of(&with_layers(
        "[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"batchnorm2d\"\n",
    ));
    assert!(
        err.contains("batchnorm2d expects per-sample input [64, H, W]"),
        "{err}"
    );
}
