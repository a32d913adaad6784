//! Consistency models (Song et al. 2023): a function `f(x, σ)` that maps every point of a probability-flow ODE
//! trajectory to the trajectory's origin, so that one evaluation at `σ_max` is a sample.
//!
//! Everything here is in the σ-view of the variance-preserving schedule, `x = x0 + σ·ε` ([`crate::sampler::sigmas`]):
//! the network is called on `x/√(1+σ²)` at the fractional timestep of σ and its output read as the denoised
//! `D(x, σ)` (ε → `x − σ·ε`, v → `x/(1+σ²) − σ·v/√(1+σ²)`, x0 as is).
//!
//! **The boundary condition.** Write `D` as EDM writes a denoiser, `D = c_skip^D(σ)·x + c_out^D(σ)·F` with
//! `c_skip^D = σ_d²/(σ² + σ_d²)`, `c_out^D = σ·σ_d/√(σ² + σ_d²)` (`σ_d = 0.5`, the data's standard deviation), and
//! give the same `F` the consistency model's coefficients
//!
//! `c_skip(σ) = σ_d²/((σ − σ_min)² + σ_d²)`,   `c_out(σ) = (σ − σ_min)·σ_d/√(σ² + σ_d²)`:
//!
//! `f(x, σ) = c_skip(σ)·x + c_out(σ)·F = (c_skip − r·c_skip^D)·x + r·D(x, σ)`,   `r = c_out/c_out^D = (σ − σ_min)/σ`.
//!
//! At `σ = σ_min`, `c_skip = 1` and `r = 0` exactly, so `f(x, σ_min) = x` in floating point too, whatever the network
//! says; for `σ ≫ σ_min`, `f ≈ D`, so a student that starts from a diffusion model's weights starts as its denoiser.
//! With the network's output affine in `D`, `f = A(σ)·x + B(σ)·output` ([`ConsistencyParam::coefficients`]).

use crate::error::{Error, Result};
use crate::sampler::prediction::ModelOutput;
use crate::sampler::sigmas::{sigma_to_timestep, training_sigmas};
use crate::sampler::{Condition, Denoiser, Prediction, X0Limit};
use crate::schedule::{karras_sigmas, NoiseSchedule};
use crate::train::target::scale_samples;
use crate::train::TrainableModel;
use diffuse_autograd::Var;
use diffuse_tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The data's standard deviation the parameterisation assumes (images in `[−1, 1]`).
pub const SIGMA_DATA: f64 = 0.5;
/// The largest noise level used (Karras et al.'s; a schedule whose largest σ is smaller caps it).
pub const SIGMA_MAX: f64 = 80.0;
/// The smallest noise level used, unless the schedule's smallest σ is larger.
pub const SIGMA_MIN: f64 = 0.002;
/// ρ of the Karras noise levels.
pub const RHO: f64 = 7.0;

/// The noise range and data scale of a consistency model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyParam {
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub sigma_data: f64,
}

impl ConsistencyParam {
    /// The range of a model trained on `schedule`: `[max(0.002, σ_0), min(80, σ_{T−1})]`, the levels at which its
    /// network has been trained.
    pub fn for_schedule(schedule: &NoiseSchedule) -> Result<Self> {
        let sigmas = training_sigmas(schedule)?;
        Ok(Self {
            sigma_min: sigmas[0].max(SIGMA_MIN),
            sigma_max: sigmas[sigmas.len() - 1].min(SIGMA_MAX),
            sigma_data: SIGMA_DATA,
        })
    }

    /// `c_skip(σ) = σ_d²/((σ − σ_min)² + σ_d²)`.
    pub fn c_skip(&self, sigma: f64) -> f64 {
        let d2 = self.sigma_data * self.sigma_data;
        d2 / ((sigma - self.sigma_min).powi(2) + d2)
    }

    /// `c_out(σ) = (σ − σ_min)·σ_d/√(σ² + σ_d²)`.
    pub fn c_out(&self, sigma: f64) -> f64 {
        (sigma - self.sigma_min) * self.sigma_data
            / (sigma * sigma + self.sigma_data.powi(2)).sqrt()
    }

