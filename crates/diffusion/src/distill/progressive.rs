//! Progressive distillation (Salimans & Ho 2022): a student learns to take in one DDIM step what its teacher takes
//! in two, and the student of one round is the teacher of the next, halving the step count each round.
//!
//! **The grid.** A student of `N` steps is sampled by deterministic DDIM on diffusers' `trailing` timesteps (the
//! visits `t_k` of [`crate::schedule::timesteps`], from `T − 1` down; each step goes to `t − ⌊T/N⌋`, to `ᾱ = 1` below
//! zero). Its teacher goes the same way in two DDIM steps through the midpoint `t − ⌊T/2N⌋` (the teacher's own
//! `2N`-step trailing grid when `T` is divisible by `2N`, as `T = 1000` is for `N ≤ 4`; otherwise within one
//! timestep of it).
//!
//! **The target.** One deterministic DDIM step from `x_t` (with `a = √ᾱ_t`, `s = √(1−ᾱ_t)`) to level `t″` with the
//! clean-sample estimate `x̃` lands on `a″·x̃ + s″·(x_t − a·x̃)/s`. Setting this equal to the teacher's two-step
//! result `x_t″` and solving for `x̃`:
//!
//! `x̃ = (x_t″ − (s″/s)·x_t) / (a″ − (s″/s)·a)`
//!
//! (`x̃ = x_t″` on the last step, where `a″ = 1`, `s″ = 0`). A student whose x̂0 is `x̃` reproduces the teacher's
//! two steps exactly; its output target is `x̃` expressed in the run's prediction (ε, x0 or v) at `x_t`.
//!
//! **The loss.** The paper's truncated-SNR loss, `max(‖x̃ − x̂0‖², ‖ε̃ − ε̂‖²) = max(SNR_t, 1)·‖x̃ − x̂0‖²`, taken on
//! the student's x̂0 (affine in its output: ε `−s/a`, x0 1, v `−s` per unit), with one change for the clip: where
//! both of the teacher's kept x̂0 sit on a bound of the clip range, `x̃` is that bound and every x̂0 beyond it lands
//! the same, so the error there is only the part short of the bound ([`student_loss`]; [`truncated_snr_weight`] says
//! which steps an ε student leaves out).
//!
//! **Clipping.** The teacher's steps keep x̂0 in range as the run's scheduler config says (clipping, thresholding), and
//! every step here, the teacher's two and the student's one, takes its noise from the kept x̂0, `ε̂ = (x_t − a·x̂0)/s`
//! (diffusers' `use_clipped_model_output`; [`ddim_step`]). Each step is then the affine map above applied to the
//! clipped x̂0, and two of them compose into one whose x̂0 is `(w₁·x̂0₁ + w₂·x̂0₂)/(w₁ + w₂)` with positive `w`: the
//! target `x̃` lies in the clip range, where the student's own clip leaves it alone, and the student sampled the same
//! way lands exactly on the teacher. With the network's own ε̂ (diffusers' default), a clipped step is not a function
//! of x̂0 alone, `x̃` leaves the range (to |x̃| ≈ 5 on the default run), and a student that learns it lands elsewhere
//! once its sampler clips: the round made the student worse than its teacher. The student is therefore sampled with
//! the noise of the clipped x̂0 ([`super::SamplingInfo::clipped_model_output`]).

use crate::error::{Error, Result};
use crate::sampler::{Condition, Denoiser, Prediction, X0Limit};
use crate::schedule::{timesteps, NoiseSchedule, TimestepSpacing};
use crate::train::target::{convert, scale_samples};
use diffuse_autograd::Var;
use diffuse_tensor::Tensor;

/// One student step: from timestep `t` through the teacher's midpoint `mid` to `next` (`None`: `ᾱ = 1`, the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistillStep {
    pub t: usize,
    pub mid: usize,
    pub next: Option<usize>,
}

/// The steps of a student sampled with `student_steps` DDIM steps on the trailing grid of a `T`-step schedule.
pub fn student_grid(num_train_timesteps: usize, student_steps: usize) -> Result<Vec<DistillStep>> {
    let total = num_train_timesteps;
    if student_steps == 0 || 2 * student_steps > total {
        return Err(Error::train(
            "steps",
            format!(
                "a student of {student_steps} steps needs a teacher of {} steps, more than the schedule's {total} \
                 timesteps",
                2 * student_steps
            ),
        ));
    }
    let stride = total / student_steps;
    let half = total / (2 * student_steps);
    Ok(
        timesteps(TimestepSpacing::Trailing, total, student_steps, 0)?
            .into_iter()
            .map(|t| DistillStep {
                t,
                mid: t.saturating_sub(half),
                next: t.checked_sub(stride),
            })
            .collect(),
    )
}

