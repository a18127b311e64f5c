//! The report's figures as SVG, drawn with `plotters`: per set, the metrics of every variant as
//! grouped bars with their bootstrap intervals as whiskers, and the distribution of the reward
//! per variant as histograms on one shared axis.
//!
//! Drawn with the shared kit in [`crate::plot`] (palette, error, no system fonts).

use super::bootstrap::Estimate;
use super::metrics::Metric;
pub use crate::plot::PlotError;
use crate::plot::{colour, failed};
use plotters::prelude::*;

/// Grouped bars: a group per metric, a bar per variant at its value, a whisker from `lo` to
/// `hi`. `rows[m][v]` is metric `m` of variant `v`; a missing value leaves its bar out. Only
/// metrics on the unit scale belong here (mean length has its own scale).
pub fn metric_bars(title: &str, variants: &[&str], rows: &[(Metric, Vec<Option<Estimate>>)]) -> Result<String, PlotError> {
    let estimates = || rows.iter().flat_map(|(_, row)| row.iter().flatten());
    let y_min = estimates().map(|e| e.lo.min(e.value)).fold(0.0_f64, f64::min);
    let y_max = estimates().map(|e| e.hi.max(e.value)).fold(1.0_f64, f64::max);
    let pad = 0.05 * (y_max - y_min);
    // Headroom above the tallest bar for the legend, so it covers no bar.
    let headroom = 0.25 * (y_max - y_min);
    let k = rows.len().max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (160 * rows.len().max(3) as u32 + 120, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..k - 0.5, (y_min - pad)..(y_max + headroom))
            .map_err(|e| failed(title, e))?;
        let names: Vec<&str> = rows.iter().map(|(m, _)| m.name()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            // Group i is centred on x = i; a tick between groups gets no label.
            .x_labels(rows.len())
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 && *x >= 0.0 {
                    names.get(x.round() as usize).map_or(String::new(), |n| n.to_string())
                } else {
                    String::new()
                }
            })
            .y_desc("value (95 % interval)")
            .draw()
            .map_err(|e| failed(title, e))?;
        let width = 0.8 / variants.len().max(1) as f64;
        for (v, name) in variants.iter().enumerate() {
            let c = colour(v);
            let bars: Vec<(f64, Estimate)> =
                rows.iter().enumerate().filter_map(|(i, (_, row))| row[v].map(|e| (i as f64 - 0.4 + v as f64 * width, e))).collect();
            chart
                .draw_series(bars.iter().map(|&(x, e)| Rectangle::new([(x, e.value.max(0.0)), (x + width * 0.9, e.value.min(0.0))], c.filled())))
                .map_err(|e| failed(title, e))?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
            let whisker = |x: f64, e: Estimate| {
                let (mid, cap) = (x + width * 0.45, width * 0.2);
                [vec![(mid, e.lo), (mid, e.hi)], vec![(mid - cap, e.lo), (mid + cap, e.lo)], vec![(mid - cap, e.hi), (mid + cap, e.hi)]]
            };
            chart
                .draw_series(bars.iter().flat_map(|&(x, e)| whisker(x, e)).map(|line| PathElement::new(line, BLACK.stroke_width(1))))
                .map_err(|e| failed(title, e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| failed(title, e))?;
        root.present().map_err(|e| failed(title, e))?;
    }
    Ok(svg)
}

/// Where value `x` falls: bin `i` holds `[lo + i·bin, lo + (i+1)·bin)`. The small tolerance
/// keeps a value on an edge (0.0, 0.05 after rounding) in the bin that starts there.
fn bin_of(x: f64, lo: f64, bin: f64) -> usize {
    ((x - lo) / bin + 1e-9).floor().max(0.0) as usize
}

/// The first bin's lower edge (a multiple of `bin`) and the number of bins that cover the data.
pub fn bin_edges(values: impl Iterator<Item = f64> + Clone, bin: f64) -> (f64, usize) {
    let min = values.clone().fold(f64::INFINITY, f64::min);
    let max = values.fold(f64::NEG_INFINITY, f64::max);
    if !min.is_finite() {
        return (0.0, 1);
    }
    let lo = ((min / bin) + 1e-9).floor() * bin;
    (lo, bin_of(max, lo, bin) + 1)
}

/// Counts per bin (see [`bin_of`]); a value past the last bin is counted in it.
pub fn histogram(values: &[f64], lo: f64, bin: f64, count: usize) -> Vec<usize> {
    let mut counts = vec![0; count];
    for &x in values {
        counts[bin_of(x, lo, bin).min(count - 1)] += 1;
    }
    counts
}