    /// `(A, B)` with `f(x, σ) = A·x + B·output` for a network that predicts `prediction`, refusing σ outside
    /// `[σ_min, ∞)`.
    pub fn coefficients(&self, prediction: Prediction, sigma: f64) -> Result<(f64, f64)> {
        if !(sigma >= self.sigma_min && sigma.is_finite()) {
            return Err(Error::sampler(
                "sigma",
                format!(
                    "{sigma} is outside the consistency model's range [{}, ∞)",
                    self.sigma_min
                ),
            ));
        }
        let d2 = self.sigma_data * self.sigma_data;
        let r = (sigma - self.sigma_min) / sigma;
        let a = self.c_skip(sigma) - r * d2 / (sigma * sigma + d2);
        // D = d_x·x + d_o·output.
        let (d_x, d_o) = match prediction {
            Prediction::Epsilon => (1.0, -sigma),
            Prediction::Sample => (0.0, 1.0),
            Prediction::VPrediction => (
                1.0 / (1.0 + sigma * sigma),
                -sigma / (1.0 + sigma * sigma).sqrt(),
            ),
        };
        Ok((a + r * d_x, r * d_o))
    }

    /// The Karras noise levels `σ_min = σ_1 < … < σ_N = σ_max` (ascending), the discretisation of consistency
    /// distillation and training.
    pub fn levels(&self, n: usize) -> Result<Vec<f64>> {
        if n < 2 {
            return Err(Error::train(
                "levels",
                format!("{n}: consistency models need at least 2 noise levels"),
            ));
        }
        let mut levels = karras_sigmas(n, self.sigma_min, self.sigma_max, RHO)?;
        levels.reverse();
        // The ramp's ends, exactly.
        levels[0] = self.sigma_min;
        levels[n - 1] = self.sigma_max;
        Ok(levels)
    }
}

/// `(A, B)` per sample as f32.
fn per_sample(
    param: &ConsistencyParam,
    prediction: Prediction,
    sigmas: &[f64],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut a = Vec::with_capacity(sigmas.len());
    let mut b = Vec::with_capacity(sigmas.len());
    for &sigma in sigmas {
        let (ca, cb) = param.coefficients(prediction, sigma)?;
        a.push(ca as f32);
        b.push(cb as f32);
    }
    Ok((a, b))
}

/// The network's input for the σ-view sample `x`: `x/√(1+σ²)` per sample, and each σ's fractional timestep.
fn network_input(
    training_sigmas: &[f64],
    x: &Tensor,
    sigmas: &[f64],
) -> Result<(Tensor, Vec<f64>)> {
    let scale: Vec<f32> = sigmas
        .iter()
        .map(|s| (1.0 / (1.0 + s * s).sqrt()) as f32)
        .collect();
    let t = sigmas
        .iter()
        .map(|&s| sigma_to_timestep(training_sigmas, s))
        .collect();
    Ok((scale_samples(x, &scale)?, t))
}

/// A consistency function `f(x, σ)` on σ-view samples, one σ per sample.
pub trait ConsistencyFunction {
    fn apply(&self, x: &Tensor, sigmas: &[f64], cond: Condition<'_>) -> Result<Tensor>;
    /// The noise range it is defined on.
    fn param(&self) -> ConsistencyParam;
}

/// A denoising network read as a consistency function through [`ConsistencyParam::coefficients`].
pub struct NetworkConsistency<'a> {
    pub model: &'a dyn Denoiser,
    pub param: ConsistencyParam,
    /// The training σ of the network's schedule.
    pub training_sigmas: Vec<f64>,
}

impl<'a> NetworkConsistency<'a> {
    pub fn new(model: &'a dyn Denoiser, schedule: &NoiseSchedule) -> Result<Self> {
        Ok(Self {
            model,
            param: ConsistencyParam::for_schedule(schedule)?,
            training_sigmas: training_sigmas(schedule)?,
        })
    }
}

impl ConsistencyFunction for NetworkConsistency<'_> {
    fn apply(&self, x: &Tensor, sigmas: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        let (input, t) = network_input(&self.training_sigmas, x, sigmas)?;
        let out = ModelOutput::split(self.model.predict(&input, &t, cond)?, x)?.prediction;
        let (a, b) = per_sample(&self.param, self.model.prediction(), sigmas)?;
        Ok(scale_samples(x, &a)?.add(&scale_samples(&out, &b)?)?)
    }

    fn param(&self) -> ConsistencyParam {
        self.param
    }
}

