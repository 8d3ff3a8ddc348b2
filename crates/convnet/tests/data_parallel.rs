//! Data-parallel training without MPI: threads of one process as the workers (a
//! [`Workers`] that sums through shared memory), each training its own copy of the model on
//! its shard of every global batch.

use std::sync::{Arc, Barrier, Mutex};

use convnet::optim::{OptimizerConfig, ScheduleConfig};
use convnet::train::{
    GradientLayout, NoHooks, Parallel, TrainConfig, TrainState, Trainer, Workers, shard,
};
use convnet::{Model, ModelSpec};

mod common;
use common::reference::max_abs_diff;
use common::tiny;

/// What the threads exchange through.
#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    /// Each worker's values of the exchange in progress.
    slots: Mutex<Vec<Vec<f64>>>,
}

/// One thread of a group training together.
#[derive(Debug)]
struct ThreadWorker {
    rank: usize,
    count: usize,
    sync_bn: bool,
    shared: Arc<Shared>,
}

impl ThreadWorker {
    /// Every worker's `values`, in rank order (collective).
    fn exchange(&self, values: Vec<f64>) -> Vec<Vec<f64>> {
        self.shared.slots.lock().unwrap()[self.rank] = values;
        self.shared.barrier.wait();
        let all = self.shared.slots.lock().unwrap().clone();
        // Nobody writes the next exchange before everyone has read this one.
        self.shared.barrier.wait();
        all
    }
}

impl Workers for ThreadWorker {
    fn rank(&self) -> usize {
        self.rank
    }
    fn count(&self) -> usize {
        self.count
    }
    fn sum_f64(&self, values: &mut [f64]) -> convnet::Result<()> {
        let all = self.exchange(values.to_vec());
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().map(|w| w[i]).sum();
        }
        Ok(())
    }
    fn sum_f32(&self, values: &mut [f32]) -> convnet::Result<()> {
        let all = self.exchange(values.iter().map(|&v| f64::from(v)).collect());
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().map(|w| w[i] as f32).sum();
        }
        Ok(())
    }
    fn broadcast(&self, values: &mut [f32]) -> convnet::Result<()> {
        let all = self.exchange(values.iter().map(|&v| f64::from(v)).collect());
        for (v, &w) in values.iter_mut().zip(&all[0]) {
            *v = w as f32;
        }
        Ok(())
    }
    fn sync_batch_norm(&self) -> bool {
        self.sync_bn
    }
}

/// The tiny model without dropout (whose masks are drawn per worker).
fn spec() -> ModelSpec {
    let mut spec = tiny::spec();
    spec.layers.retain(|layer| layer.name != "drop");
    spec
}

/// Two epochs of SGD with momentum on global batches of 16, random crops.
fn config() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        optimizer: OptimizerConfig::sgd(0.05, 0.9),
        schedule: ScheduleConfig::Constant,
        ..tiny::config()
    }
}

/// Every parameter and buffer of `model`.
fn values(model: &Model) -> Vec<(String, Vec<f32>)> {
    let mut all: Vec<_> = (model.params().into_iter())
        .map(|(name, p)| (name, p.value.data().to_vec()))
        .collect();
    all.extend(model.buffers().into_iter().filter_map(|(name, b)| match b {
        convnet::layers::Buffer::Tensor(t) => Some((name, t.data().to_vec())),
        convnet::layers::Buffer::Count(_) => None,
    }));
    all
}

