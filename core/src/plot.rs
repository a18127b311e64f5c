//! The SVG drawing kit the figures share: one palette, one error type, and line charts of
//! series over training steps. Evaluation's bar charts and histograms (`eval/plot.rs`) and the
//! run plots (`runs/plot.rs`) are drawn with it.
//!
//! plotters is built without its TrueType support: text sizes are estimated from the character
//! count and the SVG names a generic font family, so drawing needs no system font and works
//! offline on any machine (the viewer picks the font).

use plotters::prelude::*;

/// One colour per series, in order (the Tableau 10 palette), repeating after ten.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `i`-th colour of the palette.
pub fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

/// A figure plotters could not draw.
#[derive(Debug, thiserror::Error)]
#[error("drawing {figure}: {message}")]
pub struct PlotError {
    pub figure: String,
    pub message: String,
}

/// A [`PlotError`] for `figure`.
pub fn failed(figure: &str, e: impl std::fmt::Display) -> PlotError {
    PlotError { figure: figure.to_string(), message: e.to_string() }
}

/// One named line: `(x, y)` points in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart of a figure: its caption, the y axis' name, and its lines (one colour each, in
/// order; a legend when there is more than one).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub caption: String,
    pub y_desc: String,
    pub series: Vec<Series>,
}

/// Series with at most this many points also get a dot per point, so a run of a few steps (or
/// a single one, which a line cannot show) is visible.
const MARKERS_UP_TO: usize = 40;

/// The range `[lo, hi]` of `values`, widened by 5 % each side; a single value or none gets a
/// unit-wide range around it (or around 0).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (-0.5, 0.5);
    }
    if hi - lo < 1e-12 {
        let half = (lo.abs() * 0.1).max(0.5);
        return (lo - half, hi + half);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Line charts stacked vertically under one title, sharing the x axis (`x_desc`, e.g. "step")
/// and its range, each with its own y range. A panel without points is drawn empty with its
/// caption, so a figure's layout does not depend on what a run recorded.
pub fn line_panels(title: &str, x_desc: &str, panels: &[Panel]) -> Result<String, PlotError> {
    let (x_lo, x_hi) = {
        let xs = panels.iter().flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|&(x, _)| x)));
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
        // A little room each side, so the first and last dots are drawn whole.
        if lo.is_finite() && hi > lo {
            let pad = (0.02 * (hi - lo)).max(0.25);
            (lo - pad, hi + pad)
        } else if lo.is_finite() {
            (lo - 0.5, lo + 0.5)
        } else {
            (0.0, 1.0)
        }
    };
    let mut svg = String::new();
    {
        let count = panels.len().max(1);
        let root = SVGBackend::with_string(&mut svg, (760, 60 + 240 * count as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(title, e))?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(|e| failed(title, e))?;
        for (panel, area) in panels.iter().zip(root.split_evenly((count, 1)).iter()) {
            let (y_lo, y_hi) = padded_range(panel.series.iter().flat_map(|s| s.points.iter().map(|&(_, y)| y)));
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.caption, ("sans-serif", 14))
                .margin(8)
                .margin_right(24)
                .x_label_area_size(30)
                .y_label_area_size(64)
                .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
                .map_err(|e| failed(title, e))?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(&panel.y_desc)
                // Steps are whole numbers: `10`, not `10.0`.
                .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { format!("{x}") })
                .draw()
                .map_err(|e| failed(title, e))?;
            for (i, series) in panel.series.iter().enumerate() {
                let c = colour(i);
                let points: Vec<(f64, f64)> = series.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                    .map_err(|e| failed(title, e))?
                    .label(series.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
                if points.len() <= MARKERS_UP_TO {
                    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(|e| failed(title, e))?;
                }
            }
            if panel.series.len() > 1 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| failed(title, e))?;
            }
        }
        root.present().map_err(|e| failed(title, e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_pad_five_percent_and_widen_a_single_value() {
        // [0, 2]: 5 % of 2 is 0.1 each side.
        let (lo, hi) = padded_range([0.0, 1.0, 2.0, f64::NAN].into_iter());
        assert!((lo + 0.1).abs() < 1e-12 && (hi - 2.1).abs() < 1e-12, "{lo} {hi}");
        assert_eq!(padded_range([3.0].into_iter()), (2.5, 3.5));
        // 10 % of 20 is wider than the 0.5 floor.
        assert_eq!(padded_range([20.0, 20.0].into_iter()), (18.0, 22.0));
        assert_eq!(padded_range(std::iter::empty()), (-0.5, 0.5));
    }

    #[test]
    fn panels_draw_their_captions_legends_and_a_dot_per_point() {
        let s = |name: &str, ys: &[f64]| Series { name: name.into(), points: ys.iter().enumerate().map(|(i, &y)| ((i + 1) as f64, y)).collect() };
        let svg = line_panels(
            "run: reward",
            "step",
            &[
                Panel { caption: "total".into(), y_desc: "mean reward".into(), series: vec![s("total", &[0.1, 0.2, 0.4])] },
                Panel { caption: "rules".into(), y_desc: "mean score".into(), series: vec![s("chain", &[0.5, 0.6, 0.7]), s("risk", &[1.0, 0.9])] },
                Panel { caption: "nothing recorded".into(), y_desc: "x".into(), series: vec![] },
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in ["run: reward", "total", "rules", "chain", "risk", "nothing recorded", "step", "mean score"] {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "{text} missing");
        }
        // 3 + 3 + 2 points, each a dot (the legend's swatches are lines).
        assert_eq!(svg.matches("<circle").count(), 8);
        // One legend, in the panel with two series: "total" is the first panel's caption, and its
        // lone series gets no legend entry of its own.
        assert_eq!(svg.matches(">\ntotal\n</text>").count(), 1);
        assert_eq!(svg.matches(">\nchain\n</text>").count(), 1);
    }
}
