//! The roofline of the CPU kernels (Williams, Waterman & Patterson 2009) from criterion's results: for each kernel
//! case, arithmetic intensity I = FLOPs / bytes moved against attained GFLOP/s, under the roof min(P, B·I) of the
//! machine's measured FMA peak P (`--bench fma_peak`) and memory bandwidth B (`--bench memory_bandwidth`), both the
//! best of their thread counts.
//!
//! Counting, per case (bytes are the compulsory traffic: every operand read once, every result written once, f32):
//!
//! | case | FLOPs | bytes |
//! | --- | --- | --- |
//! | sgemm n³ | 2n³ | 4·3n² |
//! | conv2d 3×3 forward, N C S×S, C→C | 2·N·C·S²·9C (direct algorithm) | 4·(2·N·C·S² + 9C²) |
//! | conv2d forward + both backwards | 3× forward | 4·(6·N·C·S² + 3·9C²) |
//! | attention forward, BH L d | 4·BH·L²·d | 4·(4·BH·L·d + BH·L) |
//! | attention backward | 10·BH·L²·d | 4·(9·BH·L·d + BH·L) |
//! | group norm forward / backward, n elements | 5n / 8n | 8n / 12n |
//! | q_sample / sampler_step, n elements | 3n / 8n (the normal draws, integer work mostly, not counted) | 12n / 16n |
//! | AdamW, n parameters | 18n | 28n |
//!
//! The FLOPs of conv2d and attention are those of the direct algorithm, as in the benches (Winograd does fewer, so
//! its rate is an effective one and may exceed the roof). Criterion's `benchmark.json` gives each case's id and
//! throughput, `estimates.json` its mean time.

use diffuse_plot::{Axis, Chart, Figure, Legend, Series};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct RooflineArgs {
    /// Criterion's output folder (after `cargo bench -p diffuse-cpu-kernels`).
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// The figure's title names the machine.
    #[arg(long, default_value = "this machine")]
    machine: String,
}

/// One measured case.
struct Measurement {
    group: String,
    function: String,
    value: String,
    /// Criterion's throughput: ("Elements" | "Bytes", count).
    throughput: Option<(String, f64)>,
    /// Mean time per iteration, seconds.
    seconds: f64,
}

/// Every `benchmark.json` under `dir` with the mean of its `estimates.json`.
fn measurements(dir: &Path) -> Result<Vec<Measurement>, String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries =
            std::fs::read_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Criterion keeps `base` (the previous run) and `new` (the latest) side by side; read `new` only.
                if path
                    .file_name()
                    .is_some_and(|n| n != "base" && n != "change" && n != "report")
                {
                    pending.push(path);
                }
            } else if path.file_name().is_some_and(|n| n == "benchmark.json")
                && folder.file_name().is_some_and(|n| n == "new")
            {
                let read = |p: &Path| -> Result<Value, String> {
                    let text =
                        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
                };
                let bench = read(&path)?;
                let estimates = read(&folder.join("estimates.json"))?;
                let text = |key: &str| bench[key].as_str().unwrap_or_default().to_string();
                let throughput = bench["throughput"].as_object().and_then(|t| {
                    let (kind, count) = t.iter().next()?;
                    Some((kind.clone(), count.as_f64()?))
                });
                let Some(ns) = estimates["mean"]["point_estimate"].as_f64() else {
                    return Err(format!("{}: no mean estimate", folder.display()));
                };
                found.push(Measurement {
                    group: text("group_id"),
                    function: text("function_id"),
                    value: text("value_str"),
                    throughput,
                    seconds: ns * 1e-9,
                });
            }
        }
    }
    Ok(found)
}

