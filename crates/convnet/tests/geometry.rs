//! `summary` agrees with PyTorch on output shapes and parameter counts (fixture:
//! tools/gen_geometry_fixtures.py), for the reference model and ResNet-18, and receptive fields
//! follow the formula.

mod common;
use common::reference::repo;

use convnet::summary::{Summary, summarize};
use convnet::{Model, ModelSpec};

fn summary_of(file: &str) -> Summary {
    let spec = ModelSpec::load(&repo("models").join(file)).unwrap();
    let model = Model::from_spec(&spec, 0).unwrap();
    summarize(&model).unwrap()
}

fn fixture() -> serde_json::Value {
    let text = include_str!("fixtures/geometry.json");
    serde_json::from_str(text).unwrap()
}

/// Every PyTorch module that has a node of the same name: same output shape, same parameters.
/// Returns how many were compared.
fn compare(model: &str, file: &str) -> usize {
    let s = summary_of(file);
    let want = &fixture()[model];
    assert_eq!(
        s.total_params,
        want["total_params"].as_u64().unwrap(),
        "{model} total"
    );
    let mut compared = 0;
    for (name, layer) in want["layers"].as_object().unwrap() {
        let Some(ours) = s.layers.iter().find(|l| &l.name == name) else {
            continue;
        };
        let shape: Vec<usize> = layer["output_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(ours.output_shape, shape, "{model} {name}");
        assert_eq!(
            ours.params,
            layer["params"].as_u64().unwrap(),
            "{model} {name} params"
        );
        compared += 1;
    }
    compared
}

#[test]
fn fashion_cnn_shapes_and_parameters_agree_with_pytorch() {
    // All 19 PyTorch modules have a node of the same name.
    assert_eq!(compare("fashion_cnn", "fashion_cnn.toml"), 19);
}

#[test]
fn resnet18_shapes_and_parameters_agree_with_pytorch() {
    // Every conv, batch norm, downsample, pooling and the fc layer (PyTorch's block ReLUs are
    // one shared module, here two nodes per block).
    let n = compare("resnet18", "resnet18.toml");
    assert!(n >= 44, "compared {n}");
    let s = summary_of("resnet18.toml");
    assert_eq!(s.total_params, 11_689_512);
    let fc = s.layers.iter().find(|l| l.name == "fc").unwrap();
    assert_eq!(fc.output_shape, [1000]);
}

#[test]
fn resnet18_stem_and_first_stage_receptive_field_follows_the_formula() {
    // r = 1 + sum (k_i - 1) * prod_{j<i} s_j: conv 7/2 -> 7 (jump 2); max pool 3/2 ->
    // 7 + 2*2 = 11 (jump 4); four 3x3 convs of layer1 -> 11 + 4 * 2*4 = 43 (jump 4).
    let s = summary_of("resnet18.toml");
    let rf = |name: &str| {
        let l = s.layers.iter().find(|l| l.name == name).unwrap();
        (l.receptive_field.unwrap()[0], l.jump.unwrap()[0])
    };
    assert_eq!(rf("conv1"), (7, 2));
    assert_eq!(rf("maxpool"), (11, 4));
    assert_eq!(rf("layer1.0.conv1"), (19, 4));
    assert_eq!(rf("layer1.0.relu2"), (27, 4));
    assert_eq!(rf("layer1.1.relu2"), (43, 4));
    // The 1x1 stride-2 shortcut of layer2 sees less than its 3x3 branch; the sum sees both.
    assert_eq!(rf("layer2.0.downsample.0"), (43, 8));
    assert_eq!(rf("layer2.0.add"), (43 + 2 * 4 + 2 * 8, 8));
}
