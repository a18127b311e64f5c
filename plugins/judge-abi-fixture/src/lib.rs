//! A test fixture, not a judge to use: a complete plugin (all five symbols, through the SDK's
//! own macro) that declares the ABI `medrl-judge/2`, as a plugin built for a future host would.
//! The host must refuse it after reading the version and before calling anything else, with a
//! message naming both versions (`tests/e2e/judge.rs`).

use medrl_sdk::Sample;
use medrl_sdk::plugin::{Judge, JudgeConfig, JudgeOutput};

pub struct FutureJudge;

impl Judge for FutureJudge {
    fn create(_config: &JudgeConfig) -> Result<Self, String> {
        Ok(FutureJudge)
    }

    fn score(&mut self, _sample: &Sample) -> Result<JudgeOutput, String> {
        Ok(JudgeOutput { score: 1.0, explanation: "a medrl-judge/2 plugin; a medrl-judge/1 host must never call this".into() })
    }
}

medrl_sdk::export_judge!(@abi c"medrl-judge/2", FutureJudge);
