//! The cascade and the trained inpainting network end to end on tiny models: `train --super-resolution` and a
//! 14×14 base run, `sample --upscale` chaining them (and a 28×28 base, downsampled), exact resumption of the stage,
//! `train --inpainting` sampled with `--init-image --mask` keeping the known pixels exactly, and the refusals.

use std::path::Path;

mod common;
use common::{fails, ok, read_samples, temp_dir, tiny_unet_config};

fn train(config: &Path, out: &Path, steps: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        steps,
        "--batch-size",
        "4",
        "--warmup",
        "1",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "0",
        "--grid-steps",
        "2",
        "--grid-columns",
        "2",
        "--num-train-timesteps",
        "50",
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

#[test]
fn a_base_model_and_a_super_resolution_stage_chain_and_the_stage_resumes_exactly() {
    let dir = temp_dir("cascade");
    let p = |name: &str| dir.join(name);
    // A 28×28 super-resolution stage of ~20k parameters (x_t and the upsampled image in, 3 augmentation levels)
    // and its 14×14 base.
    for (name, text) in [
        ("sr.json", tiny_unet_config(28, 2, 1, Some(3))),
        ("base.json", tiny_unet_config(14, 1, 1, Some(11))),
    ] {
        std::fs::write(p(name), text).unwrap();
    }
    let sr_args = [
        "--super-resolution",
        "14:28",
        "--sr-levels",
        "3",
        "--sr-max-timestep",
        "20",
        // The cosine schedule depends on --steps, which the resumed run changes; a constant one does not.
        "--lr-schedule",
        "constant",
    ];
    let log = train(&p("sr.json"), &p("sr"), "4", &sr_args);
    assert!(log.contains("--upscale"), "{log}");
    train(&p("base.json"), &p("base"), "2", &["--resolution", "14"]);

    // Resume: 2 steps, then 2 more, equal 4 straight bit for bit.
    train(&p("sr.json"), &p("sr-resumed"), "2", &sr_args);
    let resumed = ok(&[
        "train",
        "--resume",
        p("sr-resumed").to_str().unwrap(),
        "--steps",
        "4",
        "--sample-every",
        "0",
        "--grid-steps",
        "2",
        "--grid-columns",
        "2",
    ]);
    assert!(resumed.contains("resuming"), "{resumed}");
    for file in [
        "model/diffusion_pytorch_model.safetensors",
        "ema/diffusion_pytorch_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        let a = std::fs::read(p("sr").join("step-4").join(file)).unwrap();
        let b = std::fs::read(p("sr-resumed").join("step-4").join(file)).unwrap();
        assert!(a == b, "{file} differs after resuming");
    }

    // The cascade: 14×14 samples, upsampled to 28×28.
    let sr = p("sr");
    let sr = sr.to_str().unwrap();
    let cascade = |name: &str, extra: &[&str]| -> String {
        let out = p(name);
        let grid = out.with_extension("png");
        let base = p("base");
        let mut args = vec![
            "sample",
            "--checkpoint",
            base.to_str().unwrap(),
            "--upscale",
            sr,
            "--sr-level",
            "2",
            "--sampler",
            "ddim",
            "--steps",
            "3",
            "--class",
            "4",
            "--count",
            "2",
            "--out",
            grid.to_str().unwrap(),
            "--out-tensor",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let log = cascade("up.safetensors", &[]);
    assert!(log.contains("from 14×14 to 28×28"), "{log}");
    let (values, shape) = read_samples(&p("up.safetensors"));
    assert_eq!(shape, vec![2, 1, 28, 28]);
    assert!(values.iter().all(|v| v.is_finite()));
    assert!(p("up.png").is_file());

    // --sr-steps gives the stage its own step count: the base's by default, so 3 repeats the run above bit for bit
    // and 2 changes it.
    let cascade_with_stage_steps = |sr_steps: &str, name: &str| -> Vec<f32> {
        cascade(name, &["--sr-steps", sr_steps]);
        read_samples(&p(name)).0
    };
    assert!(cascade_with_stage_steps("3", "up3.safetensors") == values);
    assert!(cascade_with_stage_steps("2", "up2.safetensors") != values);

    // The stage alone, a plain run as a stage, an augmentation level it was not trained on: refused by name.
    let err = fails(&["sample", "--checkpoint", sr, "--steps", "2"]);
    assert!(
        err.contains("super-resolution stage (14×14 → 28×28)"),
        "{err}"
    );
    let base = p("base");
    let base = base.to_str().unwrap();
    let err = fails(&[
        "sample",
        "--checkpoint",
        base,
        "--upscale",
        base,
        "--steps",
        "2",
    ]);
    assert!(err.contains("not a super-resolution stage"), "{err}");
    let err = fails(&[
        "sample",
        "--checkpoint",
        base,
        "--upscale",
        sr,
        "--sr-level",
        "3",
        "--steps",
        "2",
    ]);
    assert!(err.contains("levels 0..2"), "{err}");
    for command in [&["sample"][..], &["eval", "--num", "2"][..]] {
        let mut args = command.to_vec();
        args.extend_from_slice(&["--checkpoint", base, "--sr-steps", "2", "--steps", "2"]);
        let err = fails(&args);
        assert!(
            err.contains("--sr-steps sets the steps of the --upscale stage"),
            "{args:?}: {err}"
        );
    }
    // Training: a factor that is not whole, images of the wrong size.
    let err = fails(&[
        "train",
        "--config",
        p("sr.json").to_str().unwrap(),
        "--super-resolution",
        "14:21",
        "--out",
        p("bad").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(err.contains("whole multiple"), "{err}");
    let err = fails(&[
        "train",
        "--super-resolution",
        "14:28",
        "--resolution",
        "14",
        "--out",
        p("bad").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(
        err.contains("trains on 28×28 images but the dataset's are 14×14"),
        "{err}"
    );
    let err = fails(&[
        "train",
        "--config",
        p("base.json").to_str().unwrap(),
        "--super-resolution",
        "7:14",
        "--resolution",
        "14",
        "--out",
        p("bad").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(
        err.contains("in_channels = 1 but the image condition needs 2"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes a grey 28×28 PNG from `value(y, x)`.
fn write_png(path: &Path, value: impl Fn(usize, usize) -> u8) {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 28, 28);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    let data: Vec<u8> = (0..784).map(|i| value(i / 28, i % 28)).collect();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_trained_inpainting_network_fills_the_mask_and_keeps_the_known_pixels_exactly() {
    let dir = temp_dir("inpaint-net");
    let p = |name: &str| dir.join(name);
    // A class-conditional inpainting network: x_t, the mask and the masked image in.
    std::fs::write(p("inpaint.json"), tiny_unet_config(28, 3, 1, Some(11))).unwrap();
    let log = train(&p("inpaint.json"), &p("run"), "2", &["--inpainting"]);
    assert!(log.contains("--init-image"), "{log}");
    write_png(&p("image.png"), |y, x| ((y * 28 + x) * 7 % 256) as u8);
    // White (fill) on the top half.
    write_png(&p("mask.png"), |y, _| if y < 14 { 255 } else { 0 });
    let out = p("fills.safetensors");
    let run = p("run");
    let run = run.to_str().unwrap();
    ok(&[
        "sample",
        "--checkpoint",
        run,
        "--init-image",
        p("image.png").to_str().unwrap(),
        "--mask",
        p("mask.png").to_str().unwrap(),
        "--class",
        "2",
        "--guidance",
        "2",
        "--steps",
        "3",
        "--count",
        "2",
        "--out",
        p("fills.png").to_str().unwrap(),
        "--out-tensor",
        out.to_str().unwrap(),
    ]);
    let (values, shape) = read_samples(&out);
    assert_eq!(shape, vec![2, 1, 28, 28]);
    for k in 0..2 {
        for i in 14 * 28..784 {
            let want = ((i * 7 % 256) as f32) / 127.5 - 1.0;
            // The image's byte mapped to [−1, 1] in f32, put back as it is.
            assert!((values[k * 784 + i] - want).abs() < 1e-6, "known pixel {i}");
        }
        assert!(values[k * 784..k * 784 + 392].iter().all(|v| v.is_finite()));
    }
    let err = fails(&["sample", "--checkpoint", run, "--steps", "2"]);
    assert!(
        err.contains("trained inpainting network: give --init-image"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
