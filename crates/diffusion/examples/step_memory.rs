//! Peak heap memory of one training step at batch 64: of the U-Net for the `fashion-small` and `fashion-base` models,
//! and of the autoencoder for `fashion-vae`.
//!
//! ```text
//! cargo run --release -p diffuse-diffusion --example step_memory [-- CONFIG...]     (default: every one of them)
//! ```
//!
//! Every heap allocation of the process goes through a counting wrapper around the system allocator, which keeps the
//! bytes live now and the most ever live. For each model the example reports
//!
//! - the resident training state once the [`Trainer`] is built: parameters, their EMA copy and the two AdamW moment
//!   buffers (16 bytes per parameter in all);
//! - one whole `Trainer::step` (draw, noise, forward, weighted loss, backward, clipping, AdamW, EMA): its peak above
//!   the resident state;
//! - the same forward and backward spelled out, to split that peak: the bytes the graph holds when the forward pass
//!   ends (the tensors the backward rules saved), the peak during backward, what is still held when backward has run
//!   every rule, and the gradients (4 bytes per parameter).
//!
//! Figures are bytes of heap in use, not the process's resident set (the allocator may hold freed pages). The tensor
//! crate's host cache is turned off here, so a freed tensor's buffer is freed at once and the figures are what the
//! step itself holds; in a normal run the cache keeps freed buffers (up to 1 GiB) for the next step to reuse.