/// `f_θ(x, σ)` of a network being trained, recorded for back-propagation.
pub fn consistency_forward<M: TrainableModel>(
    model: &M,
    prediction: Prediction,
    param: &ConsistencyParam,
    training_sigmas: &[f64],
    x: &Tensor,
    sigmas: &[f64],
    cond: Condition<'_>,
) -> Result<Var> {
    let (input, t) = network_input(training_sigmas, x, sigmas)?;
    let out = model.forward(&Var::constant(input), &t, cond)?;
    let channels = x.shape()[1];
    let out = if out.shape()[1] == 2 * channels {
        out.narrow(1, 0, channels)?
    } else {
        out
    };
    let (a, b) = per_sample(param, prediction, sigmas)?;
    let mut shape = vec![1; x.rank()];
    shape[0] = sigmas.len();
    let b = Var::constant(Tensor::from_vec(b, &shape, x.device())?);
    Ok(out.mul(&b)?.add(&Var::constant(scale_samples(x, &a)?))?)
}

/// The teacher's ODE solver between adjacent noise levels of consistency distillation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OdeSolver {
    /// One Euler step of `dx/dσ = (x − D)/σ`, which in the σ-view is exactly a deterministic DDIM step:
    /// `D + (σ′/σ)·(x − D)`.
    Ddim,
    /// Heun's second-order step (Karras et al. 2022, Algorithm 1), two teacher calls.
    Heun,
}

/// The σ-view denoiser `D(x, σ)` of a timestep-conditioned network, one σ per sample.
pub fn denoised(
    model: &dyn Denoiser,
    training_sigmas: &[f64],
    x: &Tensor,
    sigmas: &[f64],
    cond: Condition<'_>,
) -> Result<Tensor> {
    let (input, t) = network_input(training_sigmas, x, sigmas)?;
    let out = ModelOutput::split(model.predict(&input, &t, cond)?, x)?.prediction;
    let (mut cx, mut co) = (Vec::new(), Vec::new());
    for &s in sigmas {
        let (a, b) = match model.prediction() {
            Prediction::Epsilon => (1.0, -s),
            Prediction::Sample => (0.0, 1.0),
            Prediction::VPrediction => (1.0 / (1.0 + s * s), -s / (1.0 + s * s).sqrt()),
        };
        cx.push(a as f32);
        co.push(b as f32);
    }
    Ok(scale_samples(x, &cx)?.add(&scale_samples(&out, &co)?)?)
}

/// The σ-view denoiser of the teacher: `D(x, σ)` per sample.
pub trait SigmaDenoise {
    fn denoise(&self, x: &Tensor, sigmas: &[f64], cond: Condition<'_>) -> Result<Tensor>;
}

/// A timestep-conditioned network as a [`SigmaDenoise`].
pub struct NetworkDenoiser<'a> {
    pub model: &'a dyn Denoiser,
    pub training_sigmas: Vec<f64>,
}

impl SigmaDenoise for NetworkDenoiser<'_> {
    fn denoise(&self, x: &Tensor, sigmas: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        denoised(self.model, &self.training_sigmas, x, sigmas, cond)
    }
}

impl OdeSolver {
    /// One step of the probability-flow ODE from `x` at `from` to `to` (per sample, `to < from`), with the teacher's
    /// denoised estimate kept in range by `limit` as its samplers keep x̂0: with the run's clipping, the DDIM step is
    /// then exactly the teacher's DDIM sampler step (with the noise taken from the clipped x̂0, diffusers'
    /// `use_clipped_model_output`). An ε teacher needs it at high σ, where `D = x − σ·ε̂` multiplies the network's
    /// error by σ (up to 80).
    pub fn step(
        self,
        teacher: &dyn SigmaDenoise,
        limit: X0Limit,
        x: &Tensor,
        from: &[f64],
        to: &[f64],
        cond: Condition<'_>,
    ) -> Result<Tensor> {
        let ratio: Vec<f32> = from.iter().zip(to).map(|(f, t)| (t / f) as f32).collect();
        // D + (σ′/σ)(x − D), the Euler (DDIM) step.
        let euler = |x: &Tensor, d: &Tensor| -> Result<Tensor> {
            Ok(d.add(&scale_samples(&x.sub(d)?, &ratio)?)?)
        };
        let d = limit.apply(teacher.denoise(x, from, cond)?)?;
        let predictor = euler(x, &d)?;
        match self {
            OdeSolver::Ddim => Ok(predictor),
            OdeSolver::Heun => {
                // x + (σ′ − σ)·(slope + slope′)/2 with slope = (x − D)/σ at each end.
                let d_next = limit.apply(teacher.denoise(&predictor, to, cond)?)?;
                let inv_from: Vec<f32> = from.iter().map(|f| (1.0 / f) as f32).collect();
                let inv_to: Vec<f32> = to.iter().map(|t| (1.0 / t) as f32).collect();
                let half_dt: Vec<f32> = from
                    .iter()
                    .zip(to)
                    .map(|(f, t)| (0.5 * (t - f)) as f32)
                    .collect();
                let slope = scale_samples(&x.sub(&d)?, &inv_from)?;
                let slope_next = scale_samples(&predictor.sub(&d_next)?, &inv_to)?;
                Ok(x.add(&scale_samples(&slope.add(&slope_next)?, &half_dt)?)?)
            }
        }
    }
}

