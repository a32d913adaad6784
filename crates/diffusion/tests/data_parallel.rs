//! Data-parallel training without MPI: N trainers on N threads, joined by an in-process collective that sums in rank
//! order, against one trainer on the whole batch. Every rank must end with the same weights, and those must be the
//! single process's to f32 reduction tolerance, with the random draws (timesteps by importance sampling, label
//! dropout, flips, noise) and shard sizes that do not divide the batch evenly.

use diffuse_autograd::{Gradients, Var};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::sampler::Condition;
use diffuse_diffusion::schedule::{PredictionType, SchedulerConfig};
use diffuse_diffusion::sde::{
    ScoreMatching, ScoreNetwork, ScoreParameterization, ScoreWeighting, Sde,
};
use diffuse_diffusion::train::collective::{all_reduce_gradients, BUCKET_ELEMENTS};
use diffuse_diffusion::train::overlap::DEFAULT_BUCKET_ELEMENTS;
use diffuse_diffusion::train::{
    Collective, LossWeighting, SingleProcess, TrainConfig, TrainableModel, Trainer,
};
use diffuse_diffusion::Result;
use diffuse_nn::{
    Conv2d, EmaWarmup, Embedding, Linear, LossScaler, LrSchedule, Module, ParamStore,
};
use diffuse_tensor::{Conv2dParams, Device, Tensor};
use std::rc::Rc;

#[path = "common/thread_collective.rs"]
mod thread_collective;
use thread_collective::ThreadCollective;

/// conv 3×3 (1 → 8) + a linear embedding of t + a class embedding, SiLU, conv 3×3 (8 → 1); an unused parameter
/// (`spare`), which must stay without a gradient.
struct TinyNet {
    conv_in: Conv2d,
    time: Linear,
    class: Embedding,
    conv_out: Conv2d,
}

const PAD1: Conv2dParams = Conv2dParams {
    stride: (1, 1),
    padding: (1, 1),
    dilation: (1, 1),
    groups: 1,
};

impl TinyNet {
    fn new(store: &ParamStore) -> Result<Self> {
        let root = store.root();
        Linear::new(&root.sub("spare"), 2, 2, false)?;
        Ok(Self {
            conv_in: Conv2d::new(&root.sub("conv_in"), 1, 8, (3, 3), PAD1, true)?,
            time: Linear::new(&root.sub("time"), 1, 8, true)?,
            class: Embedding::new(&root.sub("class"), 4, 8)?,
            conv_out: Conv2d::new(&root.sub("conv_out"), 8, 1, (3, 3), PAD1, true)?,
        })
    }
}

impl TrainableModel for TinyNet {
    fn forward(&self, x: &Var, t: &[f64], given: Condition<'_>) -> Result<Var> {
        let b = t.len();
        let tt: Vec<f32> = t.iter().map(|&t| (t / 1000.0) as f32).collect();
        let t_in = Var::constant(Tensor::from_vec(tt, &[b, 1], Device::Cpu)?);
        let mut cond = self.time.forward(&t_in)?;
        if let Some(labels) = given.class {
            let ids: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
            cond = cond.add(&self.class.forward(&ids)?)?;
        }
        let h = self
            .conv_in
            .forward(x)?
            .add(&cond.reshape(&[b, 8, 1, 1])?)?
            .silu()?;
        Ok(self.conv_out.forward(&h)?)
    }

    fn config_json(&self) -> String {
        r#"{"_class_name": "TinyNet"}"#.to_string()
    }
}

/// 30 images of 6×6 with labels 0..3.
fn dataset() -> Dataset {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..30u32 {
        let class = i % 3;
        for y in 0..6u32 {
            for x in 0..6u32 {
                let inside = x / 2 == class && (2..4).contains(&y);
                pixels.push(if inside {
                    250
                } else {
                    ((i * 7 + x * 3 + y) % 40) as u8
                });
            }
        }
        labels.push(class);
    }
    Dataset::from_u8(&pixels, Some(labels), 1, 6, 6).unwrap()
}

/// Importance sampling (its history needs every rank's losses), label dropout, flips, clipping, a batch of 6.
fn config() -> TrainConfig {
    TrainConfig {
        seed: 7,
        steps: 8,
        batch_size: 6,
        lr: LrSchedule::Constant { lr: 1e-2 },
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-8,
        weight_decay: 0.01,
        grad_clip: Some(0.5),
        ema_decay: 0.99,
        ema_warmup: EmaWarmup::Fraction,
        scheduler: SchedulerConfig {
            num_train_timesteps: 20,
            prediction_type: PredictionType::Epsilon,
            ..SchedulerConfig::default()
        },
        loss_weighting: LossWeighting::MinSnr { gamma: 5.0 },
        importance_sampling: true,
        null_class: Some(3),
        label_dropout: 0.3,
        caption_dropout: 0.0,
        hflip: true,
        crop_pad: 0,
        max_nonfinite: 3,
        score_matching: None,
        vlb_weight: 0.001,
        image_condition: None,
    }
}

