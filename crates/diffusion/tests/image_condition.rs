//! Image-conditioned denoisers: the resizing against PyTorch, noise-conditioning augmentation against its formula,
//! the extra channels the network sees in training (recomputed from the documented streams) and in sampling, and
//! exact resumption of a super-resolution run.

use diffuse_autograd::Var;
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::image_condition::{
    downsample_box, inpainting_channels, random_mask, upsample, ImageCondition, ImageConditioned,
    Inpainting, Interpolation, NoiseAugmentation, SuperResolution,
};
use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction};
use diffuse_diffusion::schedule::{NoiseSchedule, PredictionType, SchedulerConfig};
use diffuse_diffusion::train::random::{augment_stream, noise_stream, step_rng, AUGMENT_KEY};
use diffuse_diffusion::train::{LossWeighting, TrainConfig, TrainableModel, Trainer};
use diffuse_diffusion::Result;
use diffuse_nn::{Conv2d, EmaWarmup, Embedding, Linear, LrSchedule, Module, ParamStore};
use diffuse_tensor::{Conv2dParams, Device, Tensor};
use std::cell::RefCell;

// ---- resizing -------------------------------------------------------------------------------------------------------

/// A 2×3 image; the expected values are PyTorch 2.15.0's `F.interpolate(x, size, mode, align_corners=False)`.
const IMAGE: [f32; 6] = [0.5, -1.0, 0.25, 0.75, 0.0, -0.5];

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn bilinear_and_bicubic_upsampling_match_pytorch_at_whole_and_fractional_factors() {
    // Sums of at most 16 products of f64, rounded once to f32: PyTorch's f32 arithmetic differs by a few ulps.
    let tol = 1e-6;
    let bilinear_4x6 = [
        0.5, 0.125, -0.625, -0.6875, -0.0625, 0.25, 0.5625, 0.234375, -0.421875, -0.546875,
        -0.140625, 0.0625, 0.6875, 0.453125, -0.015625, -0.265625, -0.296875, -0.3125, 0.75,
        0.5625, 0.1875, -0.125, -0.375, -0.5,
    ];
    let bicubic_4x6 = [
        0.640_178_7,
        0.065_433_5,
        -0.899_005_9,
        -0.946_994_8,
        -0.051_433_56,
        0.480_403_9,
        0.696_922_3,
        0.225_288_4,
        -0.562_110_9,
        -0.720_344_5,
        -0.160_057_06,
        0.170_097_35,
        0.790_382_4,
        0.488_578_8,
        -0.007_225_036,
        -0.347_038_27,
        -0.338_966_37,
        -0.340_995_8,
        0.847_126,
        0.648_433_7,
        0.329_669_95,
        -0.120_388_04,
        -0.447_589_87,
        -0.651_302_3,
    ];
    let bilinear_3x5 = [
        0.5, -0.1, -1.0, -0.25, 0.25, 0.625, 0.175, -0.5, -0.275, -0.125, 0.75, 0.45, 0.0, -0.3,
        -0.5,
    ];
    let bicubic_3x5 = [
        0.628_548_7,
        -0.229_899_5,
        -1.086_805_8,
        -0.341_524,
        0.449_687_6,
        0.733,
        0.161_499_77,
        -0.5,
        -0.351_499_77,
        -0.089,
        0.837_451_4,
        0.552_898_8,
        0.086_805_34,
        -0.361_475_6,
        -0.627_687_5,
    ];
    for (size, mode, want) in [
        ((4, 6), Interpolation::Bilinear, &bilinear_4x6[..]),
        ((4, 6), Interpolation::Bicubic, &bicubic_4x6[..]),
        ((3, 5), Interpolation::Bilinear, &bilinear_3x5[..]),
        ((3, 5), Interpolation::Bicubic, &bicubic_3x5[..]),
    ] {
        let got = upsample(&IMAGE, 1, (2, 3), size, mode).unwrap();
        assert_close(&got, want, tol, &format!("{mode:?} {size:?}"));
    }
    // Planes are resized independently: two planes give each plane's result.
    let two: Vec<f32> = IMAGE.iter().chain(IMAGE.iter().rev()).copied().collect();
    let got = upsample(&two, 2, (2, 3), (4, 6), Interpolation::Bilinear).unwrap();
    assert_eq!(&got[..24], &bilinear_4x6[..]);
    let reversed: Vec<f32> = IMAGE.iter().rev().copied().collect();
    assert_eq!(
        &got[24..],
        &upsample(&reversed, 1, (2, 3), (4, 6), Interpolation::Bilinear).unwrap()[..]
    );
}

