//! Editing images with a trained denoiser: image-to-image ([`sdedit`]) and inpainting ([`repaint`]), both on the
//! samplers of [`crate::sampler`] and any [`crate::sampler::Denoiser`] (guided or not), untrained for the task.

pub mod repaint;
pub mod sdedit;

pub use repaint::{jump_schedule, Move, RePaint, RePaintRun};
pub use sdedit::{check_strength, edit_start, EditStart, Sdedit};
