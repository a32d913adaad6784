//! Times the U-Net's training or sampling step (the `unet` bench's cases) in a plain loop and prints the median and
//! the mean wall time and the mean process CPU time per step. On a shared machine the CPU time (read from `/proc/self/stat`, 10 ms ticks) is the
//! steadier figure; with `RAYON_NUM_THREADS=1` it compares directly with the CPU time that
//! `benches/peers/diffusers_unet.py --threads 1` prints for PyTorch.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p diffuse-diffusion --example unet_time -- CONFIG train|sample STEPS
//! [BATCH [MIN_SECONDS]]` (e.g. `fashion-small train 5 32`; the batch defaults to 64). It times at least STEPS steps
//! and, given MIN_SECONDS, keeps stepping until that many seconds have passed: the rule of
//! `benches/peers/diffusers_unet.py` (`--min-reps`, `--min-time`), beside which `benches/peers/paired_speed.sh` runs
//! it, so that both medians cover the same span of the machine's drifting speed.

use diffuse_autograd::{no_grad, Var};
use diffuse_models::unet::{UNet2DModel, UNetConfig};
use diffuse_nn::{AdamW, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::time::Instant;

const DEFAULT_BATCH: usize = 64;

/// User plus system CPU seconds of this process so far (Linux); `None` where `/proc` is unavailable.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is parenthesised and may hold spaces: utime and stime are the 12th and
    // 13th of them, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As `diffuse`: the kernels' parallel loops start on this thread.
    diffuse_tensor::pool_with_calling_thread()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: unet_time CONFIG train|sample STEPS [BATCH [MIN_SECONDS]]";
    let [name, case, steps, optional @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    if optional.len() > 2 {
        return Err(usage.into());
    }
    let batch = optional
        .first()
        .map_or(Ok(DEFAULT_BATCH), |b| b.parse::<usize>())?;
    let min_seconds = optional.get(1).map_or(Ok(0.0), |s| s.parse::<f64>())?;
    let (name, case, steps) = (name.as_str(), case.as_str(), steps.parse::<usize>()?.max(1));
    if batch == 0 {
        return Err("BATCH must be at least 1".into());
    }
    if !(min_seconds.is_finite() && min_seconds >= 0.0) {
        return Err(format!("MIN_SECONDS must be a finite number ≥ 0, not {min_seconds}").into());
    }
    let train = match case {
        "train" => true,
        "sample" => false,
        _ => return Err(usage.into()),
    };
    let store = ParamStore::new(0, Device::Cpu);
    let model = UNet2DModel::new(UNetConfig::named(name)?, &store)?;
    let params = store.params().into_iter().map(|(_, v)| v);
    let mut opt = AdamW::new(params, AdamW::default_config(1e-4))?;
    let x = Tensor::randn(&[batch, 1, 28, 28], 1, 0, Device::Cpu)?;
    let noise = Var::constant(Tensor::randn(&[batch, 1, 28, 28], 2, 0, Device::Cpu)?);
    let t: Vec<f64> = (0..batch).map(|i| ((i * 397) % 1000) as f64).collect();
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 11).collect();

    let mut step = || -> Result<(), Box<dyn std::error::Error>> {
        if train {
            let out = model.forward(&Var::constant(x.clone()), &t, Some(&labels))?;
            let loss = out.sub(&noise)?.square()?.mean_all()?;
            let grads = loss.backward()?;
            opt.step(&grads)?;
        } else {
            no_grad(|| model.forward(&Var::constant(x.clone()), &t, Some(&labels)))?;
        }
        Ok(())
    };
    step()?; // warm-up: first-touch allocations and the host cache
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let mut step_ms = Vec::with_capacity(steps);
    while step_ms.len() < steps || wall.elapsed().as_secs_f64() < min_seconds {
        let start = Instant::now();
        step()?;
        step_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let steps = step_ms.len();
    let per_step = |seconds: f64| seconds / steps as f64 * 1e3;
    let cpu = cpu_seconds()
        .zip(cpu)
        .map(|(end, start)| per_step(end - start));
    step_ms.sort_by(f64::total_cmp);
    println!(
        "unet/{name}/{case}_step/batch{batch}: {:9.1} ms median, {:9.1} ms mean wall, {} ms CPU per step",
        step_ms[steps / 2],
        per_step(wall.elapsed().as_secs_f64()),
        cpu.map_or("?".into(), |c| format!("{c:.1}"))
    );
    Ok(())
}