#[test]
fn the_box_average_is_the_mean_of_each_block_and_refuses_a_factor_that_does_not_divide() {
    let pixels: Vec<f32> = (0..24).map(|i| i as f32).collect();
    // One plane of 4×6, blocks of 2×2: the mean of (r, c), (r, c+1), (r+1, c), (r+1, c+1).
    let got = downsample_box(&pixels, 1, (4, 6), 2).unwrap();
    assert_eq!(got, vec![3.5, 5.5, 7.5, 15.5, 17.5, 19.5]);
    // Batch 1 of one 1×1 plane, factor 1: the identity.
    assert_eq!(downsample_box(&[0.25], 1, (1, 1), 1).unwrap(), vec![0.25]);
    let err = downsample_box(&pixels, 1, (4, 6), 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("must divide"), "{err}");
    let err = upsample(&pixels, 2, (4, 6), (8, 12), Interpolation::Bilinear)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 planes of 4×6"), "{err}");
}

// ---- noise-conditioning augmentation --------------------------------------------------------------------------------

fn schedule(t: usize) -> NoiseSchedule {
    NoiseSchedule::from_config(&SchedulerConfig {
        num_train_timesteps: t,
        ..SchedulerConfig::default()
    })
    .unwrap()
}

#[test]
fn augmentation_levels_map_to_timesteps_and_noise_exactly_as_documented() {
    let aug = NoiseAugmentation {
        levels: 4,
        max_timestep: 10,
    };
    // t_k = ⌊k·t_max/(K − 1)⌋; level 0 is the clean image.
    assert_eq!(
        (0..4).map(|k| aug.timestep(k)).collect::<Vec<_>>(),
        vec![None, Some(3), Some(6), Some(10)]
    );
    let schedule = schedule(20);
    assert_eq!(aug.coefficients(&schedule, 0).unwrap(), (1.0, 0.0));
    let ab = schedule.alpha_bar(6).unwrap();
    assert_eq!(
        aug.coefficients(&schedule, 2).unwrap(),
        (ab.sqrt(), (1.0 - ab).sqrt())
    );
    let err = aug.coefficients(&schedule, 4).unwrap_err().to_string();
    assert!(err.contains("levels 0..3"), "{err}");
    // The condition: each image noised at low resolution to its level, then bilinearly upsampled.
    let sr = SuperResolution::parse("2:4", aug).unwrap();
    let low = [0.5f32, -0.25, 1.0, 0.0, -1.0, 0.75, 0.25, -0.5];
    let noise = [0.3f32, -1.2, 0.7, 2.0, -0.4, 0.1, 1.5, -0.9];
    let levels = [0u32, 3];
    let got = sr.condition(&schedule, &low, 1, &levels, &noise).unwrap();
    let (s, n) = aug.coefficients(&schedule, 3).unwrap();
    let noised: Vec<f32> = low[..4]
        .iter()
        .copied()
        .chain(
            low[4..]
                .iter()
                .zip(&noise[4..])
                .map(|(&z, &e)| (s * f64::from(z) + n * f64::from(e)) as f32),
        )
        .collect();
    let want = upsample(&noised, 2, (2, 2), (4, 4), Interpolation::Bilinear).unwrap();
    assert_eq!(got, want);
    for bad in ["14", "14:21", "28:14", "0:28", "a:28"] {
        let err = SuperResolution::parse(bad, aug).unwrap_err().to_string();
        assert!(
            err.contains("LOW:HIGH") || err.contains("whole multiple"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn masks_are_halves_or_rectangles_and_the_masked_image_blanks_what_is_filled_in() {
    let mut halves = 0;
    for u in 0..64u64 {
        let mask = random_mask(u, 6, 5);
        let filled = mask.iter().filter(|&&m| m == 1.0).count();
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0));
        // A half is 3 of 6 rows or 2-3 of 5 columns; a rectangle's sides are in ⌈n/4⌉..⌊3n/4⌋.
        if [15, 10].contains(&filled) && (mask[..15].iter().all(|&m| m == mask[0])) {
            halves += 1;
        }
        assert!((2..=18).contains(&filled), "draw {u}: {filled} pixels");
    }
    assert!(halves > 0);
    // Batch 1, two channels: [mask, x·(1 − mask) per channel].
    let x: Vec<f32> = (0..8).map(|i| i as f32 + 1.0).collect();
    let mask = [1.0, 0.0, 0.0, 1.0];
    let got = inpainting_channels(&x, &mask, 2, 4);
    assert_eq!(
        got,
        vec![1.0, 0.0, 0.0, 1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 6.0, 7.0, 0.0]
    );
}

// ---- sampling: what the network sees ----------------------------------------------------------------------------

/// One call's input: its shape, its values and its labels.
type RecordedInput = (Vec<usize>, Vec<f32>, Option<Vec<u32>>);

/// A denoiser that records its inputs and returns the first channel of them.
struct Recorder {
    inputs: RefCell<Vec<RecordedInput>>,
}

impl Denoiser for Recorder {
    fn predict(&self, x_t: &Tensor, _t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        self.inputs.borrow_mut().push((
            x_t.shape().to_vec(),
            x_t.to_vec()?,
            cond.class.map(<[u32]>::to_vec),
        ));
        Ok(x_t.narrow(1, 0, 1)?.contiguous()?)
    }
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
}

#[test]
fn the_conditioned_denoiser_feeds_x_t_then_the_extra_channels_and_its_own_labels() {
    let recorder = Recorder {
        inputs: RefCell::new(Vec::new()),
    };
    let extra = Tensor::from_vec(vec![10.0, 11.0, 20.0, 21.0], &[2, 1, 1, 2], Device::Cpu).unwrap();
    let conditioned = ImageConditioned {
        model: &recorder,
        extra,
        class: Some(vec![3, 3]),
    };
    let x = Tensor::from_vec(vec![1.0, 2.0, 5.0, 6.0], &[2, 1, 1, 2], Device::Cpu).unwrap();
    let out = conditioned
        .predict(&x, &[4.0, 4.0], Condition::NONE)
        .unwrap();
    assert_eq!(out.to_vec().unwrap(), x.to_vec().unwrap());
    // Doubled by guidance: the extra channels repeat, the labels too.
    let x4 = Tensor::concat(&[&x, &x], 0).unwrap();
    conditioned
        .predict(&x4, &[4.0; 4], Condition::NONE)
        .unwrap();
    let inputs = recorder.inputs.borrow();
    assert_eq!(inputs[0].0, vec![2, 2, 1, 2]);
    assert_eq!(
        inputs[0].1,
        vec![1.0, 2.0, 10.0, 11.0, 5.0, 6.0, 20.0, 21.0]
    );
    assert_eq!(inputs[0].2, Some(vec![3, 3]));
    assert_eq!(inputs[1].0, vec![4, 2, 1, 2]);
    assert_eq!(&inputs[1].1[8..], &inputs[0].1[..]);
    assert_eq!(inputs[1].2, Some(vec![3; 4]));
    let three = Tensor::from_vec(vec![0.0; 6], &[3, 1, 1, 2], Device::Cpu).unwrap();
    let err = conditioned
        .predict(&three, &[1.0; 3], Condition::NONE)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 conditioning images for a batch of 3"),
        "{err}"
    );
}

// ---- training: what the network sees -----------------------------------------------------------------------------

const PAD1: Conv2dParams = Conv2dParams {
    stride: (1, 1),
    padding: (1, 1),
    dilation: (1, 1),
    groups: 1,
};

/// One forward's input values and labels.
type SeenInput = (Vec<f32>, Option<Vec<u32>>);

/// A small network of `in_channels` inputs and one output that records what it is given.
struct RecordingNet {
    conv_in: Conv2d,
    time: Linear,
    class: Option<Embedding>,
    conv_out: Conv2d,
    seen: RefCell<Vec<SeenInput>>,
}

impl RecordingNet {
    fn new(store: &ParamStore, in_channels: usize, classes: Option<usize>) -> Result<Self> {
        let root = store.root();
        Ok(Self {
            conv_in: Conv2d::new(&root.sub("conv_in"), in_channels, 8, (3, 3), PAD1, true)?,
            time: Linear::new(&root.sub("time"), 1, 8, true)?,
            class: classes
                .map(|n| Embedding::new(&root.sub("class"), n, 8))
                .transpose()?,
            conv_out: Conv2d::new(&root.sub("conv_out"), 8, 1, (3, 3), PAD1, true)?,
            seen: RefCell::new(Vec::new()),
        })
    }
}

impl TrainableModel for RecordingNet {
    fn forward(&self, x: &Var, t: &[f64], given: Condition<'_>) -> Result<Var> {
        self.seen
            .borrow_mut()
            .push((x.tensor().to_vec()?, given.class.map(<[u32]>::to_vec)));
        let b = t.len();
        let tt: Vec<f32> = t.iter().map(|&t| (t / 1000.0) as f32).collect();
        let mut cond =
            self.time
                .forward(&Var::constant(Tensor::from_vec(tt, &[b, 1], Device::Cpu)?))?;
        if let (Some(emb), Some(labels)) = (&self.class, given.class) {
            let ids: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
            cond = cond.add(&emb.forward(&ids)?)?;
        }
        let h = self
            .conv_in
            .forward(x)?
            .add(&cond.reshape(&[b, 8, 1, 1])?)?
            .silu()?;
        Ok(self.conv_out.forward(&h)?)
    }

    fn config_json(&self) -> String {
        r#"{"_class_name": "RecordingNet"}"#.to_string()
    }
}

/// 12 labelled images of 6×6 in [−1, 1].
fn dataset() -> Dataset {
    let pixels: Vec<u8> = (0..12 * 36)
        .map(|i| ((i * 37 + i / 7) % 251) as u8)
        .collect();
    let labels = (0..12).map(|i| i % 3).collect();
    Dataset::from_u8(&pixels, Some(labels), 1, 6, 6).unwrap()
}

const AUG: NoiseAugmentation = NoiseAugmentation {
    levels: 3,
    max_timestep: 8,
};

fn config(condition: ImageCondition) -> TrainConfig {
    let sr = matches!(condition, ImageCondition::SuperResolution(_));
    TrainConfig {
        seed: 9,
        steps: 6,
        batch_size: 4,
        lr: LrSchedule::Constant { lr: 1e-2 },
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-8,
        weight_decay: 0.01,
        grad_clip: Some(1.0),
        ema_decay: 0.99,
        ema_warmup: EmaWarmup::Fraction,
        scheduler: SchedulerConfig {
            num_train_timesteps: 20,
            prediction_type: PredictionType::Epsilon,
            ..SchedulerConfig::default()
        },
        loss_weighting: LossWeighting::Uniform,
        importance_sampling: false,
        null_class: (!sr).then_some(3),
        label_dropout: 0.0,
        caption_dropout: 0.0,
        hflip: false,
        crop_pad: 0,
        max_nonfinite: 3,
        score_matching: None,
        vlb_weight: 0.0,
        image_condition: Some(condition),
    }
}

fn super_resolution() -> ImageCondition {
    ImageCondition::SuperResolution(SuperResolution::parse("3:6", AUG).unwrap())
}

/// Step 0's batch, `x_t` and the image condition's draws, recomputed from the documented streams.
fn step_zero(config: &TrainConfig, data: &Dataset) -> (Vec<f32>, Vec<u32>, Vec<f32>, Vec<u64>) {
    let order = data.epoch(4, config.seed, 0, true).unwrap().order()[..4].to_vec();
    let mut rng = step_rng(config.seed, 0);
    let ts: Vec<usize> = (0..4).map(|_| rng.below(20) as usize).collect();
    let _dropout_coins: Vec<f64> = (0..4).map(|_| rng.next_f64()).collect();
    let _flip_seed = rng.next_u64();
    let draws: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
    let (pixels, labels) = data.batch(&order, None).unwrap();
    let x0 = Tensor::from_vec(pixels.clone(), &[4, 1, 6, 6], Device::Cpu).unwrap();
    let (key, offset) = noise_stream(config.seed, 0, 4 * 36).unwrap();
    let schedule = NoiseSchedule::from_config(&config.scheduler).unwrap();
    let (x_t, _) = diffuse_diffusion::forward::q_sample(&schedule, &x0, &ts, key, offset).unwrap();
    (pixels, labels, x_t.to_vec().unwrap(), draws)
}

#[test]
fn a_super_resolution_step_feeds_x_t_and_the_augmented_upsampled_low_resolution_batch() {
    let data = dataset();
    let config = config(super_resolution());
    let mut trainer = Trainer::new(config.clone(), |s: &ParamStore| {
        RecordingNet::new(s, 2, Some(3))
    })
    .unwrap();
    trainer.step(&data).unwrap();
    let (x0, _, x_t, draws) = step_zero(&config, &data);
    let levels: Vec<u32> = draws.iter().map(|&u| (u % 3) as u32).collect();
    let low = downsample_box(&x0, 4, (6, 6), 2).unwrap();
    let (key, offset) = augment_stream(config.seed, 0, 4 * 9).unwrap();
    assert_eq!(key, config.seed ^ AUGMENT_KEY);
    let noise = Tensor::randn(&[36], key, offset, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let sr = SuperResolution::parse("3:6", AUG).unwrap();
    let up = sr
        .condition(trainer.schedule(), &low, 1, &levels, &noise)
        .unwrap();
    let seen = trainer.model.seen.borrow();
    let (input, labels) = &seen[0];
    assert_eq!(labels.as_deref(), Some(&levels[..]));
    for b in 0..4 {
        assert_eq!(
            &input[b * 72..b * 72 + 36],
            &x_t[b * 36..(b + 1) * 36],
            "x_t of {b}"
        );
        assert_eq!(
            &input[b * 72 + 36..(b + 1) * 72],
            &up[b * 36..(b + 1) * 36],
            "condition of {b}"
        );
    }
}

#[test]
fn an_inpainting_step_feeds_x_t_the_mask_and_the_masked_image_with_the_dataset_labels() {
    let data = dataset();
    let config = config(ImageCondition::Inpainting(Inpainting));
    let mut trainer = Trainer::new(config.clone(), |s: &ParamStore| {
        RecordingNet::new(s, 3, Some(4))
    })
    .unwrap();
    trainer.step(&data).unwrap();
    let (x0, labels, x_t, draws) = step_zero(&config, &data);
    let masks: Vec<f32> = draws.iter().flat_map(|&u| random_mask(u, 6, 6)).collect();
    let extra = inpainting_channels(&x0, &masks, 1, 36);
    let seen = trainer.model.seen.borrow();
    let (input, seen_labels) = &seen[0];
    assert_eq!(seen_labels.as_deref(), Some(&labels[..]));
    for b in 0..4 {
        assert_eq!(&input[b * 108..b * 108 + 36], &x_t[b * 36..(b + 1) * 36]);
        assert_eq!(
            &input[b * 108 + 36..(b + 1) * 108],
            &extra[b * 72..(b + 1) * 72]
        );
    }
}

#[test]
fn a_super_resolution_run_resumes_bit_for_bit_and_refuses_a_null_class() {
    let data = dataset();
    let config = config(super_resolution());
    let build = |s: &ParamStore| RecordingNet::new(s, 2, Some(3));
    let dir = std::env::temp_dir().join(format!("diffuse-sr-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut straight = Trainer::new(config.clone(), build).unwrap();
    for _ in 0..4 {
        straight.step(&data).unwrap();
    }
    let mut first = Trainer::new(config.clone(), build).unwrap();
    for _ in 0..2 {
        first.step(&data).unwrap();
    }
    first.save_checkpoint(&dir, 1).unwrap();
    let mut resumed = Trainer::resume(&dir, build).unwrap();
    assert_eq!(resumed.config().image_condition, config.image_condition);
    for _ in 0..2 {
        resumed.step(&data).unwrap();
    }
    let values = |s: &ParamStore| -> Vec<Vec<f32>> {
        s.params()
            .into_iter()
            .map(|(_, v)| v.tensor().to_vec().unwrap())
            .collect()
    };
    assert_eq!(values(&resumed.store), values(&straight.store));
    assert_eq!(values(resumed.ema_store()), values(straight.ema_store()));
    assert_eq!(resumed.state(), straight.state());
    std::fs::remove_dir_all(&dir).unwrap();

    let mut bad = config;
    bad.null_class = Some(3);
    let err = Trainer::new(bad, build).err().unwrap().to_string();
    assert!(err.contains("augmentation levels"), "{err}");
}
