//! The training kit SFT and RL share: the optimiser and learning-rate schedule ([`optim`]), the
//! run folder with its append-only logs and checkpoints ([`run_dir`]), the seeded data cursor
//! ([`cursor`]), masked reductions ([`masked`]), the choice of device ([`device`]) and the TensorBoard event-file
//! format the runs also log to ([`tfevents`]). `rl/` is
//! the RL math and the trainer on top of it; `sft/` the supervised loop.

pub mod cursor;
pub mod device;
pub mod masked;
pub mod optim;
pub mod run_dir;
pub mod settings;
pub mod tfevents;

pub use cursor::{DataCursor, epoch_order};
pub use device::pick_device;
pub use masked::{masked_mean, masked_sum};
pub use optim::{AdamW, AdamWConfig, Grads, LrSchedule, clip_scale};
pub use run_dir::{JsonlWriter, OpenMode, RewardsCsv, RunDir, RunDirError};
pub use settings::SettingsError;
