//! The few-step table of `docs/distillation.md`: reads the `diffuse eval --json` records that
//! `scripts/distill-table.sh` writes (`RESULTS/METHOD-STEPS.json`, one evaluation each) and the training wall times
//! (`RESULTS/wall_time_s.json`, seconds per method), and writes `distill-table.md` (FD and classifier accuracy per
//! method and step count) and `distill-fd.png` (FD and accuracy against steps, one line per method).

use clap::Args;
use diffuse_plot::{Axis, Chart, Figure, Panel, Series};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct DistillArgs {
    /// The folder of `METHOD-STEPS.json` evaluations (and `wall_time_s.json`).
    #[arg(long)]
    results: PathBuf,
}

/// One evaluation: FD and accuracy.
struct Row {
    fd: f64,
    accuracy: Option<f64>,
}

/// `METHOD-STEPS.json` → (method, steps).
fn parse_name(path: &Path) -> Option<(String, usize)> {
    let stem = path.file_stem()?.to_str()?;
    let (method, steps) = stem.rsplit_once('-')?;
    Some((method.to_string(), steps.parse().ok()?))
}

fn read_rows(dir: &Path) -> Result<BTreeMap<String, BTreeMap<usize, Row>>, String> {
    let mut table: BTreeMap<String, BTreeMap<usize, Row>> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some((method, steps)) = parse_name(&path) else {
            continue;
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let report = &value["report"];
        let fd = report["fd_fashion_classifier"]
            .as_f64()
            .ok_or_else(|| format!("{}: no report.fd_fashion_classifier", path.display()))?;
        table.entry(method).or_default().insert(
            steps,
            Row {
                fd,
                accuracy: report["accuracy"].as_f64(),
            },
        );
    }
    if table.is_empty() {
        return Err(format!(
            "{} holds no METHOD-STEPS.json evaluations (run scripts/distill-table.sh)",
            dir.display()
        ));
    }
    Ok(table)
}

pub fn draw(args: &DistillArgs, out: &Path) -> Result<(), String> {
    let table = read_rows(&args.results)?;
    let times: BTreeMap<String, f64> =
        std::fs::read_to_string(args.results.join("wall_time_s.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
    let steps: Vec<usize> = {
        let mut all: Vec<usize> = table
            .values()
            .flat_map(|rows| rows.keys().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let mut md = String::from("| method | training wall time |");
    for n in &steps {
        md.push_str(&format!(
            " {n} step{} FD / acc. |",
            if *n == 1 { "" } else { "s" }
        ));
    }
    md.push_str("\n| --- | --- |");
    md.push_str(&" --- |".repeat(steps.len()));
    md.push('\n');
    for (method, rows) in &table {
        let time = times
            .get(method)
            .map_or("–".to_string(), |s| format!("{s:.0} s"));
        md.push_str(&format!("| {method} | {time} |"));
        for n in &steps {
            match rows.get(n) {
                Some(row) => {
                    let acc = row
                        .accuracy
                        .map_or("–".into(), |a| format!("{:.1}%", 100.0 * a));
                    md.push_str(&format!(" {:.2} / {acc} |", row.fd));
                }
                None => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    let table_path = out.join("distill-table.md");
    std::fs::write(&table_path, &md).map_err(|e| format!("{}: {e}", table_path.display()))?;
    print!("{md}");
    eprintln!("wrote {}", table_path.display());

    let mut fd = Chart::new(
        "Fréchet distance against sampling steps",
        Axis::log("sampling steps (network calls per sample, Heun: 2N − 1)"),
        Axis::log("FD (classifier features)"),
    );
    let mut accuracy = Chart::new(
        "Classifier accuracy against sampling steps",
        Axis::log("sampling steps"),
        Axis::linear("accuracy of the requested class"),
    );
    for (i, (method, rows)) in table.iter().enumerate() {
        let fds = rows.iter().map(|(&n, r)| (n as f64, r.fd)).collect();
        fd = fd.with(Series::line_markers(method, fds).color(i));
        let accs: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|(&n, r)| r.accuracy.map(|a| (n as f64, a)))
            .collect();
        if !accs.is_empty() {
            accuracy = accuracy.with(Series::line_markers(method, accs).color(i));
        }
    }
    let figure = Figure {
        width: 1500,
        height: 560,
        panels: vec![(Panel::Row(vec![fd, accuracy]), 1.0)],
    };
    crate::save(&figure, out, "distill-fd.png")
}
