//! diffuse's predictor–corrector sampler against diffusers' `ScoreSdeVePipeline` with `ScoreSdeVeScheduler`
//! (diffusers 0.42.1): the same closed-form score model, starting noise and per-step noise give the same model
//! inputs at every call and the same output, to 1e-4 of their largest magnitude. Fixtures:
//! `fixtures/score_sde_ve/make_fixtures.py`.

use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction};
use diffuse_diffusion::sde::{
    predictor_corrector, DenoiserScore, NoiseSource, ScoreNetwork, ScoreParameterization,
    ScoreSdeConfig,
};
use diffuse_diffusion::Result;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/score_sde_ve")
        .join(case)
}

/// The fixture's f32 tensors, and its step count.
struct Trajectory {
    noise: Vec<Tensor>,
    model_input: Vec<Tensor>,
    model_sigma: Vec<Vec<f32>>,
    mean: Tensor,
    steps: usize,
}

fn read(path: &Path) -> Trajectory {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let stacked = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let view = file.tensor(name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (view.shape().to_vec(), values)
    };
    let split = |name: &str| -> Vec<Tensor> {
        let (shape, values) = stacked(name);
        let each: usize = shape[1..].iter().product();
        values
            .chunks_exact(each)
            .map(|c| Tensor::from_slice(c, &shape[1..], Device::Cpu).unwrap())
            .collect()
    };
    let (sigma_shape, sigmas) = stacked("model_sigma");
    let (mean_shape, mean) = stacked("mean");
    let steps = file.tensor("steps").unwrap();
    assert_eq!(steps.dtype(), Dtype::I64);
    Trajectory {
        noise: split("noise"),
        model_input: split("model_input"),
        model_sigma: sigmas
            .chunks_exact(sigma_shape[1])
            .map(<[f32]>::to_vec)
            .collect(),
        mean: Tensor::from_vec(mean, &mean_shape, Device::Cpu).unwrap(),
        steps: i64::from_le_bytes(steps.data().try_into().unwrap()) as usize,
    }
}

/// Replays diffusers' draws in order.
struct Recorded {
    draws: std::vec::IntoIter<Tensor>,
}

impl NoiseSource for Recorded {
    fn next(&mut self, shape: &[usize], _device: Device) -> Result<Tensor> {
        let z = self
            .draws
            .next()
            .expect("diffuse drew more noise than diffusers");
        assert_eq!(z.shape(), shape);
        Ok(z)
    }
}

/// `score(x, σ) = (0.5·sin(3x/(1 + σ)) − x)/(1 + σ²)`, the fixture script's model, recording its inputs.
struct ClosedForm {
    calls: RefCell<Vec<(Tensor, Vec<f64>)>>,
}

impl Denoiser for ClosedForm {
    fn predict(&self, x: &Tensor, sigma: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        self.calls.borrow_mut().push((x.clone(), sigma.to_vec()));
        let per_sample = x.numel() / sigma.len();
        let out: Vec<f32> = x
            .to_vec()?
            .chunks(per_sample)
            .zip(sigma)
            .flat_map(|(xs, &s)| {
                let s = s as f32;
                xs.iter()
                    .map(move |&x| (0.5 * (3.0 * x / (1.0 + s)).sin() - x) / (1.0 + s * s))
            })
            .collect();
        Ok(Tensor::from_vec(out, x.shape(), x.device())?)
    }

    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
}

/// Largest |a − b| over the largest |b|.
fn scaled_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Tolerance: both sides run the same f32 operations in the same order except σ (f64 here, rounded; f32 powers and
/// f32 linspace in diffusers: ≤ 3e-7 relative), sin, and the norms' summation order (≤ 96 terms); the predictor's
/// `x + G²·s` cancels most of `x` (G² ≈ σ²), so a rounding of the large sample survives in the small one, growing the
/// relative difference by the ratio of successive σ (7× per step in the default case). Observed: ≤ 5.5e-6 at the
/// output. 1e-4 still catches a wrong σ grid, noise order, step-size formula or final mean (each 1e-2 or more).
const TOLERANCE: f32 = 1e-4;

#[test]
fn predictor_corrector_matches_diffusers_score_sde_ve_pipeline() {
    for case in ["two_corrections", "defaults_one_sample"] {
        let dir = fixture(case);
        let config = ScoreSdeConfig::from_json_str(
            &std::fs::read_to_string(dir.join("scheduler_config.json")).unwrap(),
        )
        .unwrap();
        let golden = read(&dir.join("trajectory.safetensors"));
        let shape = golden.noise[0].shape().to_vec();
        let network = ClosedForm {
            calls: RefCell::new(Vec::new()),
        };
        let model = DenoiserScore {
            denoiser: &network,
            sde: config.sde.clone(),
            parameterization: ScoreParameterization {
                network: ScoreNetwork::NoiseConditional,
                num_train_timesteps: config.num_train_timesteps,
            },
        };
        let mut noise = Recorded {
            draws: golden.noise.clone().into_iter(),
        };
        let options = config.pc_options(golden.steps);
        let out = predictor_corrector(
            &model,
            &options,
            &shape,
            Device::Cpu,
            &mut noise,
            Condition::NONE,
        )
        .unwrap();
        assert_eq!(noise.draws.len(), 0, "{case}: diffusers drew more noise");
        let calls = network.calls.into_inner();
        assert_eq!(calls.len(), golden.model_input.len(), "{case}: model calls");
        for (k, ((x, sigma), (want_x, want_sigma))) in calls
            .iter()
            .zip(golden.model_input.iter().zip(&golden.model_sigma))
            .enumerate()
        {
            for (s, w) in sigma.iter().zip(want_sigma) {
                assert!(
                    ((*s as f32 - w) / w).abs() < 1e-6,
                    "{case}, call {k}: σ {s} vs diffusers' {w}"
                );
            }
            let err = scaled_error(x, want_x);
            assert!(err < TOLERANCE, "{case}, call {k}: scaled error {err:e}");
        }
        let err = scaled_error(&out, &golden.mean);
        eprintln!(
            "{case}: output scaled error {err:e} after {} model calls",
            calls.len()
        );
        assert!(err < TOLERANCE, "{case}: output scaled error {err:e}");
    }
}