/// One histogram of rewards per variant, stacked, on a shared x axis and a shared count axis.
pub fn reward_histograms(title: &str, rewards: &[(&str, Vec<f64>)]) -> Result<String, PlotError> {
    const BIN: f64 = 0.05;
    let (lo, count) = bin_edges(rewards.iter().flat_map(|(_, r)| r.iter().copied()), BIN);
    let hi = lo + count as f64 * BIN;
    let counts: Vec<Vec<usize>> = rewards.iter().map(|(_, r)| histogram(r, lo, BIN, count)).collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as u32;
    let mut svg = String::new();
    {
        let panels = rewards.len().max(1);
        let root = SVGBackend::with_string(&mut svg, (720, 60 + 200 * panels as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(title, e))?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(|e| failed(title, e))?;
        let areas = root.split_evenly((panels, 1));
        for (v, ((name, r), panel)) in rewards.iter().zip(&areas).enumerate() {
            let counts = &counts[v];
            let mean = if r.is_empty() { f64::NAN } else { r.iter().sum::<f64>() / r.len() as f64 };
            let caption = format!("{name}: {} answers with a reward, mean {mean:.3}", r.len());
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, ("sans-serif", 14))
                .margin(8)
                // Room for the last tick label at the right edge.
                .margin_right(24)
                .x_label_area_size(28)
                .y_label_area_size(44)
                .build_cartesian_2d(lo..hi, 0u32..top + 1)
                .map_err(|e| failed(title, e))?;
            chart.configure_mesh().disable_x_mesh().x_desc("reward").y_desc("answers").draw().map_err(|e| failed(title, e))?;
            let c = colour(v);
            chart
                .draw_series(counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, &n)| {
                    let x0 = lo + i as f64 * BIN;
                    Rectangle::new([(x0, n as u32), (x0 + BIN * 0.95, 0)], c.filled())
                }))
                .map_err(|e| failed(title, e))?;
        }
        root.present().map_err(|e| failed(title, e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_data_and_count_every_value_once() {
        // [-0.12, 0.4] in bins of 0.05 from -0.15: 0.4 starts bin (0.4 + 0.15) / 0.05 = 11, so 12 bins.
        let values = [-0.12, 0.0, 0.0, 0.049, 0.05, 0.4];
        let (lo, count) = bin_edges(values.iter().copied(), 0.05);
        assert!((lo + 0.15).abs() < 1e-12 && count == 12, "{lo} {count}");
        let h = histogram(&values, lo, 0.05, count);
        assert_eq!(h.iter().sum::<usize>(), values.len());
        // 0.0 and 0.049 in [0, 0.05) (bin 3), 0.05 in bin 4, 0.4 in the last bin.
        assert_eq!((h[0], h[3], h[4], h[11]), (1, 3, 1, 1), "{h:?}");
        assert_eq!(bin_edges(std::iter::empty(), 0.05), (0.0, 1));
        // Rewards all 0 and all -0.1: a bin starting at each, not a value on a bin's top edge.
        let (lo, count) = bin_edges([-0.1, 0.0].into_iter(), 0.05);
        assert!((lo + 0.1).abs() < 1e-12 && count == 3, "{lo} {count}");
        assert_eq!(histogram(&[-0.1, 0.0, 0.0], lo, 0.05, count), vec![1, 0, 2]);
    }

    #[test]
    fn svg_figures_draw_offline_with_their_labels() {
        // No font files are read: this runs on a machine without any installed font.
        let e = |v: f64| Some(Estimate { value: v, lo: v - 0.1, hi: v + 0.05 });
        let svg = metric_bars(
            "gold: metrics",
            &["sft", "rl"],
            &[(Metric::ChainCoverage, vec![e(0.5), e(0.7)]), (Metric::RiskyRate, vec![e(0.2), None]), (Metric::MeanReward, vec![e(-0.2), e(0.1)])],
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..200.min(svg.len())]);
        // plotters writes each text on its own line inside <text>…</text>.
        for text in ["gold: metrics", "chain_coverage", "risky_rate", "mean_reward", "sft", "rl"] {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "{text} missing");
        }
        // Five bars (one value missing) and the legend's two swatches.
        assert!(svg.matches("<rect").count() >= 7, "{}", svg.matches("<rect").count());
        let svg = reward_histograms("gold: rewards", &[("sft", vec![0.1, 0.2, 0.2]), ("rl", vec![0.5])]).unwrap();
        assert!(svg.contains("sft: 3 answers with a reward, mean 0.167") && svg.contains("rl: 1 answers with a reward, mean 0.500"), "{svg}");
    }
}
