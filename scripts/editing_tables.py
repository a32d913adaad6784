#!/usr/bin/env python3
"""The markdown tables of scripts/measure-editing.sh from its RESULTS folder (plan.json, wall-*.txt and the JSON of
diffuse eval / eval-edit), on stdout; also writes RESULTS/tables.json, the same rows as data.

    python3 scripts/editing_tables.py RESULTS

Standard library only.
"""

import json
import sys
from pathlib import Path


def load(results: Path, name: str) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def wall(results: Path, name: str) -> str:
    path = results / f"wall-{name}.txt"
    return f"{float(path.read_text()):.0f} s" if path.exists() else "—"


def num(x, digits=3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def metrics(report: dict) -> list:
    return [num(report["fd_fashion_classifier"]), num(report.get("accuracy")), num(report["precision"]),
            num(report["recall"])]


def table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    results = Path(sys.argv[1])
    plan = load(results, "plan")
    train, sample = plan["train_steps"], plan["sample_steps"]
    batch, n = plan["batch"], plan["num"]
    out, data = [], {"plan": plan}

    sdedit = load(results, "sdedit")
    rows = [[r["edit"], num(r["rms_distance"], 4)] + metrics(r["report"]) for r in sdedit["rows"]]
    data["sdedit"] = sdedit["rows"]
    out += [
        f"**SDEdit** on the direct model ({train['direct']} steps of {batch}), DDIM {sample['direct']} steps, "
        f"unconditional, the first {n} training images as guides:",
        "",
        table(["edit", "RMS distance to guide", "FD", "accuracy (guide's label)", "precision", "recall"], rows),
        "",
    ]

    repaint, jumps, inpaint = (load(results, k) for k in ("repaint", "repaint-jumps", "inpaint"))
    calls = plan["repaint_jumps"]["calls"]
    rows = [
        [f"RePaint, {repaint['steps']} steps, no resampling", f"direct, {train['direct']} steps",
         repaint["steps"], num(repaint["rows"][0]["rms_distance"], 4), "—", "—"] + metrics(repaint["rows"][0]["report"]),
        [f"RePaint, {jumps['steps']} steps, jumps of {plan['repaint_jumps']['jump_length']} × "
         f"{plan['repaint_jumps']['jump_n_sample']} passes", f"direct, {train['direct']} steps", calls,
         num(jumps["rows"][0]["rms_distance"], 4), "—", "—"] + metrics(jumps["rows"][0]["report"]),
        [f"trained inpainting U-Net, DDIM {inpaint['steps']} steps", f"fashion-inpaint, {train['inpaint']} steps",
         inpaint["steps"], "—", num(inpaint["rows"][0]["psnr"], 2), num(inpaint["rows"][0]["ssim"], 4)]
        + metrics(inpaint["rows"][0]["report"]),
    ]
    data["inpainting"] = {"repaint": repaint["rows"], "repaint_jumps": jumps["rows"], "inpaint": inpaint["rows"]}
    out += [
        f"**Inpainting** the left half of the first {n} test images, unconditionally, at equal training time "
        f"(wall: direct {wall(results, 'train-direct')}, inpainting U-Net {wall(results, 'train-inpaint')}) and "
        f"equal model calls (wall: {wall(results, 'repaint')}, {wall(results, 'repaint-jumps')}, "
        f"{wall(results, 'inpaint')}); FD of the whole images (the known half is exact), accuracy against the guide's "
        "label:",
        "",
        table(["method", "model (training steps)", "model calls", "RMS distance to guide", "PSNR (dB)", "SSIM", "FD",
               "accuracy (guide's label)", "precision", "recall"], rows),
        "",
    ]

    direct, cascade = load(results, "direct"), load(results, "cascade")
    rows = [
        [f"base 14×14 ({train['base14']} steps) + stage ({train['sr']} steps), level {plan['sr_level']}",
         f"{wall(results, 'train-base14')} + {wall(results, 'train-sr')}",
         f"{sample['base14']} + {sample['sr']}", wall(results, "eval-cascade")] + metrics(cascade["report"]),
        [f"direct 28×28 ({train['direct']} steps)", wall(results, "train-direct"), sample["direct"],
         wall(results, "eval-direct")] + metrics(direct["report"]),
    ]
    data["cascade"] = {"cascade": cascade["report"], "direct": direct["report"]}
    out += [
        f"**The cascade** against the direct model at equal training and sampling time, {n} samples each, classes "
        "cycling 0–9, DDIM (wall times include loading and scoring):",
        "",
        table(["model", "training (wall)", "DDIM steps", "evaluation (wall)", "FD", "accuracy", "precision",
               "recall"], rows),
        "",
    ]

    sr = load(results, "sr-psnr")
    rows = [[r["method"], num(r["psnr"], 2), num(r["ssim"], 4)] + metrics(r["report"]) for r in sr["rows"]]
    data["super_resolution"] = sr["rows"]
    out += [
        f"**Super-resolution** of the first {n} training images box-averaged to 14×14, the stage "
        f"({train['sr']} steps) at DDIM {sr['steps']} steps:",
        "",
        table(["method", "PSNR (dB)", "SSIM", "FD", "accuracy (guide's label)", "precision", "recall"], rows),
    ]
    (results / "tables.json").write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