/// `ᾱ` at `t`, 1 for `None` (diffusers' `set_alpha_to_one`).
fn alpha_bar(schedule: &NoiseSchedule, t: Option<usize>) -> Result<f64> {
    match t {
        Some(t) => Ok(schedule.alpha_bar(t)?),
        None => Ok(1.0),
    }
}

/// The clean-sample estimate x̂0 of a network output `out` (a `prediction`) at `x` per sample at timesteps `from`,
/// kept in range by `limit`.
pub fn kept_x0(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    limit: X0Limit,
    x: &Tensor,
    out: &Tensor,
    from: &[usize],
) -> Result<Tensor> {
    let (mut x0_x, mut x0_o) = (
        Vec::with_capacity(from.len()),
        Vec::with_capacity(from.len()),
    );
    for &t in from {
        let (cx, co) = convert(prediction, Prediction::Sample, schedule.alpha_bar(t)?);
        x0_x.push(cx as f32);
        x0_o.push(co as f32);
    }
    let x0 = scale_samples(x, &x0_x)?.add(&scale_samples(out, &x0_o)?)?;
    limit.apply(x0)
}

/// One deterministic DDIM step per sample from `x` at `from[b]` to `to[b]` with the clean-sample estimate `x0`, the
/// noise being the one `x0` implies, `ε̂ = (x − a·x0)/s`:
///
/// `a′·x0 + s′·ε̂ = (s′/s)·x + (a′ − (s′/s)·a)·x0`.
pub fn ddim_step_from_x0(
    schedule: &NoiseSchedule,
    x: &Tensor,
    x0: &Tensor,
    from: &[usize],
    to: &[Option<usize>],
) -> Result<Tensor> {
    let (mut keep_x, mut take_x0) = (
        Vec::with_capacity(from.len()),
        Vec::with_capacity(from.len()),
    );
    for (&t, &next) in from.iter().zip(to) {
        let (ab, ab_next) = (schedule.alpha_bar(t)?, alpha_bar(schedule, next)?);
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        let (a_next, s_next) = (ab_next.sqrt(), (1.0 - ab_next).sqrt());
        keep_x.push((s_next / s) as f32);
        take_x0.push((a_next - s_next / s * a) as f32);
    }
    Ok(scale_samples(x, &keep_x)?.add(&scale_samples(x0, &take_x0)?)?)
}

/// One deterministic DDIM step per sample: sample `b` goes from `from[b]` to `to[b]` given the network output `out`
/// (a `prediction`) at `x`. x̂0 is kept in range by `limit`, and the noise is the one that clipped x̂0 implies,
/// `ε̂ = (x − a·x̂0)/s` (diffusers' `use_clipped_model_output`), so the step
///
/// `a′·x̂0 + s′·ε̂ = (s′/s)·x + (a′ − (s′/s)·a)·x̂0`
///
/// is affine in the limited x̂0 with a positive slope. With the network's own ε̂ instead (diffusers' default), a
/// clipped x̂0 and that ε̂ no longer describe the same `x`, and the step is not a function of x̂0 alone: see the module
/// documentation for why the target needs this form.
pub fn ddim_step(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    limit: X0Limit,
    x: &Tensor,
    out: &Tensor,
    from: &[usize],
    to: &[Option<usize>],
) -> Result<Tensor> {
    let x0 = kept_x0(schedule, prediction, limit, x, out, from)?;
    ddim_step_from_x0(schedule, x, &x0, from, to)
}

/// The teacher's two DDIM steps from `x_t`: where they land and the kept x̂0 of each.
pub struct TeacherSteps {
    /// `x_t″`.
    pub landing: Tensor,
    /// The teacher's kept x̂0 at `t` and at the midpoint.
    pub x0: [Tensor; 2],
}