/// How far the student's output is from the target's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Distance {
    /// Mean squared difference per sample.
    L2,
    /// `√(‖a − b‖² + c²) − c` with `c = 0.00054·√d` (`d` = values per sample), Song & Dhariwal (2023).
    PseudoHuber,
    /// The shipped Fashion-MNIST classifier's activations (as the autoencoder's perceptual loss), plus L2.
    Perceptual,
}

impl Distance {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "l2" => Some(Distance::L2),
            "pseudo-huber" => Some(Distance::PseudoHuber),
            "perceptual" => Some(Distance::Perceptual),
            _ => None,
        }
    }

    /// The per-sample distance `(N,)` between `a` (recorded) and the constant `b`; the perceptual distance needs
    /// the classifier.
    pub fn per_sample(
        self,
        a: &Var,
        b: &Tensor,
        classifier: Option<&crate::eval::ImageClassifier>,
    ) -> Result<Var> {
        let dims: Vec<usize> = (1..b.rank()).collect();
        let values: usize = b.shape()[1..].iter().product();
        let diff2 = a.sub(&Var::constant(b.clone()))?.square()?;
        match self {
            Distance::L2 => Ok(diff2.mean(&dims, false)?),
            Distance::PseudoHuber => {
                let c = 0.00054 * (values as f64).sqrt();
                Ok(diff2
                    .sum(&dims, false)?
                    .add_scalar((c * c) as f32)?
                    .sqrt()?
                    .add_scalar(-c as f32)?)
            }
            Distance::Perceptual => {
                let classifier = classifier.ok_or_else(|| {
                    Error::train("distance", "the perceptual distance needs the classifier")
                })?;
                let perceptual = crate::autoencoder::loss::perceptual_distance(
                    classifier,
                    a,
                    &Var::constant(b.clone()),
                )?;
                Ok(perceptual.add(&diff2.mean(&dims, false)?)?)
            }
        }
    }
}

/// The weight `λ(σ_{n+1})` of each sample's consistency distance before the batch mean (docs/distillation.md, "An ε
/// teacher near σ_max").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelWeighting {
    /// `λ = 1`, Song et al.'s choice.
    #[default]
    Uniform,
    /// `λ(σ) = σ_d/√(σ² + σ_d²)`: for a network whose output enters `f` with coefficient `B(σ)`, `λ·|B|` is the
    /// EDM parameterisation's `c_out(σ)` (exactly so for an ε network, `|B| = σ − σ_min`), so every level's
    /// gradient reaches the network at the scale an EDM network's would.
    EdmOutput,
}

impl LevelWeighting {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "uniform" => Some(LevelWeighting::Uniform),
            "edm-output" => Some(LevelWeighting::EdmOutput),
            _ => None,
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LevelWeighting::Uniform => "uniform",
            LevelWeighting::EdmOutput => "edm-output",
        }
    }

    /// `λ(σ)` with the data scale of `param`.
    pub fn weight(self, param: &ConsistencyParam, sigma: f64) -> f64 {
        match self {
            LevelWeighting::Uniform => 1.0,
            LevelWeighting::EdmOutput => {
                param.sigma_data / (sigma * sigma + param.sigma_data * param.sigma_data).sqrt()
            }
        }
    }

    /// The batch loss `(1/N)·Σ λ(σ_i)·d_i` of the per-sample distances `(N,)` at the student's levels `sigmas`
    /// (uniform: the plain mean).
    pub fn weighted_mean(
        self,
        param: &ConsistencyParam,
        per_sample: &Var,
        sigmas: &[f64],
    ) -> Result<Var> {
        if self == LevelWeighting::Uniform {
            return Ok(per_sample.mean_all()?);
        }
        let weights: Vec<f32> = sigmas
            .iter()
            .map(|&s| self.weight(param, s) as f32)
            .collect();
        let n = weights.len();
        let device = per_sample.tensor().device();
        let w = Var::constant(Tensor::from_vec(weights, &[n], device)?);
        Ok(per_sample.mul(&w)?.mean_all()?)
    }
}