/// The models `count` threads end with, training together.
fn train_together(count: usize, sync_bn: bool) -> Vec<Model> {
    let shared = Arc::new(Shared {
        barrier: Barrier::new(count),
        slots: Mutex::new(vec![Vec::new(); count]),
    });
    let data = tiny::data();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..count)
            .map(|rank| {
                let (shared, data) = (shared.clone(), &data);
                scope.spawn(move || {
                    let workers = ThreadWorker {
                        rank,
                        count,
                        sync_bn,
                        shared,
                    };
                    let model = Model::from_spec(&spec(), 3).unwrap();
                    let trainer = Trainer::new(model, config(), data).unwrap();
                    let mut trainer =
                        (trainer.with_workers(Arc::new(workers), data.train.len())).unwrap();
                    trainer.run(data, &mut NoHooks).unwrap();
                    assert_eq!(trainer.is_writer(), rank == 0);
                    trainer.model
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// The model one process ends with.
fn train_alone() -> Model {
    let data = tiny::data();
    let model = Model::from_spec(&spec(), 3).unwrap();
    let mut trainer = Trainer::new(model, config(), &data).unwrap();
    trainer.run(&data, &mut NoHooks).unwrap();
    trainer.model
}

#[test]
fn sync_bn_workers_end_with_the_single_process_weights() {
    let alone = values(&train_alone());
    for count in [2, 3] {
        let models = train_together(count, true);
        for (rank, model) in models.iter().enumerate() {
            for ((name, a), (_, b)) in alone.iter().zip(values(model)) {
                let diff = max_abs_diff(a, &b);
                // Equal up to the order of float additions.
                assert!(
                    diff <= 1e-5,
                    "{count} workers, rank {rank}: {name} differs by {diff}"
                );
            }
        }
    }
}

#[test]
fn workers_without_sync_bn_hold_the_same_weights_but_not_one_process_s() {
    let models = train_together(2, false);
    let (a, b) = (values(&models[0]), values(&models[1]));
    assert_eq!(a, b, "the workers' weights differ");
    // Batch norm over shards of 8 instead of 16 images: another run.
    let alone = values(&train_alone());
    let worst = (alone.iter().zip(&a))
        .map(|((_, x), (_, y))| max_abs_diff(x, y))
        .fold(0.0, f32::max);
    assert!(
        worst > 1e-4,
        "per-shard statistics changed nothing ({worst})"
    );
}

#[test]
fn a_batch_smaller_than_the_workers_is_refused_naming_both() {
    let data = tiny::data();
    for (batch_size, count, says) in [
        (2, 3, "the batch size is 2"),
        // 96 images in batches of 19: the last holds 1.
        (19, 2, "the last batch of each epoch holds 1"),
    ] {
        let config = TrainConfig {
            batch_size,
            ..config()
        };
        let model = Model::from_spec(&spec(), 3).unwrap();
        let trainer = Trainer::new(model, config, &data).unwrap();
        let workers = ThreadWorker {
            rank: 0,
            count,
            sync_bn: false,
            shared: Arc::new(Shared {
                barrier: Barrier::new(1),
                slots: Mutex::new(vec![Vec::new(); count]),
            }),
        };
        let err = match trainer.with_workers(Arc::new(workers), data.train.len()) {
            Ok(_) => panic!("batch {batch_size} on {count} workers accepted"),
            Err(e) => e.to_string(),
        };
        for text in [says, &format!("{count} workers")] {
            assert!(err.contains(text), "no '{text}' in: {err}");
        }
    }
}

#[test]
fn shards_cover_every_position_once_in_order() {
    for len in [1, 7, 16, 128] {
        for count in 1..=4.min(len) {
            let parts: Vec<_> = (0..count).map(|r| shard(len, r, count)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[count - 1].end, len);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{len} over {count}: {sizes:?}");
        }
    }
}

#[test]
fn gradient_buckets_end_at_layer_ends_and_round_trip() {
    let mut model = Model::from_spec(&spec(), 3).unwrap();
    for (i, (_, p)) in model.params_mut().into_iter().enumerate() {
        p.grad.data_mut().iter_mut().enumerate().for_each(|(k, g)| {
            *g = (i * 1000 + k) as f32;
        });
    }
    // fc (4 x 36 + 4 = 148 values), bn (8), conv (36 + 4 = 40), the last node first.
    let layout = GradientLayout::of(&model, 100);
    assert_eq!(layout.buckets(), [0..148, 148..196]);
    let bn = model.node_index("bn").unwrap();
    let place = layout.place(bn).unwrap();
    assert_eq!(
        (place.bucket, place.values.clone(), place.completes),
        (1, 0..8, false)
    );
    let grads = |model: &Model| -> Vec<Vec<f32>> {
        (model.params().iter())
            .map(|(_, p)| p.grad.data().to_vec())
            .collect()
    };
    let before = grads(&model);
    let mut flat = vec![0.0; layout.len()];
    layout.gather(&model, &mut flat);
    // The last node's values first.
    assert_eq!(flat[..148], [before[4].clone(), before[5].clone()].concat());
    model.zero_grad();
    layout.scatter(&flat, &mut model);
    assert_eq!(grads(&model), before);
}

#[test]
fn a_training_state_claiming_fewer_than_two_workers_is_refused() {
    for workers in [0, 1] {
        let state = TrainState {
            parallel: Some(Parallel {
                workers,
                sync_batch_norm: false,
            }),
            ..TrainState::default()
        };
        let err = state.check(&config()).unwrap_err();
        assert!(err.contains(&format!("on {workers} workers")), "{err}");
    }
}
