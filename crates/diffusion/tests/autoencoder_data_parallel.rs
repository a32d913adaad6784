//! The autoencoder trained data-parallel without MPI: N trainers on N threads, joined by an in-process collective
//! that sums in rank order, against one trainer on the whole global batch, with flips, the discriminator switched on
//! mid-run (adaptive weight and its own step), shards of unequal size and the gradients summed during backward.
//! Every rank must end with the same bits, and those must be the single process's to f32 reduction tolerance.

use diffuse_diffusion::autoencoder::{
    AdversarialConfig, AutoencoderTrainConfig, AutoencoderTrainer, LossParts, Reconstruction,
};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::train::{Collective, SingleProcess};
use diffuse_models::vae::{AutoencoderKLConfig, PatchDiscriminatorConfig};
use diffuse_nn::{EmaWarmup, LrSchedule, ParamStore};
use diffuse_tensor::Device;
use std::rc::Rc;

#[path = "common/thread_collective.rs"]
mod thread_collective;
use thread_collective::ThreadCollective;

/// A two-level autoencoder of grey 8×8 images to 2×4×4 latents (~8k parameters).
fn tiny_vae() -> AutoencoderKLConfig {
    AutoencoderKLConfig::from_json_str(
        r#"{"in_channels": 1, "out_channels": 1, "latent_channels": 2, "block_out_channels": [8, 8],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "norm_num_groups": 4, "sample_size": 8}"#,
    )
    .unwrap()
}

/// 20 pseudo-random grey 8×8 images.
fn dataset() -> Dataset {
    let pixels: Vec<u8> = (0..20 * 64)
        .map(|i| ((i * 2_654_435_761usize) >> 7) as u8)
        .collect();
    Dataset::from_u8(&pixels, None, 1, 8, 8).unwrap()
}

/// Batch 6, flips, the discriminator from step 2 of 5, KL weighted enough to matter.
fn config() -> AutoencoderTrainConfig {
    AutoencoderTrainConfig {
        seed: 11,
        steps: 5,
        batch_size: 6,
        lr: LrSchedule::Constant { lr: 2e-3 },
        adam_beta1: 0.5,
        adam_beta2: 0.9,
        adam_eps: 1e-8,
        weight_decay: 0.0,
        grad_clip: None,
        ema_decay: 0.9,
        ema_warmup: EmaWarmup::Fraction,
        reconstruction: Reconstruction::L1,
        kl_weight: 1e-2,
        perceptual_weight: 0.0,
        adversarial: Some(AdversarialConfig {
            discriminator: PatchDiscriminatorConfig {
                in_channels: 1,
                channels: 4,
                layers: 1,
                groups: 2,
            },
            start_step: 2,
            weight: 0.5,
            lr: 2e-3,
        }),
        hflip: true,
        max_nonfinite: 3,
        scale_images: 8,
    }
}

/// What a run leaves: each step's loss terms and gradient norm, and every weight (autoencoder, EMA,
/// discriminator) as bits.
struct Outcome {
    losses: Vec<LossParts>,
    grad_norms: Vec<f32>,
    weights: Vec<(String, Vec<u32>)>,
}