/// The integers in `text` in order ("attention B32 H4 L196 d32" → 32, 4, 196, 32).
fn numbers(text: &str) -> Vec<f64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// (label, FLOPs, bytes) of a kernel case, as the module's table counts them; `None` for peers and ceilings.
fn case(m: &Measurement) -> Option<(String, f64, f64)> {
    let count = m.throughput.as_ref().map(|t| t.1)?;
    let g = m.group.as_str();
    let f = m.function.as_str();
    if g == "sgemm" && f.starts_with("diffuse-") && !f.contains("portable") {
        let n: f64 = m.value.parse().ok()?;
        return Some((format!("sgemm {n}³"), 2.0 * n * n * n, 12.0 * n * n));
    }
    if g == "conv2d_3x3" {
        let [n, c, s, _] = numbers(&m.value)[..] else {
            return None;
        };
        let activations = n * c * s * s;
        let weights = 9.0 * c * c;
        let forward = 2.0 * activations * 9.0 * c;
        return match f {
            "forward" => Some((
                format!("conv fwd C{c} {s}²"),
                forward,
                4.0 * (2.0 * activations + weights),
            )),
            "forward+backward" => Some((
                format!("conv fwd+bwd C{c} {s}²"),
                3.0 * forward,
                4.0 * (6.0 * activations + 3.0 * weights),
            )),
            _ => None,
        };
    }
    if g.starts_with("attention") {
        let [b, h, l, d] = numbers(g)[..] else {
            return None;
        };
        let (bh, rows) = (b * h, b * h * l);
        return match f {
            "forward" => Some((
                format!("attn fwd L{l}"),
                4.0 * bh * l * l * d,
                4.0 * (4.0 * rows * d + rows),
            )),
            "backward" => Some((
                format!("attn bwd L{l}"),
                10.0 * bh * l * l * d,
                4.0 * (9.0 * rows * d + rows),
            )),
            _ => None,
        };
    }
    if g.starts_with("group_norm") {
        return match f {
            "forward" => Some(("group norm fwd".into(), 5.0 * count / 8.0, count)),
            "backward" => Some(("group norm bwd".into(), 8.0 * count / 12.0, count)),
            _ => None,
        };
    }
    if g.starts_with("noise") {
        let shape = g.trim_start_matches("noise ");
        return match f {
            "q_sample" => Some((format!("q_sample {shape}"), 3.0 * count / 12.0, count)),
            "sampler_step" => Some((format!("sampler_step {shape}"), 8.0 * count / 16.0, count)),
            _ => None,
        };
    }
    if g.starts_with("adamw") && f == "step" {
        return Some(("AdamW".into(), 18.0 * count / 28.0, count));
    }
    None
}

/// The best rate of `group` in its throughput's unit per second.
fn ceiling(all: &[Measurement], group: &str) -> Option<f64> {
    all.iter()
        .filter(|m| m.group == group)
        .filter_map(|m| Some(m.throughput.as_ref()?.1 / m.seconds))
        .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
}

pub fn draw(args: &RooflineArgs, out: &Path) -> Result<(), String> {
    let all = measurements(&args.criterion)?;
    let peak = ceiling(&all, "fma_peak").ok_or(
        "no fma_peak results: run `cargo bench -p diffuse-cpu-kernels --bench fma_peak` first",
    )? / 1e9;
    let bandwidth = ceiling(&all, "memory_bandwidth").ok_or(
        "no memory_bandwidth results: run `cargo bench -p diffuse-cpu-kernels --bench memory_bandwidth` first",
    )? / 1e9;
    let points: Vec<(String, f64, f64)> = all
        .iter()
        .filter_map(|m| {
            let (label, flops, bytes) = case(m)?;
            Some((label, flops / bytes, flops / m.seconds / 1e9))
        })
        .collect();
    if points.is_empty() {
        return Err(format!(
            "no kernel results under {}: run `cargo bench -p diffuse-cpu-kernels` first",
            args.criterion.display()
        ));
    }
    let (lo, hi) = points
        .iter()
        .fold((peak / bandwidth, peak / bandwidth), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let (lo, hi) = (lo / 2.0, hi * 2.0);
    let ridge = peak / bandwidth;
    let roof = vec![(lo, bandwidth * lo), (ridge, peak), (hi, peak)];
    let mut chart = Chart::new(
        format!("Roofline of the CPU kernels ({})", args.machine),
        Axis::log("arithmetic intensity (FLOP per byte)"),
        Axis::log("attained GFLOP/s"),
    )
    .with(Series::line(
        &format!("roof: {peak:.0} GFLOP/s FMA peak, {bandwidth:.1} GB/s triad"),
        roof,
    ))
    .with(Series::markers(
        "kernel cases",
        points.iter().map(|p| (p.1, p.2)).collect(),
    ))
    .legend(Legend::LowerRight);
    for (label, x, y) in &points {
        chart = chart.annotate((*x, *y), label.clone());
    }
    for (label, x, y) in &points {
        eprintln!("{label:<28} {x:>8.2} FLOP/B {y:>9.2} GFLOP/s");
    }
    eprintln!(
        "FMA peak {peak:.1} GFLOP/s, bandwidth {bandwidth:.1} GB/s, ridge at {ridge:.2} FLOP/B"
    );
    crate::save(&Figure::single(chart), out, "roofline-cpu.png")
}
