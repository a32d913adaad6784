//! Ctrl-C as a request, not a kill: the first SIGINT sets a flag that the training loop polls between steps (it then
//! writes a checkpoint and exits); the handler does nothing else, since only async-signal-safe work is allowed there.

use diffuse_diffusion::train::Collective;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT to the flag.
pub fn install() -> Result<(), String> {
    let handler = on_sigint as extern "C" fn(libc::c_int);
    // SAFETY: `signal` is given a valid signal number and a function with the C handler signature that only stores to
    // an atomic, which is async-signal-safe.
    let previous = unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
    if previous == libc::SIG_ERR {
        return Err("cannot install the Ctrl-C handler".into());
    }
    Ok(())
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Whether Ctrl-C was pressed on any rank of `collective`: every rank asks at the same step, so all of them stop at
/// that step, whichever was interrupted.
pub fn requested_on_any(collective: &dyn Collective) -> Result<bool, String> {
    collective.any(requested()).map_err(|e| e.to_string())
}
