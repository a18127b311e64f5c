//! Plain progress lines, for a run whose output is not a terminal (a job in the background, a
//! log file, CI): every N steps and at least every S seconds, one line a person can read and a
//! script can split, with the step, the figures of that step, the time so far and the time left.
//!
//! ```text
//! train step=10/200 reward=+0.1234 kl=0.00123 beta=0.0500 pg_loss=-0.0123 vf_loss=0.0456 len=96.2 eos=0.810 tok_s=512 elapsed=0:01:02 eta=0:19:38
//! ```
//!
//! The first word is the command, then `key=value` pairs with no spaces inside; `step=` is
//! `done/total`; times are `H:MM:SS`. [`parse_line`] reads one back. Deciding whether to print
//! lines or draw a bar (a terminal) is the command line's; this module only says what a line
//! holds and when one is due.

use std::collections::BTreeMap;
use std::time::Duration;

/// When lines are printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressEvery {
    /// A line whenever the step passes a multiple of this (default 10; at least 1).
    pub steps: u64,
    /// And at the first step at least this many seconds after the last line, so a slow run
    /// still prints (default 60; 0 turns it off).
    pub seconds: f64,
}

impl Default for ProgressEvery {
    fn default() -> Self {
        ProgressEvery { steps: 10, seconds: 60.0 }
    }
}

impl ProgressEvery {
    /// Refuses a setting that would never print or makes no sense, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps == 0 {
            return Err("--progress-every 0: a line every 0 steps is not a setting; use 1 for a line at every step".into());
        }
        if !self.seconds.is_finite() || self.seconds < 0.0 {
            return Err(format!("--progress-secs {}: give a number of seconds ≥ 0 (0: no time-based lines)", self.seconds));
        }
        Ok(())
    }
}

/// How a figure is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// `decimals` digits after the point.
    Fixed(usize),
    /// The same, with a `+` on positive values (rewards, which move around 0).
    Signed(usize),
    /// Scientific, 3 digits after the point (`2.000e-4`), for learning rates.
    Sci,
}

/// One figure of a line: `name=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub style: Style,
}

impl Figure {
    pub fn new(name: &'static str, value: f64, decimals: usize) -> Self {
        Figure { name, value, style: Style::Fixed(decimals) }
    }

    pub fn signed(name: &'static str, value: f64, decimals: usize) -> Self {
        Figure { name, value, style: Style::Signed(decimals) }
    }

    pub fn sci(name: &'static str, value: f64) -> Self {
        Figure { name, value, style: Style::Sci }
    }

    /// `name=value`; a value that is not finite is `nan`, `inf` or `-inf`, which parse back.
    pub fn render(&self) -> String {
        if !self.value.is_finite() {
            return format!("{}={}", self.name, self.value.to_string().to_lowercase());
        }
        match self.style {
            Style::Fixed(d) => format!("{}={:.*}", self.name, d, self.value),
            Style::Signed(d) => format!("{}={:+.*}", self.name, d, self.value),
            Style::Sci => format!("{}={:.3e}", self.name, self.value),
        }
    }
}

/// `H:MM:SS`, as indicatif's `elapsed_precise`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The lines of one command's progress.
#[derive(Debug, Clone)]
pub struct ProgressLines {
    what: String,
    /// `step`, or `prompts` for predict.
    unit: &'static str,
    total: u64,
    /// Where this process started (a resumed run starts at its checkpoint): the rate and the ETA
    /// count only the steps done here.
    start: u64,
    every: ProgressEvery,
    /// The step and the time of the last line.
    last: Option<(u64, Duration)>,
}

impl ProgressLines {
    pub fn new(what: &str, unit: &'static str, total: u64, start: u64, every: ProgressEvery) -> Self {
        ProgressLines { what: what.to_string(), unit, total, start, every, last: None }
    }

    /// Whether a line is due at `step`, `elapsed` after the command started: the first step of
    /// this process, the last one, one that passes a multiple of `every.steps`, or the first one
    /// `every.seconds` after the last line.
    pub fn due(&self, step: u64, elapsed: Duration) -> bool {
        let Some((last_step, last_time)) = self.last else { return step > self.start };
        step > last_step
            && (step >= self.total
                || step / self.every.steps > last_step / self.every.steps
                || (self.every.seconds > 0.0 && (elapsed - last_time.min(elapsed)).as_secs_f64() >= self.every.seconds))
    }

    /// The line for `step` when one is due (and remembers it), else `None`.
    pub fn line(&mut self, step: u64, elapsed: Duration, figures: &[Figure]) -> Option<String> {
        if !self.due(step, elapsed) {
            return None;
        }
        self.last = Some((step, elapsed));
        let done = step.saturating_sub(self.start).max(1);
        let eta = elapsed.mul_f64(self.total.saturating_sub(step) as f64 / done as f64);
        let mut line = format!("{} {}={step}/{}", self.what, self.unit, self.total);
        for f in figures {
            line.push(' ');
            line.push_str(&f.render());
        }
        line.push_str(&format!(" elapsed={} eta={}", clock(elapsed), clock(eta)));
        Some(line)
    }
}

/// A progress line read back: the command, `step=` (or `prompts=`) as done and total, and
/// every other `key=value` as text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine {
    pub what: String,
    pub unit: String,
    pub done: u64,
    pub total: u64,
    pub fields: BTreeMap<String, String>,
}

