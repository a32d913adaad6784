//! The autoencoder on `Device::Cuda(0)` held against the CPU: the same fixture folder loaded on both, the posterior,
//! KL and decoder outputs, and the gradients of a training loss that goes through the new `abs` and `clamp` rules
//! (composed of existing kernels: abs, relu, neg, where, clamp, sub) and every layer of the network.
//!
//! Tolerances: the forward outputs differ only by the order of f32 sums in convolutions, normalisations and
//! attention (as against diffusers), so 1e-4 of the output's scale, as in `vae_diffusers.rs`. The gradients add the
//! backward convolutions' own reorderings over at most N·H·W = 2·8·8 positions per weight and one more pass through
//! every layer, so 1e-3 of each gradient's largest magnitude.
//!
//! Without a CUDA driver or device, every test prints `<test>: skipped: no CUDA driver (<reason>)` and returns.

use diffuse_autograd::Var;
use diffuse_models::vae::AutoencoderKL;
use diffuse_nn::ParamStore;
use diffuse_tensor::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

const GPU: Device = Device::Cuda(0);

fn cuda_or_skip(test: &str) -> Option<()> {
    match Tensor::zeros(&[1], DType::F32, GPU) {
        Ok(_) => Some(()),
        Err(err) => {
            eprintln!("{test}: skipped: no CUDA driver ({err})");
            None
        }
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae/two_levels_clamped")
}

fn scaled_error(gpu: &Tensor, cpu: &Tensor) -> f32 {
    let (a, b) = (gpu.to_vec().unwrap(), cpu.to_vec().unwrap());
    let scale = b
        .iter()
        .fold(0f32, |m, x| m.max(x.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Mean |x − x̂| of the decoded posterior sample plus 0.1·mean KL, with its parameter gradients by name.
fn loss_and_grads(
    model: &AutoencoderKL,
    store: &ParamStore,
    device: Device,
) -> (Vec<Tensor>, Vec<(String, Tensor)>) {
    let x = Tensor::randn(&[2, 3, 8, 8], 5, 0, Device::Cpu)
        .unwrap()
        .to_device(device)
        .unwrap();
    let noise = Tensor::randn(&[2, 3, 4, 4], 6, 0, Device::Cpu)
        .unwrap()
        .to_device(device)
        .unwrap();
    let posterior = model.encode(&Var::constant(x.clone())).unwrap();
    let decoded = model
        .decode(&posterior.sample_with(&noise).unwrap())
        .unwrap();
    let kl = posterior.kl().unwrap();
    let loss = decoded
        .sub(&Var::constant(x))
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .add(&kl.mean_all().unwrap().mul_scalar(0.1).unwrap())
        .unwrap();
    let outputs = [&posterior.mean, &posterior.logvar, &kl, &decoded]
        .map(|v| v.tensor().to_device(Device::Cpu).unwrap())
        .to_vec();
    let grads = loss.backward().unwrap();
    let by_name = store
        .params()
        .into_iter()
        .map(|(name, p)| (name, grads.get(&p).unwrap().to_device(Device::Cpu).unwrap()))
        .collect();
    (outputs, by_name)
}

#[test]
fn the_autoencoder_and_its_gradients_on_the_gpu_match_the_cpu() {
    if cuda_or_skip("the_autoencoder_and_its_gradients_on_the_gpu_match_the_cpu").is_none() {
        return;
    }
    let (cpu_model, cpu_store) = AutoencoderKL::load_diffusers(&fixture(), Device::Cpu).unwrap();
    let (gpu_model, gpu_store) = AutoencoderKL::load_diffusers(&fixture(), GPU).unwrap();
    let (cpu_out, cpu_grads) = loss_and_grads(&cpu_model, &cpu_store, Device::Cpu);
    let (gpu_out, gpu_grads) = loss_and_grads(&gpu_model, &gpu_store, GPU);
    for (name, (g, c)) in ["mean", "logvar", "kl", "decoded"]
        .iter()
        .zip(gpu_out.iter().zip(&cpu_out))
    {
        let err = scaled_error(g, c);
        assert!(err < 1e-4, "{name}: scaled error {err:e}");
    }
    for ((name, g), (_, c)) in gpu_grads.iter().zip(&cpu_grads) {
        let err = scaled_error(g, c);
        assert!(err < 1e-3, "gradient of {name}: scaled error {err:e}");
    }
}
