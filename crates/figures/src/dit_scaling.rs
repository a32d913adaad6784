//! The DiT scaling plot of `docs/dit.md` (the DiT paper's Figures 8 and 9 in miniature): reads the runs that
//! `scripts/dit-scaling.sh` trains, one folder per named config (`RUNS/dit-s-4`, …, each with the `metrics.jsonl` of
//! `diffuse train --eval-every`), and writes `dit-scaling.md` (GFLOPs per forward pass and FD and accuracy at every
//! evaluated step, per config) and `dit-scaling.png`: FD against the model's GFLOPs per forward pass, one line per
//! evaluated step, beside FD against training compute, one line per config.
//!
//! Training compute is counted as the paper does: a backward pass costs about twice a forward pass, so one step is
//! `3 · GFLOPs per image · batch size`.

use clap::Args;
use diffuse_models::BackboneConfig;
use diffuse_plot::{Axis, Chart, Figure, Panel, Series};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct DitScalingArgs {
    /// The folder of runs, one sub-folder per named DiT config (`dit-s-4`, `dit-s-2`, …).
    #[arg(long)]
    runs: PathBuf,
    /// The batch size the runs trained with (for the training compute).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// One config's runs: its GFLOPs per forward pass of one image and (FD, accuracy) by training step.
struct Run {
    gflops: f64,
    evals: BTreeMap<u64, (f64, Option<f64>)>,
}

/// The evaluations of a `metrics.jsonl`: step → (FD, accuracy).
fn read_evaluations(path: &Path) -> Result<BTreeMap<u64, (f64, Option<f64>)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut evals = BTreeMap::new();
    for line in text.lines() {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
        let (Some(step), Some(fd)) = (
            value["step"].as_u64(),
            value["eval"]["fd_fashion_classifier"].as_f64(),
        ) else {
            continue;
        };
        evals.insert(step, (fd, value["eval"]["accuracy"].as_f64()));
    }
    Ok(evals)
}

fn read_runs(dir: &Path) -> Result<BTreeMap<String, Run>, String> {
    let mut runs = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Ok(config) = BackboneConfig::named(name) else {
            continue;
        };
        let Some((h, w)) = config.sample_size() else {
            continue;
        };
        let Some(flops) = config.flops_per_sample(h, w) else {
            continue;
        };
        let evals = read_evaluations(&path.join("metrics.jsonl"))?;
        if !evals.is_empty() {
            let gflops = flops / 1e9;
            runs.insert(name.to_string(), Run { gflops, evals });
        }
    }
    if runs.is_empty() {
        return Err(format!(
            "{} holds no runs of named configs with evaluations (run scripts/dit-scaling.sh)",
            dir.display()
        ));
    }
    Ok(runs)
}

fn table(runs: &BTreeMap<String, Run>, steps: &[u64]) -> String {
    let mut md = String::from("| config | GFLOPs / image |");
    for step in steps {
        md.push_str(&format!(" FD / acc. at {step} steps |"));
    }
    md.push_str("\n| --- | ---: |");
    md.push_str(&" ---: |".repeat(steps.len()));
    md.push('\n');
    let mut by_flops: Vec<(&String, &Run)> = runs.iter().collect();
    by_flops.sort_by(|a, b| a.1.gflops.total_cmp(&b.1.gflops));
    for (name, run) in by_flops {
        md.push_str(&format!("| `{name}` | {:.2} |", run.gflops));
        for step in steps {
            match run.evals.get(step) {
                Some((fd, accuracy)) => {
                    let acc = accuracy.map_or("–".into(), |a| format!("{:.1} %", 100.0 * a));
                    md.push_str(&format!(" {fd:.1} / {acc} |"));
                }
                None => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    md
}

pub fn draw(args: &DitScalingArgs, out: &Path) -> Result<(), String> {
    let runs = read_runs(&args.runs)?;
    let mut steps: Vec<u64> = runs
        .values()
        .flat_map(|r| r.evals.keys().copied())
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let md = table(&runs, &steps);
    let table_path = out.join("dit-scaling.md");
    std::fs::write(&table_path, &md).map_err(|e| format!("{}: {e}", table_path.display()))?;
    print!("{md}");
    eprintln!("wrote {}", table_path.display());

    let mut by_model = Chart::new(
        "FD against model compute",
        Axis::log("GFLOPs per forward pass of one image"),
        Axis::log("FD (classifier features)"),
    );
    for (i, step) in steps.iter().enumerate() {
        let mut points: Vec<(f64, f64)> = runs
            .values()
            .filter_map(|r| Some((r.gflops, r.evals.get(step)?.0)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let label = format!("{step} steps");
        by_model = by_model.with(Series::line_markers(&label, points).color(i));
    }
    let mut by_training = Chart::new(
        "FD against training compute",
        Axis::log(format!(
            "training GFLOPs (3 × forward × batch {} × steps)",
            args.batch_size
        )),
        Axis::log("FD (classifier features)"),
    );
    for (i, (name, run)) in runs.iter().enumerate() {
        let per_step = 3.0 * run.gflops * args.batch_size as f64;
        let points = run
            .evals
            .iter()
            .map(|(&step, &(fd, _))| (per_step * step as f64, fd))
            .collect();
        by_training = by_training.with(Series::line_markers(name, points).color(i));
    }
    let figure = Figure {
        width: 1500,
        height: 560,
        panels: vec![(Panel::Row(vec![by_model, by_training]), 1.0)],
    };
    crate::save(&figure, out, "dit-scaling.png")
}