/// The teacher's two DDIM steps from `x_t` along each sample's step.
pub fn teacher_two_steps(
    teacher: &dyn Denoiser,
    schedule: &NoiseSchedule,
    limit: X0Limit,
    x_t: &Tensor,
    steps: &[DistillStep],
    cond: Condition<'_>,
) -> Result<TeacherSteps> {
    let prediction = teacher.prediction();
    let from: Vec<usize> = steps.iter().map(|s| s.t).collect();
    let mid: Vec<usize> = steps.iter().map(|s| s.mid).collect();
    let next: Vec<Option<usize>> = steps.iter().map(|s| s.next).collect();
    let teacher_x0 = |x: &Tensor, t: &[usize]| -> Result<Tensor> {
        let t_f: Vec<f64> = t.iter().map(|&t| t as f64).collect();
        let out = teacher.predict(x, &t_f, cond)?;
        let out = crate::sampler::prediction::ModelOutput::split(out, x)?.prediction;
        kept_x0(schedule, prediction, limit, x, &out, t)
    };
    let first = teacher_x0(x_t, &from)?;
    let mid_some: Vec<Option<usize>> = mid.iter().map(|&m| Some(m)).collect();
    let x_mid = ddim_step_from_x0(schedule, x_t, &first, &from, &mid_some)?;
    let second = teacher_x0(&x_mid, &mid)?;
    let landing = ddim_step_from_x0(schedule, &x_mid, &second, &mid, &next)?;
    Ok(TeacherSteps {
        landing,
        x0: [first, second],
    })
}

/// The clean-sample target `x̃ = (x_t″ − (s″/s)·x_t)/(a″ − (s″/s)·a)` that makes one DDIM step from `x_t` land on
/// the teacher's `x_t″` (see the module documentation).
pub fn x0_target(
    schedule: &NoiseSchedule,
    x_t: &Tensor,
    x_next: &Tensor,
    steps: &[DistillStep],
) -> Result<Tensor> {
    let mut c_next = Vec::with_capacity(steps.len());
    let mut c_t = Vec::with_capacity(steps.len());
    for step in steps {
        let ab = schedule.alpha_bar(step.t)?;
        let ab_next = alpha_bar(schedule, step.next)?;
        let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
        let (a2, s2) = (ab_next.sqrt(), (1.0 - ab_next).sqrt());
        let ratio = s2 / s;
        let denominator = a2 - ratio * a;
        if denominator <= 0.0 {
            return Err(Error::train(
                "schedule",
                format!(
                    "ᾱ does not increase from timestep {} to {:?}: no DDIM step to solve for",
                    step.t, step.next
                ),
            ));
        }
        c_next.push((1.0 / denominator) as f32);
        c_t.push((-ratio / denominator) as f32);
    }
    Ok(scale_samples(x_next, &c_next)?.add(&scale_samples(x_t, &c_t)?)?)
}

/// The target `x̃` written as the network output of a `prediction` model at `x_t`.
pub fn output_target(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    x_t: &Tensor,
    x0: &Tensor,
    steps: &[DistillStep],
) -> Result<Tensor> {
    let mut cx = Vec::with_capacity(steps.len());
    let mut c0 = Vec::with_capacity(steps.len());
    for step in steps {
        let (from_x, from_x0) =
            convert(Prediction::Sample, prediction, schedule.alpha_bar(step.t)?);
        cx.push(from_x as f32);
        c0.push(from_x0 as f32);
    }
    Ok(scale_samples(x_t, &cx)?.add(&scale_samples(x0, &c0)?)?)
}

/// The distillation target of a batch: the clean sample `x̃` and, where the run clips x̂0 elementwise to `[−r, r]`,
/// the elements pinned to a bound of the range.
pub struct Target {
    /// `x̃` ([`x0_target`]), set to the bound exactly at a pinned element.
    pub x0: Tensor,
    /// Per element: +1 where both of the teacher's kept x̂0 are `r`, so that `x̃ = r` and the student's clip sends
    /// every x̂0 ≥ r there; −1 where both are `−r`; 0 elsewhere. `None` without an elementwise clip (no clip, or
    /// dynamic thresholding, whose range depends on the whole sample).
    pub bound: Option<Tensor>,
}

/// The target of a batch from the teacher's two steps from `x_t` (see [`Target`]).
pub fn distillation_target(
    schedule: &NoiseSchedule,
    limit: X0Limit,
    x_t: &Tensor,
    teacher: &TeacherSteps,
    steps: &[DistillStep],
) -> Result<Target> {
    let x0 = x0_target(schedule, x_t, &teacher.landing, steps)?;
    let r = match (limit.threshold, limit.clip) {
        (None, Some(r)) => r as f32,
        _ => return Ok(Target { x0, bound: None }),
    };
    // The clip returns the bound itself, so "on the bound" is an exact comparison.
    let (first, second) = (teacher.x0[0].to_vec()?, teacher.x0[1].to_vec()?);
    let mut values = x0.to_vec()?;
    let mut bound = vec![0f32; values.len()];
    for (i, (&c1, &c2)) in first.iter().zip(&second).enumerate() {
        let side = if c1 == r && c2 == r {
            1.0
        } else if c1 == -r && c2 == -r {
            -1.0
        } else {
            continue;
        };
        values[i] = side * r;
        bound[i] = side;
    }
    let device = x0.device();
    Ok(Target {
        x0: Tensor::from_vec(values, x0.shape(), device)?,
        bound: Some(Tensor::from_vec(bound, x0.shape(), device)?),
    })
}

