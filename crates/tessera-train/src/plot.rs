//! Line plots of training curves as SVG, drawn with `plotters`: axis ticks, axis labels and a
//! legend. SVG needs no font files (the browser lays out the text), and the study report and a
//! run's `plots/` folder show them as they are.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, TrainError};

/// One curve: its legend label and `(x, y)` points.
pub type Series = (String, Vec<(f64, f64)>);

/// What to draw around the curves.
pub struct PlotSpec<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Plot `log10(y)` (non-positive values are dropped); the y label says so.
    pub log_y: bool,
}

/// The points to draw (`log10` of y with `log_y`) and their bounds, padded so that a flat or
/// single-point curve still has an extent.
fn prepared(series: &[Series], log_y: bool) -> (Vec<Series>, (f64, f64), (f64, f64)) {
    let out: Vec<Series> = series
        .iter()
        .map(|(label, pts)| {
            let pts = pts
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
                .map(|&(x, y)| (x, if log_y { y.log10() } else { y }))
                .collect();
            (label.clone(), pts)
        })
        .collect();
    let all = || out.iter().flat_map(|(_, p)| p.iter());
    let span = |lo: f64, hi: f64| {
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi - lo < 1e-12 {
            (lo - 0.5, hi + 0.5)
        } else {
            let pad = (hi - lo) * 0.05;
            (lo - pad, hi + pad)
        }
    };
    let x = span(
        all().map(|p| p.0).fold(f64::INFINITY, f64::min),
        all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max),
    );
    let y = span(
        all().map(|p| p.1).fold(f64::INFINITY, f64::min),
        all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
    );
    (out, x, y)
}

/// The SVG text of a line plot of `series`, `width × height` pixels.
pub fn line_plot_svg(spec: &PlotSpec, series: &[Series], width: u32, height: u32) -> Result<String> {
    let (series, (x0, x1), (y0, y1)) = prepared(series, spec.log_y);
    let y_label = if spec.log_y { format!("log10 {}", spec.y_label) } else { spec.y_label.to_string() };
    let mut svg = String::new();
    let fail = |e: String| TrainError::Invalid(format!("plot `{}`: {e}", spec.title));
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(spec.title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| fail(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(spec.x_label)
            .y_desc(&y_label)
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        for (i, (label, pts)) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
                .map_err(|e| fail(e.to_string()))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(svg)
}

/// Write a line plot to `file` (SVG), creating its folder.
pub fn save_line_plot(file: &Path, spec: &PlotSpec, series: &[Series]) -> Result<()> {
    let svg = line_plot_svg(spec, series, 720, 360)?;
    if let Some(d) = file.parent() {
        std::fs::create_dir_all(d).map_err(|e| TrainError::io(d, e))?;
    }
    tessera_core::fsutil::write_atomic(file, svg.as_bytes()).map_err(|e| TrainError::io(file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_ticks_labels_and_a_legend_entry_per_series() {
        let s = vec![
            ("vqgan".to_string(), vec![(0.0, 1.0), (100.0, 0.5), (200.0, 0.25)]),
            ("te-vqgan".to_string(), vec![(0.0, 1.2), (200.0, 0.3)]),
        ];
        let spec = PlotSpec { title: "loss", x_label: "step", y_label: "loss", log_y: false };
        let svg = line_plot_svg(&spec, &s, 720, 360).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        // Each label is a <text> element whose content sits on its own line.
        for text in ["vqgan", "te-vqgan", "step", "loss", "100.0", "0.5"] {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "missing the text {text}");
        }
    }

    #[test]
    fn log_axis_drops_non_positive_values_and_says_log10() {
        let s = vec![("a".to_string(), vec![(0.0, 0.0), (1.0, 10.0), (2.0, 100.0)])];
        let (pts, _, (y0, y1)) = prepared(&s, true);
        assert_eq!(pts[0].1, vec![(1.0, 1.0), (2.0, 2.0)]);
        assert!(y0 < 1.0 && y1 > 2.0);
        let spec = PlotSpec { title: "t", x_label: "step", y_label: "loss", log_y: true };
        assert!(line_plot_svg(&spec, &s, 300, 200).unwrap().contains("log10 loss"));
    }

    #[test]
    fn empty_and_flat_series_still_draw() {
        let spec = PlotSpec { title: "t", x_label: "step", y_label: "v", log_y: false };
        assert!(line_plot_svg(&spec, &[], 300, 200).is_ok());
        let flat = vec![("a".to_string(), vec![(5.0, 0.7)])];
        let (_, (x0, x1), (y0, y1)) = prepared(&flat, false);
        assert!(x0 < 5.0 && x1 > 5.0 && y0 < 0.7 && y1 > 0.7);
    }
}
