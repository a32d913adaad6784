//! Arbitrary text as a diffusers `scheduler_config.json`. A config that reads must survive a write/read round trip
//! unchanged, the noise schedule it describes must either build or be refused with an error, and so must the sampler
//! diffuse resolves from it and the timesteps that sampler visits.
#![no_main]

use diffuse_diffusion::sampler::scheduler::{SamplerOverrides, Scheduler};
use diffuse_diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scheduler) = Scheduler::from_json_str(text) {
        // Resolving builds the schedule; listing the timesteps runs every grid computation.
        if scheduler.schedule.len() <= 10_000 {
            for steps in [1, 7, 50] {
                let overrides = SamplerOverrides {
                    steps: Some(steps),
                    ..SamplerOverrides::default()
                };
                if let Ok(s) = scheduler.clone().apply(&overrides) {
                    let _ = s.sampler.model_timesteps(&s.schedule, &s.options);
                }
            }
        }
    }
    let Ok(config) = SchedulerConfig::from_json_str(text) else {
        return;
    };
    let again = SchedulerConfig::from_json_str(&config.to_json_string())
        .expect("a written config reads back");
    assert_eq!(again, config);
    if let Ok(schedule) = NoiseSchedule::from_config(&config) {
        assert_eq!(schedule.len(), config.num_train_timesteps);
        assert!(schedule
            .alphas_cumprod
            .iter()
            .all(|a| (0.0..=1.0).contains(a)));
    }
});
