//! Writing files so that a crash never leaves a half-written one: write a temporary file beside the target, flush it
//! to disk, then rename it over the target (a rename within one directory is atomic on POSIX file systems).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Persist the rename itself.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Opens a run's metrics file `path` for appending (creating its folder), after keeping only the lines of what the
/// checkpoint after `step` steps contains ([`truncate_metrics`]).
pub fn open_metrics(path: &Path, step: u64) -> Result<File, String> {
    if let Some(folder) = path.parent() {
        fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    }
    truncate_metrics(path, step)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Keeps the metrics lines of what the checkpoint after `step` steps contains (a resumed run rewrites what came
/// after it): the loss lines of steps `s < step` and the evaluations after `s ≤ step` steps.
fn truncate_metrics(path: &Path, step: u64) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .is_some_and(|v| match (v["step"].as_u64(), v.get("eval")) {
                    (Some(s), Some(_)) => s <= step,
                    (Some(s), None) => s < step,
                    (None, _) => false,
                })
        })
        .map(|line| format!("{line}\n"))
        .collect();
    write_atomically(path, kept.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}
