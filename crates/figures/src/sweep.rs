//! Redraws the plot of a `diffuse eval --sweep-steps … --json FILE` run from its JSON (a list of evaluations, each
//! with `settings.sampler`, `settings.steps` and `report.fd_fashion_classifier`) as `sampler-sweep.png`, with one line
//! per sampler in the order the sweep ran them.

use diffuse_plot::{fd_sweep_chart, Curve, Figure};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct SweepArgs {
    /// The JSON file `diffuse eval --sweep-steps … --json FILE` wrote.
    #[arg(long)]
    json: PathBuf,
}

/// The curves of the sweep in `json`, one per sampler in first-seen order.
fn curves(json: &Path) -> Result<Vec<Curve>, String> {
    let text = std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let records = value.as_array().ok_or_else(|| {
        format!(
            "{}: not a sweep (a list of evaluations from diffuse eval --sweep-steps)",
            json.display()
        )
    })?;
    let mut curves: Vec<Curve> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let field = |what: &str, found: Option<&Value>| {
            found
                .cloned()
                .ok_or_else(|| format!("{}: evaluation {i} has no {what}", json.display()))
        };
        let sampler = field("settings.sampler", record["settings"].get("sampler"))?;
        let steps = field("settings.steps", record["settings"].get("steps"))?;
        let fd = field(
            "report.fd_fashion_classifier",
            record["report"].get("fd_fashion_classifier"),
        )?;
        let (Some(sampler), Some(steps), Some(fd)) =
            (sampler.as_str(), steps.as_u64(), fd.as_f64())
        else {
            return Err(format!(
                "{}: evaluation {i} has a sampler, steps or FD of the wrong type",
                json.display()
            ));
        };
        match curves.iter_mut().find(|c| c.name == sampler) {
            Some(curve) => curve.points.push((steps as usize, fd)),
            None => curves.push(Curve {
                name: sampler.to_string(),
                points: vec![(steps as usize, fd)],
            }),
        }
    }
    if curves.is_empty() {
        return Err(format!(
            "{}: the sweep holds no evaluations",
            json.display()
        ));
    }
    Ok(curves)
}

pub fn draw(args: &SweepArgs, out: &Path) -> Result<(), String> {
    let chart = fd_sweep_chart(&curves(&args.json)?);
    crate::save(&Figure::single(chart), out, "sampler-sweep.png")
}
