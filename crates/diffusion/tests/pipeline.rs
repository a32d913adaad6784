//! The folders a sampling run starts from: diffusers pipelines (as `save_pretrained` writes them), model folders
//! with and without a sibling scheduler, training runs and checkpoints, and the clear refusals of everything else.

mod common;

use common::TempDir;
use diffuse_diffusion::pipeline::{FolderKind, ModelIndex, Pipeline, Weights, MODEL_INDEX_FILE};
use diffuse_diffusion::sampler::scheduler::SchedulerClass;
use std::fs;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/schedulers/pipelines")
        .join(name)
}

/// A copy of a fixture pipeline, to break.
fn copy_pipeline(name: &str, to: &Path) -> PathBuf {
    let dir = to.join(name);
    for part in ["unet", "scheduler"] {
        fs::create_dir_all(dir.join(part)).unwrap();
        for entry in fs::read_dir(fixture(name).join(part)).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dir.join(part).join(entry.file_name())).unwrap();
        }
    }
    fs::copy(
        fixture(name).join(MODEL_INDEX_FILE),
        dir.join(MODEL_INDEX_FILE),
    )
    .unwrap();
    dir
}

fn error_of(dir: &Path) -> String {
    match Pipeline::open(dir, Weights::Ema) {
        Ok(p) => panic!("{} opened as {:?}", dir.display(), p.kind),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_diffusers_pipeline_opens_with_its_unet_and_scheduler() {
    let dir = fixture("ddpm_v_cosine");
    let pipeline = Pipeline::open(&dir, Weights::Ema).unwrap();
    assert_eq!(pipeline.kind, FolderKind::Pipeline);
    assert_eq!(pipeline.denoiser, dir.join("unet"));
    assert_eq!(pipeline.index.as_ref().unwrap().class_name, "DDPMPipeline");
    let scheduler = pipeline.scheduler().unwrap();
    assert_eq!(scheduler.class, SchedulerClass::Ddpm);
    assert_eq!(
        scheduler.schedule_config.prediction_type.name(),
        "v_prediction"
    );
}

#[test]
fn model_index_reads_and_writes_as_diffusers() {
    let text = fs::read_to_string(fixture("ddpm_v_cosine").join(MODEL_INDEX_FILE)).unwrap();
    let index = ModelIndex::from_json_str(&text).unwrap();
    assert_eq!(index.to_json_string(), text);
    // Optional components saved without ([null, null]) and settings of the pipeline itself.
    let sd = r#"{"_class_name": "StableDiffusionPipeline", "requires_safety_checker": true,
                 "safety_checker": [null, null], "unet": ["diffusers", "UNet2DConditionModel"]}"#;
    let index = ModelIndex::from_json_str(sd).unwrap();
    assert_eq!(index.components["safety_checker"], None);
    assert_eq!(
        index.settings["requires_safety_checker"],
        serde_json::Value::Bool(true)
    );
    let err = ModelIndex::from_json_str(r#"{"unet": ["diffusers", "UNet2DModel"]}"#).unwrap_err();
    assert!(err.to_string().contains("_class_name"), "{err}");
    let err =
        ModelIndex::from_json_str(r#"{"_class_name": "X", "unet": ["diffusers", 3]}"#).unwrap_err();
    assert!(err.to_string().contains("[library, class]"), "{err}");
}

#[test]
fn a_model_folder_uses_a_sibling_scheduler_and_otherwise_ddpms_defaults() {
    let unet = fixture("ddpm_v_cosine").join("unet");
    let pipeline = Pipeline::open(&unet, Weights::Ema).unwrap();
    assert_eq!(pipeline.kind, FolderKind::Model);
    assert_eq!(
        pipeline
            .scheduler()
            .unwrap()
            .schedule_config
            .prediction_type
            .name(),
        "v_prediction"
    );
    let tmp = TempDir::new("model-folder");
    let lone = tmp.path().join("lone");
    fs::create_dir_all(&lone).unwrap();
    fs::copy(unet.join("config.json"), lone.join("config.json")).unwrap();
    let pipeline = Pipeline::open(&lone, Weights::Ema).unwrap();
    assert_eq!(pipeline.scheduler_config, None);
    let scheduler = pipeline.scheduler().unwrap();
    assert_eq!(scheduler.class, SchedulerClass::Ddpm);
    assert!(scheduler
        .notes
        .iter()
        .any(|n| n.contains("no scheduler config")));
}

#[test]
fn a_training_run_and_its_checkpoints_open_with_ema_or_raw_weights() {
    let tmp = TempDir::new("run");
    let run = tmp.path();
    let step = run.join("step-3");
    for part in ["ema", "model"] {
        fs::create_dir_all(step.join(part)).unwrap();
        fs::write(step.join(part).join("config.json"), "{}").unwrap();
    }
    fs::create_dir_all(step.join("scheduler")).unwrap();
    fs::write(
        step.join("scheduler/scheduler_config.json"),
        r#"{"_class_name": "DDPMScheduler", "timestep_spacing": "trailing"}"#,
    )
    .unwrap();
    fs::write(step.join("trainer_state.json"), "{}").unwrap();
    fs::write(run.join("latest"), "step-3").unwrap();
    let opened = Pipeline::open(run, Weights::Ema).unwrap();
    assert_eq!(opened.kind, FolderKind::TrainingRun);
    assert_eq!(opened.denoiser, step.join("ema"));
    assert_eq!(opened.checkpoint.as_deref(), Some(step.as_path()));
    let raw = Pipeline::open(&step, Weights::Model).unwrap();
    assert_eq!(raw.kind, FolderKind::Checkpoint);
    assert_eq!(raw.denoiser, step.join("model"));
    assert_eq!(raw.scheduler().unwrap().options.spacing.name(), "trailing");
}

/// What is broken, how, and what the error must say.
type Breakage<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);

#[test]
fn broken_pipelines_are_refused_by_name() {
    let tmp = TempDir::new("broken");
    let cases: [Breakage; 6] = [
        (
            "unknown pipeline class",
            &|dir| {
                let text = fs::read_to_string(dir.join(MODEL_INDEX_FILE)).unwrap();
                fs::write(
                    dir.join(MODEL_INDEX_FILE),
                    text.replace("DDPMPipeline", "KarrasVePipeline"),
                )
                .unwrap();
            },
            "'KarrasVePipeline' is not a pipeline diffuse runs",
        ),
        (
            "a component diffuse does not read",
            &|dir| {
                let text = fs::read_to_string(dir.join(MODEL_INDEX_FILE)).unwrap();
                fs::write(
                    dir.join(MODEL_INDEX_FILE),
                    text.replace(
                        "\"scheduler\": [",
                        "\"vqvae\": [\"diffusers\", \"VQModel\"],\n  \"scheduler\": [",
                    ),
                )
                .unwrap();
            },
            "component 'vqvae' (diffusers, VQModel), which diffuse does not read",
        ),
        (
            "a missing component folder",
            &|dir| fs::remove_dir_all(dir.join("unet")).unwrap(),
            "names component 'unet' (UNet2DModel), but the folder",
        ),
        (
            "a component of a class diffuse does not load",
            &|dir| {
                let text = fs::read_to_string(dir.join(MODEL_INDEX_FILE)).unwrap();
                fs::write(
                    dir.join(MODEL_INDEX_FILE),
                    text.replace("\"DDPMScheduler\"", "\"KarrasVeScheduler\""),
                )
                .unwrap();
            },
            "component 'scheduler' is a KarrasVeScheduler",
        ),
        (
            "no unet",
            &|dir| {
                let text = fs::read_to_string(dir.join(MODEL_INDEX_FILE)).unwrap();
                fs::write(
                    dir.join(MODEL_INDEX_FILE),
                    text.replace("\"diffusers\",\n    \"UNet2DModel\"", "null,\n    null"),
                )
                .unwrap();
            },
            "DDPMPipeline has no 'unet' component",
        ),
        (
            "an unknown scheduler class in the scheduler folder",
            &|dir| {
                fs::write(
                    dir.join("scheduler/scheduler_config.json"),
                    r#"{"_class_name": "ScoreSdeVeScheduler"}"#,
                )
                .unwrap()
            },
            "ScoreSdeVeScheduler",
        ),
    ];
    for (i, (what, breaks, needle)) in cases.into_iter().enumerate() {
        let dir = copy_pipeline("ddpm_v_cosine", &tmp.path().join(i.to_string()));
        breaks(&dir);
        let err = match Pipeline::open(&dir, Weights::Ema).and_then(|p| p.scheduler()) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(needle),
            "{what}: '{err}' does not say '{needle}'"
        );
    }
    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    assert!(error_of(&empty).contains("is neither a diffusers pipeline"));
    assert!(error_of(&tmp.path().join("absent")).contains("is not a folder"));
}

/// diffusers' `ScoreSdeVePipeline` folder (as `save_pretrained` writes it) opens; its scheduler is a score-SDE
/// config, which the score samplers run and the discrete-time scheduler refuses by name.
#[test]
fn a_score_sde_pipeline_opens_with_its_score_sde_config() {
    let tmp = TempDir::new("score-sde");
    let dir = copy_pipeline("ddpm_v_cosine", tmp.path());
    fs::write(
        dir.join(MODEL_INDEX_FILE),
        r#"{"_class_name": "ScoreSdeVePipeline", "_diffusers_version": "0.42.1",
            "scheduler": ["diffusers", "ScoreSdeVeScheduler"], "unet": ["diffusers", "UNet2DModel"]}"#,
    )
    .unwrap();
    fs::write(
        dir.join("scheduler/scheduler_config.json"),
        r#"{"_class_name": "ScoreSdeVeScheduler", "_diffusers_version": "0.42.1", "correct_steps": 1,
            "num_train_timesteps": 2000, "sampling_eps": 1e-05, "sigma_max": 1348.0, "sigma_min": 0.01,
            "snr": 0.15}"#,
    )
    .unwrap();
    let pipeline = Pipeline::open(&dir, Weights::Ema).unwrap();
    assert!(pipeline.is_score_sde().unwrap());
    let config = pipeline.score_sde_config().unwrap().unwrap();
    assert_eq!(config.class_name.as_deref(), Some("ScoreSdeVeScheduler"));
    assert_eq!(config.num_train_timesteps, 2000);
    let err = pipeline.scheduler().unwrap_err().to_string();
    assert!(
        err.contains("unknown scheduler class 'ScoreSdeVeScheduler'"),
        "{err}"
    );

    // A discrete pipeline is not a score-SDE one.
    let discrete = Pipeline::open(&fixture("ddpm_v_cosine"), Weights::Ema).unwrap();
    assert!(!discrete.is_score_sde().unwrap());
    assert!(discrete.score_sde_config().unwrap().is_none());
}

