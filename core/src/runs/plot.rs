//! A run's curves as SVG files (drawn with [`crate::plot`], in eval's style): for an RL run
//! `reward.svg` (the total and each rule), `kl.svg` (KL per token and β), `loss.svg` (policy and,
//! for PPO, value loss), `entropy.svg` and `length.svg` (response length and EOS rate); for an
//! SFT output `loss.svg` (loss and learning rate). `medrl runs plot` and the end of `medrl train`
//! and `medrl sft` write them.

use super::scalars::{RunKind, RunScalars, tag};
use crate::plot::{Panel, PlotError, Series, line_panels};
use std::path::{Path, PathBuf};

/// Why plots could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RunPlotError {
    #[error(transparent)]
    Draw(#[from] PlotError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The series of `tag` as plot points, named `name`.
pub fn series(s: &RunScalars, tag: &str, name: &str) -> Series {
    Series { name: name.to_string(), points: s.get(tag).iter().map(|&(step, v)| (step as f64, v)).collect() }
}

fn panel(caption: &str, y_desc: &str, series: Vec<Series>) -> Panel {
    Panel { caption: caption.into(), y_desc: y_desc.into(), series }
}

/// The run's name for titles: its folder's name.
pub fn run_name(root: &Path) -> String {
    root.file_name().map_or_else(|| root.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Every figure of the run: `(file name, SVG)`.
pub fn figures(s: &RunScalars) -> Result<Vec<(&'static str, String)>, PlotError> {
    let name = run_name(&s.root);
    let figure = |file: &'static str, title: &str, panels: &[Panel]| -> Result<(&'static str, String), PlotError> {
        Ok((file, line_panels(&format!("{name}: {title}"), "step", panels)?))
    };
    match s.kind {
        RunKind::Sft => Ok(vec![figure(
            "loss.svg",
            "SFT",
            &[
                panel("loss on the answer tokens", "mean NLL (nats)", vec![series(s, tag::SFT_LOSS, "loss")]),
                panel("learning rate", "lr", vec![series(s, "optim/lr", "lr")]),
            ],
        )?]),
        RunKind::Rl => {
            let rules: Vec<Series> = s.rules.iter().map(|id| series(s, &tag::rule(id), id)).filter(|r| !r.points.is_empty()).collect();
            let mut losses = vec![panel("policy loss (clipped surrogate)", "loss", vec![series(s, tag::POLICY_LOSS, "policy")])];
            if !s.get(tag::VALUE_LOSS).is_empty() {
                losses.push(panel("value loss", "loss", vec![series(s, tag::VALUE_LOSS, "value")]));
            }
            Ok(vec![
                figure(
                    "reward.svg",
                    "reward per step",
                    &[
                        panel("total reward (mean over the scored responses)", "reward", vec![series(s, tag::REWARD_TOTAL, "total")]),
                        panel("rule scores (mean over the responses each rule counted for)", "score", rules),
                    ],
                )?,
                figure(
                    "kl.svg",
                    "KL to the reference and β",
                    &[
                        panel("KL per response token", "nats", vec![series(s, tag::KL_PER_TOKEN, "KL")]),
                        panel("β (the KL coefficient the step used)", "β", vec![series(s, tag::KL_BETA, "β")]),
                    ],
                )?,
                figure("loss.svg", "losses", &losses)?,
                figure(
                    "entropy.svg",
                    "policy entropy",
                    &[panel("entropy of the policy on its responses", "nats per token", vec![series(s, tag::ENTROPY, "entropy")])],
                )?,
                figure(
                    "length.svg",
                    "response length and EOS rate",
                    &[
                        panel("response length (mean)", "tokens", vec![series(s, tag::LENGTH, "length")]),
                        panel("EOS rate (share of responses that ended before max_new_tokens)", "share", vec![series(s, tag::EOS_RATE, "EOS rate")]),
                    ],
                )?,
            ])
        }
    }
}

/// Writes [`figures`] into `out` (created if needed); returns the files written.
pub fn write(s: &RunScalars, out: &Path) -> Result<Vec<PathBuf>, RunPlotError> {
    std::fs::create_dir_all(out).map_err(|source| RunPlotError::Io { path: out.to_path_buf(), source })?;
    let mut written = Vec::new();
    for (file, svg) in figures(s)? {
        let path = out.join(file);
        std::fs::write(&path, svg).map_err(|source| RunPlotError::Io { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rl_run_gets_five_figures_with_its_rules_and_a_grpo_run_no_value_panel() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ppo-a");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("config.toml"), "[ppo]\nalgorithm = \"grpo\"\n").unwrap();
        std::fs::write(root.join("rewards.csv"), "step,sample_id,category,chain,risk,total\n1,a,general,0.5,,0.25\n2,a,general,0.75,1,0.5\n")
            .unwrap();
        std::fs::write(root.join("metrics.jsonl"), "{\"step\":1,\"pg_loss\":0.1,\"vf_loss\":0}\n{\"step\":2,\"pg_loss\":0.2,\"vf_loss\":0}\n")
            .unwrap();
        let s = RunScalars::read(&root).unwrap();
        let written = write(&s, &root.join("plots")).unwrap();
        let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["reward.svg", "kl.svg", "loss.svg", "entropy.svg", "length.svg"]);
        let reward = std::fs::read_to_string(root.join("plots/reward.svg")).unwrap();
        for text in ["ppo-a: reward per step", "chain", "risk", "step"] {
            assert!(reward.contains(&format!(">\n{text}\n</text>")), "{text}");
        }
        // total: 2 points; chain 2, risk 1.
        assert_eq!(reward.matches("<circle").count(), 5);
        let loss = std::fs::read_to_string(root.join("plots/loss.svg")).unwrap();
        assert!(loss.contains(">\npolicy loss (clipped surrogate)\n</text>") && !loss.contains("value loss"));
    }
}