/// The per-sample loss `(N,)` of the student's output `out` (a `prediction` at `x_t`, recorded) against `target`:
/// the truncated-SNR weight ([`truncated_snr_weight`]) times the mean squared distance of the student's x̂0 from the
/// set of x̂0 that its sampler's clip sends to `x̃`. That set is `{x̃}` at a free element and the half-line beyond
/// the bound at a pinned one, so the distance there is `max(0, r − x̂0)` at the upper bound (`max(0, x̂0 + r)` at
/// the lower): zero exactly when the student's clipped DDIM step lands where the teacher's two do, and, unlike the
/// distance of the clipped x̂0 (whose gradient vanishes wherever the clip binds), with a gradient wherever it does not.
/// In the student's output, `x̂0 = A·x_t + B·out` (ε: `B = −s/a`; v: `−s`; x0: 1).
pub fn student_loss(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    x_t: &Tensor,
    out: &Var,
    target: &Target,
    steps: &[DistillStep],
) -> Result<Var> {
    let n = steps.len();
    let (mut coef_x, mut coef_out, mut weights) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for step in steps {
        let ab = schedule.alpha_bar(step.t)?;
        let (cx, co) = convert(prediction, Prediction::Sample, ab);
        coef_x.push(cx as f32);
        coef_out.push(co as f32);
        weights.push(truncated_snr_weight(prediction, ab) as f32);
    }
    let mut shape = vec![1; x_t.rank()];
    shape[0] = n;
    let device = x_t.device();
    let coef_out = Var::constant(Tensor::from_vec(coef_out, &shape, device)?);
    let x0 = out
        .mul(&coef_out)?
        .add(&Var::constant(scale_samples(x_t, &coef_x)?))?;
    let error = x0.sub(&Var::constant(target.x0.clone()))?;
    // e − b·relu(b·e): e where b = 0; min(e, 0) at the upper bound; max(e, 0) at the lower.
    let error = match &target.bound {
        Some(bound) => {
            let bound = Var::constant(bound.clone());
            error.sub(&bound.mul(&bound.mul(&error)?.relu()?)?)?
        }
        None => error,
    };
    let dims: Vec<usize> = (1..x_t.rank()).collect();
    let weights = Var::constant(Tensor::from_vec(weights, &[n], device)?);
    Ok(error.square()?.mean(&dims, false)?.mul(&weights)?)
}

/// The largest weight of an ε student's squared output error, `max(1, 1/SNR)` at `SNR = 1/100`: beyond it the
/// student's error is left out of the loss.
pub const EPSILON_WEIGHT_LIMIT: f64 = 100.0;

/// The truncated-SNR weight `max(SNR, 1)` of the squared x̂0 error at `ᾱ`, and 0 for an ε student where the weight
/// that puts on its output error, `max(SNR, 1)·(s/a)² = max(1, 1/SNR)`, exceeds [`EPSILON_WEIGHT_LIMIT`]: on the
/// trailing grid's first timestep of a schedule whose last `ᾱ` is near 0 (`1/SNR ≈ 4·10⁸` at `t = 999` of the
/// cosine schedule), `x̂0 = (x − s·ε̂)/a` divides the network's ε error by `a ≈ 5·10⁻⁵`, so the clip, through the
/// signs of errors far below what the network resolves, decides x̂0. Weighting that error (capped at the limit, as an
/// earlier version did) made it the largest term of the loss, and lowering it scrambled the signs: the student's
/// first step landed ten times further from its teacher's two than the teacher's own step (docs/distillation.md).
/// Left out, the first step keeps what the other steps' updates leave of the teacher's; to learn it, distil a v- or
/// x0-prediction teacher (the paper's reason to use them).
pub fn truncated_snr_weight(prediction: Prediction, alpha_bar: f64) -> f64 {
    let snr = alpha_bar / (1.0 - alpha_bar);
    let (_, slope) = convert(prediction, Prediction::Sample, alpha_bar);
    if prediction == Prediction::Epsilon && snr.max(1.0) * slope * slope > EPSILON_WEIGHT_LIMIT {
        0.0
    } else {
        snr.max(1.0)
    }
}