/// The tiny Stable Diffusion pipeline of `fixtures/stable_diffusion/make_pipeline.py`, as diffusers saved it.
fn stable_diffusion() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stable_diffusion/tiny_sd")
}

#[test]
fn a_stable_diffusion_pipeline_opens_with_its_text_side() {
    let dir = stable_diffusion();
    let pipeline = Pipeline::open(&dir, Weights::Ema).unwrap();
    assert_eq!(pipeline.kind, FolderKind::Pipeline);
    assert_eq!(pipeline.denoiser, dir.join("unet"));
    assert_eq!(pipeline.vae, Some(dir.join("vae")));
    assert_eq!(pipeline.text_encoder, Some(dir.join("text_encoder")));
    assert_eq!(pipeline.tokenizer, Some(dir.join("tokenizer")));
    assert_eq!(pipeline.scheduler().unwrap().class, SchedulerClass::Ddim);
}

#[test]
fn a_stable_diffusion_pipeline_without_its_text_encoder_is_refused_by_name() {
    let tmp = TempDir::new("sd-without-text-encoder");
    let dir = tmp.path().join("tiny_sd");
    for part in ["unet", "scheduler", "vae", "tokenizer"] {
        fs::create_dir_all(dir.join(part)).unwrap();
        for entry in fs::read_dir(stable_diffusion().join(part)).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dir.join(part).join(entry.file_name())).unwrap();
        }
    }
    let index = fs::read_to_string(stable_diffusion().join(MODEL_INDEX_FILE)).unwrap();
    let without = index.replace(
        r#""transformers",
    "CLIPTextModel""#,
        "null,\n    null",
    );
    assert_ne!(without, index);
    fs::write(dir.join(MODEL_INDEX_FILE), &without).unwrap();
    let err = error_of(&dir);
    assert!(
        err.contains("StableDiffusionPipeline has no 'text_encoder'"),
        "{err}"
    );
    fs::write(dir.join(MODEL_INDEX_FILE), &index).unwrap();
    let err = error_of(&dir);
    assert!(
        err.contains("text_encoder") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn a_stable_diffusion_pipeline_without_a_vae_denoises_pixels() {
    let tmp = TempDir::new("sd-without-vae");
    let dir = tmp.path().join("tiny_sd");
    for part in ["unet", "scheduler", "text_encoder", "tokenizer"] {
        fs::create_dir_all(dir.join(part)).unwrap();
        for entry in fs::read_dir(stable_diffusion().join(part)).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dir.join(part).join(entry.file_name())).unwrap();
        }
    }
    let index = fs::read_to_string(stable_diffusion().join(MODEL_INDEX_FILE)).unwrap();
    let without = index.replace(
        r#""diffusers",
    "AutoencoderKL""#,
        "null,\n    null",
    );
    assert_ne!(without, index);
    fs::write(dir.join(MODEL_INDEX_FILE), &without).unwrap();
    let pipeline = Pipeline::open(&dir, Weights::Ema).unwrap();
    assert_eq!(pipeline.vae, None);
    assert_eq!(pipeline.text_encoder, Some(dir.join("text_encoder")));
}
