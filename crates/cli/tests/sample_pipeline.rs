//! `diffuse sample` on diffusers pipeline folders, end to end and without Python: tiny random `UNet2DModel`
//! pipelines saved by diffusers 0.42.1, sampled by diffusers from given latents (and step noise), must come out of
//! `diffuse sample --init-noise … --out-tensor …` the same (fixtures and the script that made them:
//! `crates/diffusion/tests/fixtures/schedulers/`). And bad input is refused before anything is written.

mod common;

use common::{diffuse, repo, temp_dir};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const FIXTURES: &str = "crates/diffusion/tests/fixtures/schedulers/pipelines";

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn write_tensor(path: &Path, values: &[f32], shape: &[usize]) {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, shape.to_vec(), &bytes).unwrap();
    std::fs::write(path, safetensors::serialize([("x", view)], &None).unwrap()).unwrap();
}

fn read_samples(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensor("samples")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn runs() -> Vec<Value> {
    let text = std::fs::read_to_string(repo(&format!("{FIXTURES}/pipelines.json"))).unwrap();
    let fixtures: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(fixtures["diffusers_version"], "0.42.1");
    fixtures["runs"].as_array().unwrap().clone()
}

/// Writes a run's latents (and step noise) into `dir`; returns the `diffuse sample` arguments that reproduce it.
fn sample_args(run: &Value, dir: &Path) -> Vec<String> {
    let shape: Vec<usize> = run["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let latents = dir.join("latents.safetensors");
    write_tensor(&latents, &floats(&run["latents"]), &shape);
    let mut args: Vec<String> = vec![
        "sample".into(),
        "--checkpoint".into(),
        repo(&format!("{FIXTURES}/{}", run["pipeline"].as_str().unwrap())),
        "--device".into(),
        "cpu".into(),
        "--steps".into(),
        run["steps"].to_string(),
        "--count".into(),
        shape[0].to_string(),
        "--init-noise".into(),
        latents.display().to_string(),
        "--out".into(),
        dir.join("grid.png").display().to_string(),
        "--out-tensor".into(),
        dir.join("out.safetensors").display().to_string(),
    ];
    if !run["noise"].is_null() {
        let steps = run["timesteps"].as_array().unwrap().len();
        let noise_shape: Vec<usize> = std::iter::once(steps).chain(shape).collect();
        let noise = dir.join("noise.safetensors");
        write_tensor(&noise, &floats(&run["noise"]), &noise_shape);
        args.extend(["--noise".into(), noise.display().to_string()]);
    }
    args.extend(
        run["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    args
}

#[test]
fn sampling_a_diffusers_pipeline_gives_diffusers_samples() {
    let tmp = temp_dir("sample-pipeline");
    for (i, run) in runs().iter().enumerate() {
        let name = format!(
            "{}/{}",
            run["pipeline"].as_str().unwrap(),
            run["name"].as_str().unwrap()
        );
        let dir = tmp.join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let args = sample_args(run, &dir);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = diffuse(&refs);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = read_samples(&dir.join("out.safetensors"));
        let want = floats(&run["sample"]);
        assert_eq!(got.len(), want.len(), "{name}");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        // A real U-Net in f32 on both sides (its own golden test holds it to 1e-4 per call), six to eleven calls.
        assert!(
            worst <= 1e-4 * scale,
            "{name}: largest difference {worst:.3e}, output magnitude {scale:.3e}"
        );
        assert!(dir.join("grid.png").is_file(), "{name}");
    }
}

/// Runs `diffuse sample` with `args` changed by `edit`, expects a failure whose message contains `needle`, and
/// checks that no output was written.
fn refused(edit: impl FnOnce(&mut Vec<String>, &Path), needle: &str) {
    let run = &runs()[0];
    static CASES: AtomicUsize = AtomicUsize::new(0);
    let dir: PathBuf = temp_dir(&format!(
        "sample-refused-{}",
        CASES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut args = sample_args(run, &dir);
    edit(&mut args, &dir);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = diffuse(&refs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {refs:?}");
    assert!(
        stderr.contains(needle),
        "'{stderr}' does not say '{needle}'"
    );
    assert!(
        !dir.join("grid.png").exists(),
        "{needle}: a grid was written"
    );
    assert!(
        !dir.join("out.safetensors").exists(),
        "{needle}: samples were written"
    );
}

fn set(args: &mut Vec<String>, flag: &str, value: &str) {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_string(),
        None => args.extend([flag.to_string(), value.to_string()]),
    }
}

#[test]
fn bad_noise_files_are_refused_before_anything_is_written() {
    // The first run (DDPM) draws noise: five slices for six steps is one short.
    refused(
        |args, dir| {
            let noise = dir.join("short.safetensors");
            write_tensor(&noise, &vec![0.0; 5 * 3 * 8 * 8], &[5, 1, 3, 8, 8]);
            set(args, "--noise", &noise.display().to_string());
        },
        "one slice per step",
    );
    refused(
        |args, dir| {
            let noise = dir.join("wide.safetensors");
            write_tensor(&noise, &vec![0.0; 6 * 2 * 3 * 8 * 8], &[6, 2, 3, 8, 8]);
            set(args, "--noise", &noise.display().to_string());
        },
        "--noise",
    );
    refused(
        |args, dir| {
            let latents = dir.join("two.safetensors");
            write_tensor(&latents, &vec![0.0; 2 * 3 * 8 * 8], &[2, 3, 8, 8]);
            set(args, "--init-noise", &latents.display().to_string());
        },
        "holds latents of shape [2, 3, 8, 8]",
    );
    let shape: Vec<usize> = runs()[0]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    // The right count, one row short: a shape mismatch, not a class count.
    let short = [shape[0], shape[1], shape[2] - 1, shape[3]];
    refused(
        |args, dir| {
            let latents = dir.join("short.safetensors");
            write_tensor(&latents, &vec![0.0; short.iter().product()], &short);
            set(args, "--init-noise", &latents.display().to_string());
        },
        &format!("shape mismatch: the file holds latents of shape {short:?}, the model samples {shape:?}"),
    );
    for bad in [f32::NAN, f32::INFINITY] {
        refused(
            |args, dir| {
                let latents = dir.join("nan.safetensors");
                let mut values = vec![0.0; shape.iter().product()];
                values[5] = bad;
                write_tensor(&latents, &values, &shape);
                set(args, "--init-noise", &latents.display().to_string());
            },
            "1 of its",
        );
    }
}

/// Every float option takes finite numbers only.
#[test]
fn non_finite_numbers_are_refused_by_every_float_option() {
    for (flag, value) in [
        ("--guidance", "nan"),
        ("--eta", "inf"),
        ("--guidance", "1e999"),
    ] {
        refused(
            |args, _| set(args, flag, value),
            &format!("{value:?} is not a finite number"),
        );
    }
}

#[test]
fn bad_sampler_settings_and_folders_are_refused_before_anything_is_written() {
    refused(
        |args, _| {
            args.retain(|a| a != "--noise" && !a.ends_with("noise.safetensors"));
            args.extend([
                "--sampler".into(),
                "euler".into(),
                "--eta".into(),
                "0.5".into(),
            ]);
        },
        "eta",
    );
    refused(
        |args, _| args.extend(["--sampler".into(), "dpm++9m".into()]),
        "unknown sampler 'dpm++9m'",
    );
    refused(
        |args, _| args.extend(["--clip".into(), "wide".into()]),
        "--clip wide",
    );
    refused(
        |args, dir| {
            // A pipeline whose model_index.json names a component folder that is not there.
            let broken = dir.join("broken");
            std::fs::create_dir_all(&broken).unwrap();
            std::fs::write(
                broken.join("model_index.json"),
                r#"{"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDPMScheduler"],
                    "unet": ["diffusers", "UNet2DModel"]}"#,
            )
            .unwrap();
            set(args, "--checkpoint", &broken.display().to_string());
        },
        "but the folder",
    );
}

#[test]
fn info_prints_the_effective_sampler_and_its_settings() {
    let pipeline = repo(&format!("{FIXTURES}/ddpm_v_cosine"));
    let out = diffuse(&[
        "info",
        &pipeline,
        "--sampler",
        "dpm++2m",
        "--karras",
        "--steps",
        "5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "diffusers pipeline",
        "DPMSolverMultistepScheduler",
        "sampler                   dpm++2m",
        "prediction_type           v_prediction",
        "timestep_spacing          trailing",
        "Karras",
        "dropped",
        "model timesteps",
    ] {
        assert!(stdout.contains(needle), "info lacks '{needle}':\n{stdout}");
    }
}
