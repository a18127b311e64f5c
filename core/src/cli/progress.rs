//! How a long command shows its progress: the indicatif bar when standard error is a terminal,
//! plain lines ([`medrl::runs::progress`]) when it is not (a job in the background, `2> log`, a
//! pipe, CI), where a bar would draw nothing. Both go to standard error, so standard output keeps
//! only the command's results.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use medrl::rl::StepReport;
use medrl::runs::{Figure, ProgressEvery, ProgressLines};
use std::io::IsTerminal;
use std::time::Instant;

#[derive(Args, Clone, Debug)]
pub struct ProgressArgs {
    /// When standard error is not a terminal (a background job, a log file), print a plain
    /// progress line each time the step passes a multiple of N (and at the first and last step);
    /// on a terminal a bar is drawn instead.
    #[arg(long, value_name = "N", default_value_t = ProgressEvery::default().steps)]
    pub progress_every: u64,
    /// Also print a line at the first step S seconds or more after the last one, so a slow run
    /// still shows it is alive; 0 turns this off.
    #[arg(long, value_name = "S", default_value_t = ProgressEvery::default().seconds)]
    pub progress_secs: f64,
}

impl ProgressArgs {
    /// The settings, checked (a 0 step interval or a negative time is refused).
    pub fn every(&self) -> anyhow::Result<ProgressEvery> {
        let every = ProgressEvery { steps: self.progress_every, seconds: self.progress_secs };
        every.validate().map_err(anyhow::Error::msg)?;
        Ok(every)
    }
}

/// A bar on a terminal, lines elsewhere.
pub enum Progress {
    Bar(ProgressBar),
    Lines { lines: ProgressLines, started: Instant },
}

impl Progress {
    /// Progress of `what` (the command's name, the lines' first word) over `total` units
    /// (`step` or `prompts`), of which `start` were done before (a resumed run); `template` is
    /// the bar's indicatif template.
    pub fn new(every: ProgressEvery, what: &str, unit: &'static str, total: u64, start: u64, template: &str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
            bar.set_position(start);
            Progress::Bar(bar)
        } else {
            Progress::Lines { lines: ProgressLines::new(what, unit, total, start, every), started: Instant::now() }
        }
    }

    /// Step `done` finished: the bar moves (its message from `bar_message`), or a line is
    /// printed with `figures` when one is due.
    pub fn update(&mut self, done: u64, figures: &[Figure], bar_message: impl FnOnce() -> String) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(bar_message());
            }
            Progress::Lines { lines, started } => {
                if let Some(line) = lines.line(done, started.elapsed(), figures) {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// The lines' clock started at `t` rather than now: for a display created at the first step,
    /// when the total is known, that should still count the time to that step.
    pub fn since(mut self, t: Instant) -> Self {
        if let Progress::Lines { started, .. } = &mut self {
            *started = t;
        }
        self
    }

    /// Starts the lines' clock again (elapsed and ETA count from now): for a command whose
    /// progress covers only a later stage.
    pub fn restart_clock(&mut self) {
        if let Progress::Lines { started, .. } = self {
            *started = Instant::now();
        }
    }

    /// The bar, if this is one (a command that hides it between stages).
    pub fn bar(&self) -> Option<&ProgressBar> {
        match self {
            Progress::Bar(bar) => Some(bar),
            Progress::Lines { .. } => None,
        }
    }

    /// Leaves a finished bar on screen.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }

    /// Removes the bar.
    pub fn finish_and_clear(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The bar template of RL training.
pub const RL_BAR: &str = "{bar:30} step {pos}/{len} {msg} [{elapsed_precise}]";

/// An RL step's figures for a progress line.
pub fn rl_figures(r: &StepReport) -> Vec<Figure> {
    let mut f = vec![
        Figure::signed("reward", r.reward_mean, 4),
        Figure::new("kl", r.kl_per_token, 5),
        Figure::new("beta", r.kl_coef, 4),
        Figure::new("pg_loss", r.pg_loss, 4),
    ];
    if let Some(vf) = r.vf_loss {
        f.push(Figure::new("vf_loss", vf, 4));
    }
    f.extend([Figure::new("len", r.response_len_mean, 1), Figure::new("eos", r.eos_rate, 3), Figure::new("tok_s", r.rollout_tokens_per_s, 0)]);
    f
}

/// An RL step as the bar's message.
pub fn rl_bar_message(r: &StepReport) -> String {
    format!("reward {:+.3} KL {:.4}/tok β {:.3} {:.0} tok/s", r.reward_mean, r.kl_per_token, r.kl_coef, r.rollout_tokens_per_s)
}