/// What a rank ends with: the loss of every step, then every weight and EMA weight by name.
struct Outcome {
    losses: Vec<f64>,
    skipped: Vec<bool>,
    grad_norms: Vec<f32>,
    weights: Vec<(String, Vec<f32>)>,
}

/// Trains `config` as one rank of `collective`, with dynamic loss scaling from `scale` when given.
fn train(config: TrainConfig, collective: Rc<dyn Collective>, scale: Option<f32>) -> Outcome {
    train_overlapped(config, collective, scale, Some(DEFAULT_BUCKET_ELEMENTS))
}

/// [`train`] with the gradient all-reduce overlapped with backward in buckets of `overlap` values, or after it.
fn train_overlapped(
    config: TrainConfig,
    collective: Rc<dyn Collective>,
    scale: Option<f32>,
    overlap: Option<usize>,
) -> Outcome {
    let data = dataset();
    let mut trainer = Trainer::new(config, |s: &ParamStore| TinyNet::new(s)).unwrap();
    trainer.set_collective(collective);
    trainer.set_overlap(overlap);
    trainer.set_loss_scaler(scale.map(|s| LossScaler::new(s, 2).unwrap()));
    let (mut losses, mut skipped, mut grad_norms) = (Vec::new(), Vec::new(), Vec::new());
    while trainer.step_index() < trainer.config().steps {
        let report = trainer.step(&data).unwrap();
        losses.push(report.loss);
        skipped.push(report.skipped);
        grad_norms.extend(report.grad_norm);
    }
    let mut weights = Vec::new();
    for (prefix, store) in [("model", &trainer.store), ("ema", trainer.ema_store())] {
        for (name, p) in store.params() {
            weights.push((format!("{prefix}/{name}"), p.tensor().to_vec().unwrap()));
        }
    }
    Outcome {
        losses,
        skipped,
        grad_norms,
        weights,
    }
}

/// Trains `config` on `size` threads; every rank's outcome.
fn train_on_threads(config: &TrainConfig, size: usize, scale: Option<f32>) -> Vec<Outcome> {
    train_on_threads_overlapped(config, size, scale, Some(DEFAULT_BUCKET_ELEMENTS))
}

/// [`train_on_threads`] with the all-reduce overlapped in buckets of `overlap` values, or after backward.
fn train_on_threads_overlapped(
    config: &TrainConfig,
    size: usize,
    scale: Option<f32>,
    overlap: Option<usize>,
) -> Vec<Outcome> {
    let handles: Vec<_> = ThreadCollective::world(size)
        .into_iter()
        .map(|collective| {
            let config = config.clone();
            std::thread::spawn(move || {
                train_overlapped(config, Rc::new(collective), scale, overlap)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// One process against `size` ranks. Tolerances: a rank's loss sums its shard's per-sample losses (each the same f32
/// computation as in one process) and the ranks' partial sums are added in f64, where one process takes one f32 mean
/// over 6 samples: relative 1e-6. Gradients differ by the same reordering (a few f32 ulps); AdamW's m/√v and 8 steps
/// of lr 1e-2 keep the weights within 1e-4 of each other (each update moves a weight by at most ~lr).
fn assert_reproduces_one_process(config: TrainConfig, size: usize, scale: Option<f32>) {
    let one = train(config.clone(), Rc::new(SingleProcess), scale);
    let ranks = train_on_threads(&config, size, scale);
    for rank in &ranks[1..] {
        // Every rank summed the same values in the same order: bit-identical weights.
        assert_eq!(rank.losses, ranks[0].losses);
        assert_eq!(rank.weights, ranks[0].weights);
    }
    let many = &ranks[0];
    assert_eq!(one.skipped, many.skipped);
    for (step, (x, y)) in one.losses.iter().zip(&many.losses).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * x.abs(),
            "step {step}: loss {x} against {y}"
        );
    }
    for (x, y) in one.grad_norms.iter().zip(&many.grad_norms) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs(),
            "gradient norm {x} against {y}"
        );
    }
    assert_eq!(one.weights.len(), many.weights.len());
    let mut moved = 0.0f32;
    for ((name, a), (other, b)) in one.weights.iter().zip(&many.weights) {
        assert_eq!(name, other);
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-4,
                "{name}: {x} against {y} on {size} ranks"
            );
        }
        moved = moved.max(a.iter().map(|x| x.abs()).fold(0.0, f32::max));
    }
    assert!(moved > 0.0);
}