/// Multistep consistency sampling (Song et al. 2023, Algorithm 1): `x = f(σ_0·z_0, σ_0)`, then for each further level
/// `τ`: `x = f(x + √(τ² − σ_min²)·z, τ)`. `sigmas` are decreasing, the first the start (`σ_max` as a rule); the noise
/// `z_k` is Philox stream `(seed, k·n)` for `n` elements (`z_0` = the starting noise, as the other samplers'). Each
/// `f` is a clean-sample estimate, kept in range by `limit` as the samplers keep x̂0 (the identity by default).
pub fn consistency_sample(
    f: &dyn ConsistencyFunction,
    sigmas: &[f64],
    limit: X0Limit,
    shape: &[usize],
    seed: u64,
    device: diffuse_tensor::Device,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let noise = Tensor::randn(shape, seed, 0, device)?;
    consistency_sample_from(f, sigmas, limit, &noise, seed, cond)
}

/// As [`consistency_sample`] from the given unit normal starting noise.
pub fn consistency_sample_from(
    f: &dyn ConsistencyFunction,
    sigmas: &[f64],
    limit: X0Limit,
    noise: &Tensor,
    seed: u64,
    cond: Condition<'_>,
) -> Result<Tensor> {
    limit.validate()?;
    let param = f.param();
    check_sampling_sigmas(sigmas, &param)?;
    let batch = noise.shape().first().copied().unwrap_or(0);
    cond.check_batch(batch)?;
    let n = noise.numel() as u64;
    let mut x = limit.apply(f.apply(
        &noise.mul_scalar(sigmas[0] as f32)?,
        &vec![sigmas[0]; batch],
        cond,
    )?)?;
    for (k, &tau) in sigmas.iter().enumerate().skip(1) {
        let z = Tensor::randn(noise.shape(), seed, k as u64 * n, noise.device())?;
        let scale = (tau * tau - param.sigma_min * param.sigma_min).sqrt() as f32;
        x = limit.apply(f.apply(&x.add(&z.mul_scalar(scale)?)?, &vec![tau; batch], cond)?)?;
    }
    Ok(x)
}

/// Refuses sampling levels that are not strictly decreasing within `(σ_min, σ_max]`.
pub fn check_sampling_sigmas(sigmas: &[f64], param: &ConsistencyParam) -> Result<()> {
    if sigmas.is_empty() {
        return Err(Error::sampler("sigmas", "needs at least one noise level"));
    }
    for (i, &s) in sigmas.iter().enumerate() {
        if !(s > param.sigma_min && s <= param.sigma_max * (1.0 + 1e-9)) {
            return Err(Error::sampler(
                "sigmas",
                format!(
                    "{s} is outside the model's range ({}, {}]",
                    param.sigma_min, param.sigma_max
                ),
            ));
        }
        if i > 0 && s >= sigmas[i - 1] {
            return Err(Error::sampler(
                "sigmas",
                format!("must decrease: {s} follows {}", sigmas[i - 1]),
            ));
        }
    }
    Ok(())
}

/// The default levels of an `steps`-step run: `σ_max`, then the inner points of the Karras ramp of `steps + 1`
/// levels from `σ_max` to `σ_min`.
pub fn default_sampling_sigmas(param: &ConsistencyParam, steps: usize) -> Result<Vec<f64>> {
    if steps == 0 {
        return Err(Error::sampler("steps", "needs at least 1"));
    }
    let ramp = karras_sigmas(steps + 1, param.sigma_min, param.sigma_max, RHO)?;
    let mut sigmas: Vec<f64> = ramp[..steps].to_vec();
    sigmas[0] = param.sigma_max;
    Ok(sigmas)
}