use diffuse_autograd::Var;
use diffuse_diffusion::autoencoder::{AutoencoderTrainConfig, AutoencoderTrainer, Reconstruction};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::schedule::SchedulerConfig;
use diffuse_diffusion::train::{LossWeighting, TrainConfig, Trainer};
use diffuse_models::unet::{UNet2DModel, UNetConfig};
use diffuse_models::vae::AutoencoderKLConfig;
use diffuse_nn::{EmaWarmup, LrSchedule};
use diffuse_tensor::backend::host_cache;
use diffuse_tensor::{Device, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes it hands out.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to `System` with the caller's arguments, so `System`'s guarantees hold; the counters
// are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the bytes live now.
fn reset_peak() -> usize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

const BATCH: usize = 64;

fn config() -> TrainConfig {
    TrainConfig {
        seed: 0,
        steps: 1000,
        batch_size: BATCH,
        lr: LrSchedule::Constant { lr: 1e-4 },
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-8,
        weight_decay: 0.0,
        grad_clip: Some(1.0),
        ema_decay: 0.9999,
        ema_warmup: EmaWarmup::Fraction,
        scheduler: SchedulerConfig::default(),
        loss_weighting: LossWeighting::Uniform,
        importance_sampling: false,
        null_class: Some(10),
        label_dropout: 0.1,
        caption_dropout: 0.0,
        hflip: false,
        crop_pad: 0,
        max_nonfinite: 3,
        score_matching: None,
        vlb_weight: 0.001,
        image_condition: None,
    }
}

/// One batch of 28×28 images with ten classes: a byte pattern, since only the shapes matter here.
fn dataset() -> Result<Dataset, Box<dyn std::error::Error>> {
    let pixels: Vec<u8> = (0..BATCH * 28 * 28).map(|i| (i * 37 % 251) as u8).collect();
    let labels = (0..BATCH as u32).map(|i| i % 10).collect();
    Ok(Dataset::from_u8(&pixels, Some(labels), 1, 28, 28)?)
}

/// `diffuse vae train`'s settings without the optional terms.
fn autoencoder_config() -> AutoencoderTrainConfig {
    AutoencoderTrainConfig {
        seed: 0,
        steps: 1000,
        batch_size: BATCH,
        lr: LrSchedule::Constant { lr: 1e-4 },
        adam_beta1: 0.5,
        adam_beta2: 0.9,
        adam_eps: 1e-8,
        weight_decay: 0.0,
        grad_clip: None,
        ema_decay: 0.999,
        ema_warmup: EmaWarmup::Fraction,
        reconstruction: Reconstruction::L1,
        kl_weight: 1e-6,
        perceptual_weight: 0.0,
        adversarial: None,
        hflip: false,
        max_nonfinite: 3,
        scale_images: 2,
    }
}

/// The autoencoder's resident state and the peak of one `AutoencoderTrainer::step` (encode, sample, decode, the
/// reconstruction gradient, one backward pass, AdamW, EMA).
fn measure_autoencoder(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let model = AutoencoderKLConfig::named(name)?;
    let data = dataset()?;
    let before = live();
    let mut trainer = AutoencoderTrainer::new_on(autoencoder_config(), model, Device::Cpu, None)?;
    let resident = live() - before;
    let params = trainer.store.numel();
    let start = reset_peak();
    trainer.step(&data)?;
    let step_peak = peak() - start;
    println!("{name}: {params} parameters, batch {BATCH}");
    println!(
        "  resident: parameters + EMA + AdamW moments    {:>11}  ({:.1} bytes/parameter)",
        mib(resident),
        resident as f64 / params as f64
    );
    println!(
        "  one AutoencoderTrainer::step, peak above resident {:>11}",
        mib(step_peak)
    );
    println!(
        "  peak of the step in all                     {:>11}",
        mib(resident + step_peak)
    );
    Ok(())
}

fn measure(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    if AutoencoderKLConfig::named(name).is_ok() {
        return measure_autoencoder(name);
    }
    let unet = UNetConfig::named(name)?;
    let data = dataset()?;
    let before = live();
    let mut trainer = Trainer::new(config(), |store| UNet2DModel::new(unet.clone(), store))?;
    let resident = live() - before;
    let params = trainer.store.numel();

    // The forward and backward pass alone, on a batch of the same shape.
    let x_t = Var::constant(Tensor::randn(&[BATCH, 1, 28, 28], 1, 0, Device::Cpu)?);
    let target = Var::constant(Tensor::randn(&[BATCH, 1, 28, 28], 2, 0, Device::Cpu)?);
    let t: Vec<f64> = (0..BATCH).map(|i| (i * 15) as f64).collect();
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 11).collect();
    let start = reset_peak();
    let loss = trainer
        .model
        .forward(&x_t, &t, Some(&labels))?
        .sub(&target)?
        .square()?
        .mean_all()?;
    let after_forward = live() - start;
    let grads = loss.backward()?;
    let backward_peak = peak() - start;
    let graph_after_backward = live() - start;
    drop(loss);
    let gradients = live() - start;
    drop(grads);

    // One whole training step.
    let start = reset_peak();
    trainer.step(&data)?;
    let step_peak = peak() - start;

    let per_param = |bytes: usize| bytes as f64 / params as f64;
    println!("{name}: {params} parameters, batch {BATCH}");
    println!(
        "  resident: parameters + EMA + AdamW moments    {:>11}  ({:.1} bytes/parameter)",
        mib(resident),
        per_param(resident)
    );
    println!(
        "  one Trainer::step, peak above resident      {:>11}",
        mib(step_peak)
    );
    println!(
        "  peak of the step in all                     {:>11}",
        mib(resident + step_peak)
    );
    println!("  split (forward + backward alone):");
    println!(
        "    graph when the forward ends               {:>11}  (tensors saved for backward)",
        mib(after_forward)
    );
    println!(
        "    peak during backward                      {:>11}",
        mib(backward_peak)
    );
    println!(
        "    graph + gradients after the last rule     {:>11}",
        mib(graph_after_backward)
    );
    println!(
        "    gradients                                 {:>11}  ({:.1} bytes/parameter)",
        mib(gradients),
        per_param(gradients)
    );
    let state = 16 * params; // parameters, gradients, AdamW m and v: 4 bytes each
    println!(
        "  parameters + gradients + AdamW moments      {:>11};  the rest of the peak {:>11}",
        mib(state),
        mib((resident + step_peak).saturating_sub(state))
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let names = if names.is_empty() {
        ["fashion-small", "fashion-base", "fashion-vae"]
            .map(String::from)
            .to_vec()
    } else {
        names
    };
    host_cache::set_limit(0);
    for name in &names {
        measure(name)?;
    }
    Ok(())
}