fn bits(prefix: &str, store: &ParamStore) -> Vec<(String, Vec<u32>)> {
    store
        .params()
        .into_iter()
        .map(|(name, v)| {
            let values = v.tensor().to_vec().unwrap();
            (
                format!("{prefix}/{name}"),
                values.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

fn train(
    config: AutoencoderTrainConfig,
    collective: Rc<dyn Collective>,
    overlap: Option<usize>,
) -> Outcome {
    let data = dataset();
    let mut trainer = AutoencoderTrainer::new_on(config, tiny_vae(), Device::Cpu, None).unwrap();
    trainer.set_collective(collective);
    trainer.set_overlap(overlap);
    let (mut losses, mut grad_norms) = (Vec::new(), Vec::new());
    while trainer.step_index() < trainer.config().steps {
        let report = trainer.step(&data).unwrap();
        assert!(!report.skipped, "{report:?}");
        losses.push(report.loss);
        grad_norms.push(report.grad_norm.unwrap());
    }
    let mut weights = bits("vae", &trainer.store);
    weights.extend(bits("ema", trainer.ema_store()));
    weights.extend(bits(
        "discriminator",
        trainer.discriminator_store().unwrap(),
    ));
    Outcome {
        losses,
        grad_norms,
        weights,
    }
}

fn train_on_threads(
    config: &AutoencoderTrainConfig,
    size: usize,
    overlap: Option<usize>,
) -> Vec<Outcome> {
    let handles: Vec<_> = ThreadCollective::world(size)
        .into_iter()
        .map(|collective| {
            let config = config.clone();
            std::thread::spawn(move || train(config, Rc::new(collective), overlap))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// `size` ranks against one process. Every per-image quantity (encoding, noise, decoding, per-image losses, the
/// discriminator's logits) is the same f32 computation in both, since each image's forward pass reads only that
/// image; what differs is how sums over the batch are grouped: one process reduces all 6 images in one f32 pass,
/// the ranks reduce their shards and then add the shards' results. That moves each batch sum and each gradient by a
/// few f32 ulps (relative ~1e-6, on sums of at most 6·64 terms), and the reported loss terms, which are such sums,
/// by the same: hence 1e-5 relative on every loss term, λ included (a ratio of two such norms), and 1e-4 on the
/// gradient norms. Adam divides the first moment by the root of the second, so an update differs relatively by about
/// as much as the gradient: over 5 steps of lr 2e-3 the weights (O(0.1)) stay within 1e-5 (seen: 2e-7).
///
/// One parameter is left out: the attention's key bias, whose gradient is zero in exact arithmetic (adding `b` to
/// every key adds `q·b` to every score of a query, which the softmax ignores), so what backward computes for it is
/// rounding noise that changes with the summation order, and Adam's m/√v turns that noise into steps of about ±lr
/// whose signs differ between any two orders (seen: 5e-3 after 5 steps).
fn assert_reproduces_one_process(size: usize, overlap: Option<usize>) {
    let config = config();
    let one = train(config.clone(), Rc::new(SingleProcess), None);
    let ranks = train_on_threads(&config, size, overlap);
    for rank in &ranks[1..] {
        // Every rank summed the same values in the same order: the same bits everywhere.
        assert_eq!(rank.losses, ranks[0].losses);
        assert_eq!(rank.weights, ranks[0].weights);
    }
    let many = &ranks[0];
    for (step, (x, y)) in one.losses.iter().zip(&many.losses).enumerate() {
        let terms = |p: &LossParts| {
            [
                p.total,
                p.reconstruction,
                p.kl,
                p.generator,
                p.discriminator,
                p.adaptive_weight,
            ]
        };
        for (a, b) in terms(x).into_iter().zip(terms(y)) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
                "step {step} on {size} ranks: {x:?} against {y:?}"
            );
        }
        if step >= 2 {
            assert!(x.adaptive_weight > 0.0 && x.discriminator > 0.0, "{x:?}");
        }
    }
    for (x, y) in one.grad_norms.iter().zip(&many.grad_norms) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs(),
            "gradient norm {x} against {y}"
        );
    }
    assert_eq!(one.weights.len(), many.weights.len());
    let mut worst = (0.0f32, String::new());
    for ((name, a), (other, b)) in one.weights.iter().zip(&many.weights) {
        assert_eq!(name, other);
        if name.ends_with(".to_k.bias") {
            continue;
        }
        for (x, y) in a.iter().zip(b) {
            let d = (f32::from_bits(*x) - f32::from_bits(*y)).abs();
            if d.is_nan() || d > worst.0 {
                worst = (d, name.clone());
            }
        }
    }
    assert!(
        worst.0 <= 1e-5,
        "{size} ranks: weights differ by up to {} (in {})",
        worst.0,
        worst.1
    );
}

#[test]
fn two_ranks_reproduce_one_process_with_the_discriminator() {
    assert_reproduces_one_process(2, None);
}

/// 6 images over 4 ranks: shards of 1, 2, 1, 2 images; the gradients in buckets of 500 values started during
/// backward.
#[test]
fn four_ranks_with_uneven_shards_and_overlapped_buckets_reproduce_one_process() {
    assert_reproduces_one_process(4, Some(500));
}
