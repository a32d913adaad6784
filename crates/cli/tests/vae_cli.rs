//! `diffuse vae` end to end on a tiny autoencoder: training writes diffusers folders, reconstruction grids and
//! metrics, `--resume` continues the run bit for bit, `encode` and `decode` round-trip PNGs through latents, and
//! bad input is refused with both sides named and nothing written.

use std::path::Path;

mod common;
use common::{diffuse, fails, ok, repo, synthetic_split, temp_dir, TINY_VAE_CONFIG};

#[test]
fn vae_train_resumes_exactly_and_encode_decode_round_trip() {
    let dir = temp_dir("vae-train");
    let config = dir.join("tiny_vae.json");
    std::fs::write(&config, TINY_VAE_CONFIG).unwrap();
    let data = repo("data/fashion-mnist");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (config, out, straight) = (
        config.to_str().unwrap().to_string(),
        path("run"),
        path("straight"),
    );
    let common = [
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
        "--log-every",
        "1",
        "--scale-images",
        "16",
        "--lr-schedule",
        "constant",
        "--disc-start",
        "2",
        "--disc-channels",
        "8",
        "--grid-columns",
        "4",
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["vae", "train", "--data", &data];
        args.extend(extra);
        args.extend(common);
        ok(&args)
    };
    run(&["--config", &config, "--out", &out, "--steps", "3"]);
    for file in [
        "latest",
        "step-2/trainer_state.json",
        "step-3/vae/config.json",
        "step-3/ema/diffusion_pytorch_model.safetensors",
        "step-3/discriminator.safetensors",
        "samples/step-2.png",
        "samples/final.png",
        "metrics.jsonl",
        "loss.png",
    ] {
        assert!(Path::new(&out).join(file).is_file(), "{file} is missing");
    }
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&out).join("step-3/ema/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["_class_name"], "AutoencoderKL");
    let scaling = saved["scaling_factor"].as_f64().unwrap();
    assert!(scaling > 0.0 && scaling != 1.0, "{saved}");

    let stderr = run(&["--resume", &out, "--steps", "5"]);
    assert!(stderr.contains("at step 3"), "{stderr}");
    run(&["--config", &config, "--out", &straight, "--steps", "5"]);
    for file in [
        "vae/diffusion_pytorch_model.safetensors",
        "ema/diffusion_pytorch_model.safetensors",
        "ema/config.json",
        "optimizer.safetensors",
        "discriminator.safetensors",
        "discriminator_optimizer.safetensors",
        "trainer_state.json",
    ] {
        let a = std::fs::read(Path::new(&out).join("step-5").join(file)).unwrap();
        let b = std::fs::read(Path::new(&straight).join("step-5").join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the resumed and the uninterrupted run"
        );
    }

    let info = diffuse(&["info", &out]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success()
            && text.contains("AutoencoderKL, 3 levels [8, 8, 8]")
            && text.contains("latents      4×7×7 of 1×28×28 images")
            && text.contains("step         5 of 5"),
        "{text}"
    );

    // Encode three PNGs, decode the latents, and decode a posterior sample too.
    let images = dir.join("images");
    write_pngs(&images, 3);
    let images = images.to_str().unwrap().to_string();
    let (latents, grid, tensor) = (
        path("latents.safetensors"),
        path("decoded.png"),
        path("decoded.safetensors"),
    );
    let stderr = ok(&[
        "vae", "encode", "--vae", &out, "--input", &images, "--out", &latents,
    ]);
    assert!(
        stderr.contains("3 images → latents [3, 4, 7, 7]"),
        "{stderr}"
    );
    ok(&[
        "vae",
        "decode",
        "--vae",
        &out,
        "--input",
        &latents,
        "--out",
        &grid,
        "--out-tensor",
        &tensor,
    ]);
    assert!(Path::new(&grid).is_file() && Path::new(&tensor).is_file());
    let stderr = ok(&[
        "vae", "encode", "--vae", &out, "--input", &images, "--out", &latents, "--sample",
    ]);
    assert!(stderr.contains("a sample"), "{stderr}");
    // The decoded tensor is itself a batch of images the autoencoder reads.
    let stderr = ok(&[
        "vae",
        "encode",
        "--vae",
        &out,
        "--input",
        &tensor,
        "--out",
        &path("again.safetensors"),
    ]);
    assert!(stderr.contains("3 images"), "{stderr}");
    // Latents in the autoencoder's own space, from a file with one tensor of another name.
    let zeros = path("zeros.safetensors");
    write_zeros(Path::new(&zeros), &[2, 4, 7, 7]);
    ok(&[
        "vae",
        "decode",
        "--vae",
        &out,
        "--input",
        &zeros,
        "--unscaled",
        "--out",
        &path("zeros.png"),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `count` 28×28 grey PNGs into `folder`.
fn write_pngs(folder: &Path, count: u32) {
    std::fs::create_dir_all(folder).unwrap();
    for i in 0..count {
        let pixels: Vec<u8> = (0..28 * 28u32)
            .map(|p| ((p * 7 + i * 50) % 256) as u8)
            .collect();
        let file = std::fs::File::create(folder.join(format!("img{i}.png"))).unwrap();
        let mut encoder = png::Encoder::new(file, 28, 28);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(&pixels)
            .unwrap();
    }
}

/// Writes a safetensors file with one zero f32 tensor "z" of `shape`.
fn write_zeros(path: &Path, shape: &[usize]) {
    let bytes = vec![0u8; 4 * shape.iter().product::<usize>()];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)
            .unwrap();
    safetensors::serialize_to_file([("z", view)], &None, path).unwrap();
}

#[test]
fn bad_input_is_refused_naming_both_sides_and_nothing_is_written() {
    let dir = temp_dir("vae-bad");
    let config = dir.join("tiny_vae.json");
    std::fs::write(&config, TINY_VAE_CONFIG).unwrap();
    let config = config.to_str().unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // 16×16 images for an autoencoder of 28×28 ones.
    let small = dir.join("small");
    synthetic_split(&small, "train", 8, 16, false);
    let out = path("never");
    let err = fails(&[
        "vae",
        "train",
        "--config",
        config,
        "--data",
        small.to_str().unwrap(),
        "--out",
        &out,
    ]);
    assert!(err.contains("1×16×16") && err.contains("1×28×28"), "{err}");
    assert!(!Path::new(&out).exists(), "a refused run wrote {out}");

    // A missing autoencoder folder, and a corrupt one.
    let missing = path("no-such-vae");
    let err = fails(&[
        "vae",
        "encode",
        "--vae",
        &missing,
        "--input",
        &path("x.png"),
    ]);
    assert!(
        err.contains("no-such-vae") && err.contains("config.json"),
        "{err}"
    );
    let corrupt = dir.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::copy(dir.join("tiny_vae.json"), corrupt.join("config.json")).unwrap();
    std::fs::write(
        corrupt.join("diffusion_pytorch_model.safetensors"),
        b"garbage",
    )
    .unwrap();
    let latents = path("latents.safetensors");
    write_zeros(Path::new(&latents), &[1, 4, 7, 7]);
    let err = fails(&[
        "vae",
        "decode",
        "--vae",
        corrupt.to_str().unwrap(),
        "--input",
        &latents,
        "--out",
        &path("d.png"),
    ]);
    assert!(err.contains("diffusion_pytorch_model.safetensors"), "{err}");
    assert!(!Path::new(&path("d.png")).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
