//! `TrainConfig::differences`: every setting in which two training configs differ, named as
//! `checkpoint.json` names it, with both values as written there.

use convnet::data::Augment;
use convnet::optim::{OptimizerConfig, ScheduleConfig};
use convnet::train::{LossKind, SettingChange, TrainConfig};

fn change(setting: &str, from: &str, to: &str) -> SettingChange {
    SettingChange {
        setting: setting.into(),
        from: from.into(),
        to: to.into(),
    }
}

#[test]
fn equal_configs_have_no_differences() {
    assert_eq!(
        TrainConfig::reference().differences(&TrainConfig::reference()),
        []
    );
}

#[test]
fn each_changed_setting_is_named_with_both_values_as_written() {
    let other = TrainConfig {
        optimizer: OptimizerConfig::adamw(0.5).with_weight_decay(5e-4),
        seed: 3,
        ..TrainConfig::reference()
    };
    assert_eq!(
        TrainConfig::reference().differences(&other),
        [
            change("optimizer.lr", "0.003", "0.5"),
            change("seed", "0", "3"),
        ]
    );
}

#[test]
fn another_kind_is_one_change_plus_the_settings_both_kinds_have() {
    let other = TrainConfig {
        optimizer: OptimizerConfig::sgd(3e-3, 0.9).with_weight_decay(1e-4),
        ..TrainConfig::reference()
    };
    assert_eq!(
        TrainConfig::reference().differences(&other),
        [
            change("optimizer.kind", "adam_w", "sgd"),
            change("optimizer.weight_decay", "0.0005", "0.0001"),
        ]
    );
}

#[test]
fn every_setting_of_a_config_is_compared() {
    let base = TrainConfig::reference();
    let changed: [(&str, TrainConfig); 8] = [
        (
            "epochs",
            TrainConfig {
                epochs: 3,
                ..base.clone()
            },
        ),
        (
            "batch_size",
            TrainConfig {
                batch_size: 64,
                ..base.clone()
            },
        ),
        (
            "schedule.kind",
            TrainConfig {
                schedule: ScheduleConfig::Constant,
                ..base.clone()
            },
        ),
        (
            "loss.kind",
            TrainConfig {
                loss: LossKind::Mse,
                ..base.clone()
            },
        ),
        (
            "loss.label_smoothing",
            TrainConfig {
                loss: LossKind::CrossEntropy {
                    label_smoothing: 0.1,
                },
                ..base.clone()
            },
        ),
        (
            "augment.hflip",
            TrainConfig {
                augment: Augment {
                    hflip: false,
                    crop_padding: 0,
                },
                ..base.clone()
            },
        ),
        (
            "augment.crop_padding",
            TrainConfig {
                augment: Augment {
                    hflip: true,
                    crop_padding: 4,
                },
                ..base.clone()
            },
        ),
        (
            "schedule.max_lr",
            TrainConfig {
                schedule: ScheduleConfig::one_cycle(0.1),
                ..base.clone()
            },
        ),
    ];
    for (setting, other) in changed {
        let names: Vec<String> = base
            .differences(&other)
            .into_iter()
            .map(|c| c.setting)
            .collect();
        assert_eq!(names, [setting], "{setting}");
    }
}
