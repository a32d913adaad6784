//! The autoencoder on `Device::Cuda(0)` held against the CPU: the same weights on both, the posterior,
//! KL and decoder outputs, and the gradients of a training loss that goes through the new `abs` and `clamp` rules
//! (composed of existing kernels: abs, relu, neg, where, clamp, sub) and every layer of the network.
//!
//! Tolerances: the forward outputs differ only by the order of f32 sums in convolutions, normalisations and
//! attention (as against diffusers), so 1e-4 of the output's scale, as in `vae_diffusers.rs`. The gradients add the
//! backward convolutions' own reorderings over at most N·H·W = 2·8·8 positions per weight and one more pass through
//! every layer, so 1e-3 of each gradient's largest magnitude.
//!
//! The test runs under `diffuse-gpu-test`'s harness: without a CUDA driver or device it is reported ignored, with the
//! reason; on a device that cannot run the kernels it fails with the driver's message.

use diffuse_autograd::Var;
use diffuse_models::vae::{AutoencoderKL, AutoencoderKLConfig};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, OpenError, Tensor};

const GPU: Device = Device::Cuda(0);

/// The device the test runs on, or why there is none.
fn open_cuda0() -> Result<Device, OpenError> {
    GPU.open().map(|()| GPU)
}

/// The configuration of the `two_levels_clamped` fixture, inline: the test binary is packed and run on another
/// machine, where the repository's fixture files are not at this build's paths.
const CONFIG: &str = r#"{
  "in_channels": 3, "out_channels": 3, "latent_channels": 3, "block_out_channels": [8, 16], "layers_per_block": 2,
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
  "norm_num_groups": 4, "sample_size": 8, "scaling_factor": 0.5, "shift_factor": 0.25
}"#;

/// The autoencoder on the CPU, its log-variance biases pushed to +25 and −40 on two channels (so that the clamp to
/// [−30, 20] engages), and the same weights built again on `gpu`.
fn twins(gpu: Device) -> [(AutoencoderKL, ParamStore); 2] {
    let config = AutoencoderKLConfig::from_json_str(CONFIG).unwrap();
    let store = ParamStore::new(3, Device::Cpu);
    let model = AutoencoderKL::new(config.clone(), &store).unwrap();
    let bias = store.get("quant_conv.bias").unwrap();
    let mut values = bias.tensor().to_vec().unwrap();
    (values[3], values[4]) = (25.0, -40.0);
    bias.tensor()
        .assign(&Tensor::from_vec(values, &[6], Device::Cpu).unwrap())
        .unwrap();
    let moved = store.to_device(gpu).unwrap();
    let on_gpu = AutoencoderKL::new(config, &moved).unwrap();
    [(model, store), (on_gpu, moved)]
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

/// The posterior, KL and decoded posterior sample, and the parameter gradients (by name) of mean |x − x̂| plus
/// 0.1·mean KL.
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

fn the_autoencoder_and_its_gradients_on_the_gpu_match_the_cpu(gpu: &Device) {
    let [(cpu_model, cpu_store), (gpu_model, gpu_store)] = twins(*gpu);
    let (cpu_out, cpu_grads) = loss_and_grads(&cpu_model, &cpu_store, Device::Cpu);
    let (gpu_out, gpu_grads) = loss_and_grads(&gpu_model, &gpu_store, *gpu);
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

fn main() {
    diffuse_gpu_test::run(
        open_cuda0,
        diffuse_gpu_test::on_gpu![the_autoencoder_and_its_gradients_on_the_gpu_match_the_cpu],
    );
}
