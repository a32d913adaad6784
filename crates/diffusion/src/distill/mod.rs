//! Few-step generation: students that sample in 1–8 network calls what their teacher samples in tens
//! (`docs/distillation.md` derives both methods).
//!
//! - [`progressive`]: progressive distillation (Salimans & Ho 2022): the target that makes one DDIM step of the
//!   student equal two of the teacher's, the trailing grid, the truncated-SNR weight;
//! - [`consistency`]: consistency models (Song et al. 2023): the `c_skip`/`c_out` parameterisation that holds
//!   `f(x, σ_min) = x`, the teacher's ODE step between adjacent noise levels, the distances, multistep sampling;
//! - [`curriculum`]: the improved consistency-training recipe (Song & Dhariwal 2023): discretisation curriculum,
//!   log-normal level pairs, gap weighting;
//! - [`method`]: [`DistillConfig`], the settings of a run, and the three [`Method`]s;
//! - [`trainer`]: [`Distiller`], one step of any of them, with EMA and rounds;
//! - [`checkpoint`]: resumable checkpoints and the per-round student folders.

pub mod checkpoint;
pub mod consistency;
pub mod curriculum;
pub mod method;
pub mod progressive;
pub mod trainer;

pub use checkpoint::{read_state, round_name, SamplingInfo, SAMPLING_INFO_FILE};
pub use consistency::{
    consistency_sample, consistency_sample_from, default_sampling_sigmas, ConsistencyFunction,
    ConsistencyParam, Distance, LevelWeighting, NetworkConsistency, OdeSolver,
};
pub use curriculum::Curriculum;
pub use method::{check_halvings, fingerprint, DistillConfig, Method, TeacherId};
pub use trainer::{DistillState, Distiller, RoundStart};