#[test]
fn two_ranks_reproduce_one_process() {
    assert_reproduces_one_process(config(), 2, None);
}

#[test]
fn under_loss_scaling_ranks_sum_the_scaled_gradients_and_reproduce_one_process() {
    // The ranks sum the scaled gradients and then unscale them (the scaler's overflow check sees the sum, the same
    // on every rank); a power-of-two scale that grows every 2 steps changes no rounding, so the bound is as without.
    assert_reproduces_one_process(config(), 2, Some(1024.0));
}

#[test]
fn four_ranks_with_uneven_shards_reproduce_one_process() {
    // 6 samples over 4 ranks: shards of 1, 2, 1, 2.
    assert_reproduces_one_process(config(), 4, None);
}

#[test]
fn score_matching_on_three_ranks_reproduces_one_process() {
    let config = TrainConfig {
        loss_weighting: LossWeighting::Uniform,
        importance_sampling: false,
        score_matching: Some(ScoreMatching {
            sde: Sde::ve(0.05, 10.0).unwrap(),
            parameterization: ScoreParameterization {
                network: ScoreNetwork::Epsilon,
                num_train_timesteps: 20,
            },
            weighting: ScoreWeighting::Likelihood,
            eps: 1e-5,
            noise_levels: None,
        }),
        ..config()
    };
    assert_reproduces_one_process(config, 3, None);
}

#[test]
fn overlapped_buckets_give_the_bits_of_one_pass_after_backward() {
    // Buckets of 16 values split the tiny net's parameters over many all-reduces, started as backward finishes each
    // (the first step learns the order and sums after backward). The thread collective sums every value over the
    // ranks in rank order whatever bucket carries it, so the two schedules must agree bit for bit; loss scaling
    // and the parameter no rank reaches (`spare`) take the same paths in both.
    for scale in [None, Some(256.0)] {
        let after = train_on_threads_overlapped(&config(), 3, scale, None);
        let overlapped = train_on_threads_overlapped(&config(), 3, scale, Some(16));
        for (a, o) in after.iter().zip(&overlapped) {
            assert_eq!(a.losses, o.losses);
            assert_eq!(a.grad_norms, o.grad_norms);
            assert_eq!(a.weights, o.weights);
        }
    }
}

/// The gradients of the tiny net's squared output on a fixed input.
fn tiny_gradients() -> (ParamStore, Gradients) {
    let store = ParamStore::new(0, Device::Cpu);
    let net = TinyNet::new(&store).unwrap();
    let x = Var::constant(Tensor::randn(&[2, 1, 6, 6], 1, 0, Device::Cpu).unwrap());
    let loss = net
        .forward(&x, &[3.0, 5.0], Condition::class_opt(Some(&[0, 1])))
        .unwrap()
        .square()
        .unwrap()
        .mean_all()
        .unwrap();
    (store, loss.backward().unwrap())
}

#[test]
fn buckets_sum_every_gradient_and_leave_a_parameter_no_rank_reached_without_one() {
    let (store, grads) = tiny_gradients();
    let single: Vec<(String, Option<Vec<f32>>)> = store
        .trainable()
        .into_iter()
        .map(|(name, p)| (name, grads.get(&p).map(|g| g.to_vec().unwrap())))
        .collect();
    assert!(single
        .iter()
        .any(|(name, g)| name == "spare.weight" && g.is_none()));
    // Buckets of 50 values: most parameters span a bucket boundary or share a bucket.
    for bucket in [50, BUCKET_ELEMENTS] {
        let handles: Vec<_> = ThreadCollective::world(2)
            .into_iter()
            .map(|collective| {
                let single = single.clone();
                std::thread::spawn(move || {
                    let (store, mut grads) = tiny_gradients();
                    let params = store.trainable();
                    all_reduce_gradients(&collective, &params, &mut grads, bucket).unwrap();
                    for ((name, p), (_, alone)) in params.iter().zip(&single) {
                        let summed = grads.get(p).map(|g| g.to_vec().unwrap());
                        // Both ranks hold the same gradient: the sum is exactly twice it.
                        let twice = alone
                            .as_ref()
                            .map(|g| g.iter().map(|x| 2.0 * x).collect::<Vec<f32>>());
                        assert_eq!(summed, twice, "{name} in buckets of {bucket}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
