//! Agreement between a rule's yes/no and a clinician's on the same answers: the confusion
//! counts, accuracy and Cohen's kappa. "Positive" is the rule's "yes" (complete, covered, risky,
//! verbose): a false positive is the rule saying yes where the clinician says no.

use serde::Serialize;

/// Counts over the answers both the rule and the clinician decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Rule yes, clinician yes.
    pub tp: usize,
    /// Rule no, clinician no.
    pub tn: usize,
    /// Rule yes, clinician no.
    pub fp: usize,
    /// Rule no, clinician yes.
    #[serde(rename = "fn")]
    pub fn_: usize,
}

/// Cohen's kappa, or why it is undefined.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kappa {
    pub value: Option<f64>,
    /// Set when `value` is `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undefined_because: Option<String>,
}

impl Confusion {
    pub fn add(&mut self, rule_yes: bool, clinician_yes: bool) {
        match (rule_yes, clinician_yes) {
            (true, true) => self.tp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
        }
    }

    pub fn n(&self) -> usize {
        self.tp + self.tn + self.fp + self.fn_
    }

    /// (TP + TN) / n; `None` without pairs.
    pub fn accuracy(&self) -> Option<f64> {
        let n = self.n();
        (n > 0).then(|| (self.tp + self.tn) as f64 / n as f64)
    }

    /// TP / (TP + FP): of the answers the rule said yes to, the share the clinician did.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    /// TP / (TP + FN): of the answers the clinician said yes to, the share the rule did.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// 2·TP / (2·TP + FP + FN), the harmonic mean of precision and recall, from the counts (so it
    /// is defined, as 0, where one of them is 0 and the other undefined).
    pub fn f1(&self) -> Option<f64> {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// TN / (TN + FP): of the answers the clinician said no to, the share the rule left alone.
    pub fn specificity(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fp)
    }

