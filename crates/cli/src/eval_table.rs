//! The tables `diffuse eval` prints: every metric of one report (with the floor's values beside it), or one line per
//! (sampler, steps) row of a sweep.

use diffuse_diffusion::eval::classifier::{NAME as FASHION_CLASSIFIER, NUM_CLASSES};
use diffuse_diffusion::eval::EvalReport;

/// The Fashion-MNIST class names, by label (named only when the extractor is the Fashion-MNIST classifier).
const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

fn percent(x: Option<f64>) -> String {
    x.map_or("–".into(), |a| format!("{:.2} %", 100.0 * a))
}

/// The metric table of one report, with the floor's values beside it. FD is labelled with the feature extractor
/// it was computed in.
pub fn print_report(report: &EvalReport, floor: Option<&EvalReport>) {
    let fashion = report.extractor == FASHION_CLASSIFIER;
    let mut rows: Vec<(String, String, Option<String>)> = vec![
        (
            format!("FD ({})", report.extractor),
            format!("{:.3}", report.fd_fashion_classifier),
            floor.map(|f| format!("{:.3}", f.fd_fashion_classifier)),
        ),
        (
            "accuracy".into(),
            percent(report.accuracy),
            floor.map(|f| percent(f.accuracy)),
        ),
    ];
    if let Some(per_class) = &report.per_class_accuracy {
        for (c, acc) in per_class.iter().enumerate() {
            let floor_acc = floor
                .and_then(|f| f.per_class_accuracy.as_ref())
                .and_then(|p| p.get(c).copied().flatten());
            let name = CLASS_NAMES.get(c).filter(|_| fashion).unwrap_or(&"");
            rows.push((
                format!("  {c} {name}").trim_end().to_string(),
                percent(*acc),
                floor.map(|_| percent(floor_acc)),
            ));
        }
    }
    rows.extend([
        (
            "IS-style score".into(),
            format!("{:.3}", report.inception_score),
            floor.map(|f| format!("{:.3}", f.inception_score)),
        ),
        (
            "precision".into(),
            format!("{:.4}", report.precision),
            floor.map(|f| format!("{:.4}", f.precision)),
        ),
        (
            "recall".into(),
            format!("{:.4}", report.recall),
            floor.map(|f| format!("{:.4}", f.recall)),
        ),
    ]);
    if let Some(bpd) = report.bpd {
        rows.push((
            "bits/dim (bound)".into(),
            format!("{:.4} ± {:.4}", bpd.mean, bpd.std_error),
            floor.map(|_| "–".into()),
        ));
    }
    let header = match floor {
        Some(f) => format!(
            "{:<26} {:>18} {:>14}",
            "metric",
            "value",
            format!("floor ({})", f.samples)
        ),
        None => format!("{:<26} {:>18}", "metric", "value"),
    };
    println!("{header}");
    for (name, value, floor) in rows {
        match floor {
            Some(f) => println!("{name:<26} {value:>18} {f:>14}"),
            None => println!("{name:<26} {value:>18}"),
        }
    }
}

/// One line per sweep row.
pub fn print_sweep(rows: &[(String, usize, EvalReport)], floor: Option<&EvalReport>) {
    println!(
        "{:<12} {:>6} {:>10} {:>9} {:>8} {:>9} {:>9}",
        "sampler", "steps", "FD", "accuracy", "IS", "precision", "recall"
    );
    let line = |name: &str, steps: String, r: &EvalReport| {
        println!(
            "{name:<12} {steps:>6} {:>10.3} {:>9} {:>8.3} {:>9.4} {:>9.4}",
            r.fd_fashion_classifier,
            percent(r.accuracy),
            r.inception_score,
            r.precision,
            r.recall
        );
    };
    for (sampler, steps, report) in rows {
        line(sampler, steps.to_string(), report);
    }
    if let Some(f) = floor {
        line("floor", "–".into(), f);
    }
}
