//! Counts, not times: what one training step of a named backbone, a U-Net or a DiT (forward, the trainer's weighted MSE
//! loss on the prediction channels, backward, AdamW), or of a named cross-attention U-Net (`fashion-text`, attending
//! to contexts of 20 tokens of 64 features as in `crates/diffusion/benches/text.rs`), asks of
//! memory on the CPU, read from the host buffer cache's counters (`diffuse_tensor::backend::host_cache::counters`).
//! Per step it prints the output buffers the operations requested and their megabytes (each buffer is written once
//! by its kernel, so the megabytes are the memory the step's outputs cover, a floor on its passes over memory), and
//! how many of those requests needed a fresh allocation (a zero fill, and page faults on first touch). The counts do
//! not depend on the machine's load, so they compare two commits on a shared machine; after the first step a
//! training loop should need no fresh buffers at all.
//!
//! Run: `cargo run --release -p diffuse-diffusion --example step_counts -- [CONFIG] [BATCH] [STEPS]`
//! (defaults `fashion-small 64 3`).

use diffuse_autograd::Var;
use diffuse_models::unet_condition::{UNet2DConditionConfig, UNet2DConditionModel};
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::{AdamW, ParamStore};
use diffuse_tensor::backend::host_cache;
use diffuse_tensor::{Device, Tensor};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One forward pass of the model under count, from the noisy images to its prediction.
type Forward = Box<dyn Fn(&Var) -> Result<Var>>;

fn main() -> Result<()> {
    // As `diffuse`: the kernels' parallel loops start on this thread.
    diffuse_tensor::pool_with_calling_thread()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("fashion-small", String::as_str);
    let batch: usize = args.get(1).map_or(Ok(64), |b| b.parse())?;
    let steps: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    if batch == 0 {
        return Err("BATCH must be at least 1".into());
    }
    let store = ParamStore::new(0, Device::Cpu);
    let t: Vec<f64> = (0..batch).map(|i| ((i * 397) % 1000) as f64).collect();
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 11).collect();
    let forward: Forward = if name == "fashion-text" {
        let model = UNet2DConditionModel::new(UNet2DConditionConfig::named(name)?, &store)?;
        let context = Var::constant(Tensor::randn(&[batch, 20, 64], 3, 0, Device::Cpu)?);
        Box::new(move |x| Ok(model.forward(x, &t, &context, None)?))
    } else {
        let model = Backbone::new(BackboneConfig::named(name)?, &store)?;
        Box::new(move |x| Ok(model.forward(x, &t, Some(&labels), None)?))
    };
    let params = store.params().into_iter().map(|(_, v)| v);
    let mut opt = AdamW::new(params, AdamW::default_config(1e-4))?;
    let x = Tensor::randn(&[batch, 1, 28, 28], 1, 0, Device::Cpu)?;
    let noise = Var::constant(Tensor::randn(&[batch, 1, 28, 28], 2, 0, Device::Cpu)?);
    // The trainer's loss: each sample's MSE times its timestep weight, averaged over the batch.
    let weights: Vec<f32> = (0..batch).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
    let weights = Var::constant(Tensor::from_vec(weights, &[batch], Device::Cpu)?);

    let megabytes = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!("{name}/train_step/batch{batch}: per step, outputs requested and fresh allocations among them");
    for step in 1..=steps {
        host_cache::reset_counters();
        let out = forward(&Var::constant(x.clone()))?;
        // A DiT with a learned variance returns two channels per image channel: the first is the prediction.
        let prediction = if out.shape()[1] > 1 {
            out.narrow(1, 0, 1)?
        } else {
            out
        };
        let mse = prediction.sample_mse(&noise)?;
        let loss = mse.mul(&weights)?.mean_all()?;
        let grads = loss.backward()?;
        opt.step(&grads)?;
        let c = host_cache::counters();
        println!(
            "step {step}: {} buffers, {:.1} MB; fresh: {} buffers, {:.1} MB",
            c.buffers,
            megabytes(c.bytes),
            c.fresh_buffers,
            megabytes(c.fresh_bytes)
        );
    }
    Ok(())
}