    /// Cohen's kappa κ = (p_o − p_e) / (1 − p_e), p_o the observed agreement and p_e the agreement
    /// expected from each rater's own yes rate (Cohen 1960). For two categories this equals
    /// 2·(TP·TN − FN·FP) / ((TP+FP)·(FP+TN) + (TP+FN)·(FN+TN)), computed here from the integer
    /// counts so the degenerate case is an exact zero denominator, not a rounding question. The
    /// denominator is 0 exactly when p_e = 1: both raters gave one and the same answer to every
    /// item (all TP or all TN). Kappa is then 0/0 and reported as undefined, with the reason; the
    /// accuracy (1.0) still says they agreed.
    pub fn kappa(&self) -> Kappa {
        let (tp, tn, fp, fn_) = (self.tp as f64, self.tn as f64, self.fp as f64, self.fn_ as f64);
        if self.n() == 0 {
            return Kappa { value: None, undefined_because: Some("no answer was decided by both the rule and the clinician".into()) };
        }
        let denominator = (tp + fp) * (fp + tn) + (tp + fn_) * (fn_ + tn);
        if denominator == 0.0 {
            let answer = if self.tp > 0 { "yes" } else { "no" };
            return Kappa {
                value: None,
                undefined_because: Some(format!("expected agreement is 1: rule and clinician both said `{answer}` to all {} answers", self.n())),
            };
        }
        Kappa { value: Some(2.0 * (tp * tn - fn_ * fp) / denominator), undefined_because: None }
    }
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(tp: usize, tn: usize, fp: usize, fn_: usize) -> Confusion {
        Confusion { tp, tn, fp, fn_ }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn accuracy_and_kappa_match_hand_computed_values() {
        // TP 20, TN 15, FP 5, FN 10; n = 50. p_o = 35/50 = 0.7.
        // Rule yes 25/50 = 0.5, clinician yes 30/50 = 0.6; p_e = 0.5·0.6 + 0.5·0.4 = 0.5.
        // κ = (0.7 − 0.5) / (1 − 0.5) = 0.4.
        let m = c(20, 15, 5, 10);
        assert!(close(m.accuracy().unwrap(), 0.7));
        assert!(close(m.kappa().value.unwrap(), 0.4));
        // TP 45, TN 15, FP 25, FN 15 (n = 100): p_o = 0.6; rule yes 0.7, clinician yes 0.6;
        // p_e = 0.7·0.6 + 0.3·0.4 = 0.54; κ = 0.06 / 0.46 = 0.1304…
        let m = c(45, 15, 25, 15);
        assert!(close(m.accuracy().unwrap(), 0.6));
        assert!(close(m.kappa().value.unwrap(), 0.06 / 0.46));
        // Perfect agreement with both answers used: κ = 1.
        assert!(close(c(3, 2, 0, 0).kappa().value.unwrap(), 1.0));
        // Complete disagreement, balanced: p_o = 0, p_e = 0.5; κ = −1.
        assert!(close(c(0, 0, 2, 2).kappa().value.unwrap(), -1.0));
        assert!(close(c(0, 0, 2, 2).accuracy().unwrap(), 0.0));
    }

    #[test]
    fn degenerate_cases() {
        // No pairs: nothing to report.
        let empty = Confusion::default();
        assert_eq!(empty.accuracy(), None);
        assert_eq!(empty.kappa().value, None);
        // Both raters said yes to everything: p_o = p_e = 1, κ = 0/0, undefined; accuracy 1.
        let all_yes = c(4, 0, 0, 0);
        assert_eq!(all_yes.accuracy(), Some(1.0));
        let k = all_yes.kappa();
        assert_eq!(k.value, None);
        assert!(k.undefined_because.unwrap().contains("`yes` to all 4"));
        assert!(c(0, 7, 0, 0).kappa().undefined_because.unwrap().contains("`no` to all 7"));
        // One rater constant, the other not: p_e < 1, κ defined. Rule always yes, clinician yes 3
        // of 4: p_o = 0.75, p_e = 1·0.75 + 0·0.25 = 0.75, κ = 0.
        let m = c(3, 0, 1, 0);
        assert!(close(m.accuracy().unwrap(), 0.75));
        assert!(close(m.kappa().value.unwrap(), 0.0));
    }

    #[test]
    fn precision_recall_f1_and_specificity_match_hand_computed_values() {
        // TP 16, TN 59, FP 16, FN 44: precision 16/32 = 0.5, recall 16/60 = 0.2667,
        // F1 = 32/(32 + 16 + 44) = 32/92 = 0.3478, specificity 59/75 = 0.7867.
        let m = c(16, 59, 16, 44);
        assert!(close(m.precision().unwrap(), 0.5));
        assert!(close(m.recall().unwrap(), 16.0 / 60.0));
        assert!(close(m.f1().unwrap(), 32.0 / 92.0));
        // F1 is the harmonic mean: 2·0.5·0.2667/(0.5 + 0.2667) = 0.3478.
        assert!(close(m.f1().unwrap(), 2.0 * 0.5 * (16.0 / 60.0) / (0.5 + 16.0 / 60.0)));
        assert!(close(m.specificity().unwrap(), 59.0 / 75.0));
        // Nothing said yes by the rule: precision undefined, recall and F1 0.
        let silent = c(0, 5, 0, 3);
        assert_eq!((silent.precision(), silent.recall(), silent.f1()), (None, Some(0.0), Some(0.0)));
        // No positive label and no positive prediction: recall and F1 undefined.
        assert_eq!((c(0, 4, 0, 0).recall(), c(0, 4, 0, 0).f1(), c(0, 4, 0, 0).specificity()), (None, None, Some(1.0)));
    }

    #[test]
    fn add_counts_each_cell() {
        let mut m = Confusion::default();
        for (r, cl) in [(true, true), (true, false), (false, true), (false, false), (false, false)] {
            m.add(r, cl);
        }
        assert_eq!(m, c(1, 2, 1, 1));
        assert_eq!(m.n(), 5);
    }
}