impl ParsedLine {
    /// A figure as a number (`None` when absent or not a number).
    pub fn number(&self, key: &str) -> Option<f64> {
        self.fields.get(key)?.parse().ok()
    }

    /// A `H:MM:SS` field as a duration.
    pub fn duration(&self, key: &str) -> Option<Duration> {
        let parts: Vec<u64> = self.fields.get(key)?.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let [h, m, s] = parts[..] else { return None };
        (m < 60 && s < 60).then(|| Duration::from_secs(h * 3600 + m * 60 + s))
    }
}

/// Reads a line [`ProgressLines::line`] wrote; `None` for any other line (a log message, a
/// summary).
pub fn parse_line(line: &str) -> Option<ParsedLine> {
    let mut words = line.split_whitespace();
    let what = words.next()?.to_string();
    let (unit, progress) = words.next()?.split_once('=')?;
    let (done, total) = progress.split_once('/')?;
    let mut fields = BTreeMap::new();
    for word in words {
        let (k, v) = word.split_once('=')?;
        fields.insert(k.to_string(), v.to_string());
    }
    fields.contains_key("eta").then_some(())?;
    Some(ParsedLine { what, unit: unit.to_string(), done: done.parse().ok()?, total: total.parse().ok()?, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn lines_come_every_n_steps_at_the_first_and_last_and_after_a_quiet_minute() {
        let mut p = ProgressLines::new("train", "step", 25, 0, ProgressEvery { steps: 10, seconds: 60.0 });
        // One second a step, except step 13, which ends 70 s after step 12.
        let mut t = 0;
        let mut printed = Vec::new();
        for step in 1..=25 {
            t += if step == 13 { 70 } else { 1 };
            if p.line(step, secs(t), &[]).is_some() {
                printed.push(step);
            }
        }
        // 1 (first), 10, 20 (multiples), 13 (70 s ≥ 60 s after step 10's line), 25 (last).
        assert_eq!(printed, [1, 10, 13, 20, 25]);
        // No time floor: only the steps.
        let mut p = ProgressLines::new("sft", "step", 30, 0, ProgressEvery { steps: 10, seconds: 0.0 });
        let printed: Vec<u64> = (1..=30).filter(|&s| p.line(s, secs(s * 1000), &[]).is_some()).collect();
        assert_eq!(printed, [1, 10, 20, 30]);
        // Prompts in batches of 8: a line whenever a multiple of 10 is passed.
        let mut p = ProgressLines::new("predict", "prompts", 40, 0, ProgressEvery { steps: 10, seconds: 0.0 });
        let printed: Vec<u64> = [8, 16, 24, 32, 40].into_iter().filter(|&n| p.line(n, secs(1), &[]).is_some()).collect();
        assert_eq!(printed, [8, 16, 24, 32, 40], "8 is first; 16, 24, 32 and 40 each pass a multiple of 10");
    }

    #[test]
    fn a_line_says_the_figures_the_time_and_the_eta_and_parses_back() {
        // Resumed at step 4 of 20; step 6 done 10 s later: 5 s a step, 14 steps left → 70 s.
        let mut p = ProgressLines::new("train", "step", 20, 4, ProgressEvery::default());
        let figures = [Figure::signed("reward", 0.12346, 4), Figure::new("kl", 0.001234, 5), Figure::new("vf_loss", f64::NAN, 4)];
        assert!(p.line(5, secs(5), &figures).is_some());
        let line = p.line(20, secs(80), &figures).unwrap();
        let mut q = ProgressLines::new("train", "step", 20, 4, ProgressEvery::default());
        q.line(5, secs(5), &[]);
        assert_eq!(q.clone().line(6, secs(10), &[]), None, "not due: no multiple of 10 passed, 5 s since the last line");
        assert_eq!(line, "train step=20/20 reward=+0.1235 kl=0.00123 vf_loss=nan elapsed=0:01:20 eta=0:00:00");
        let mut r = ProgressLines::new("train", "step", 20, 4, ProgressEvery { steps: 1, seconds: 0.0 });
        let line = r.line(6, secs(10), &figures).unwrap();
        assert!(line.ends_with("elapsed=0:00:10 eta=0:01:10"), "{line}");
        let parsed = parse_line(&line).unwrap();
        assert_eq!((parsed.what.as_str(), parsed.unit.as_str(), parsed.done, parsed.total), ("train", "step", 6, 20));
        assert_eq!(parsed.number("reward"), Some(0.1235));
        assert!(parsed.number("vf_loss").unwrap().is_nan());
        assert_eq!(parsed.duration("eta"), Some(secs(70)));
        assert_eq!(clock(secs(3 * 3600 + 62)), "3:01:02");
        assert_eq!(Figure::sci("lr", 2e-4).render(), "lr=2.000e-4");
        assert_eq!("2.000e-4".parse::<f64>(), Ok(2e-4));
        assert_eq!(parse_line("done: 2 steps, 0 skipped updates"), None);
        assert_eq!(parse_line("training tiny with medical-safety@1.0.0"), None);
    }

    #[test]
    fn settings_that_never_print_are_refused() {
        assert!(ProgressEvery { steps: 0, seconds: 1.0 }.validate().unwrap_err().contains("--progress-every 0"));
        assert!(ProgressEvery { steps: 1, seconds: -1.0 }.validate().unwrap_err().contains("--progress-secs -1"));
        assert!(ProgressEvery { steps: 1, seconds: f64::NAN }.validate().is_err());
        ProgressEvery::default().validate().unwrap();
    }
}
