//! One SVG bar chart per workload: subjects side by side, coloured by family.

use std::path::Path;

use plotters::prelude::*;

use crate::runner::JobResult;
use crate::subjects::Family;

fn colour(family: Family) -> RGBColor {
    match family {
        Family::Kheap => RGBColor(31, 119, 180),
        Family::Peer => RGBColor(255, 127, 14),
        Family::Reference => RGBColor(160, 160, 160),
    }
}

type Row = (String, Option<f64>, Family);

/// Draws `results` (one per subject) as horizontal bars of `key`; subjects without a value are
/// listed with their status instead of a bar. Values spread over more than two orders of
/// magnitude are drawn on a logarithmic axis.
pub fn bars(path: &Path, title: &str, axis: &str, key: &str, results: &[&JobResult]) -> Result<(), String> {
    let rows: Vec<Row> = results
        .iter()
        .map(|r| {
            let value = r.metric(key).filter(|v| *v > 0.0);
            let label = match value {
                Some(_) => r.subject.clone(),
                None => format!("{} ({})", r.subject, r.status.label()),
            };
            (label, value, r.family)
        })
        .collect();
    let max = rows.iter().filter_map(|r| r.1).fold(0.0f64, f64::max).max(1e-9);
    let min = rows.iter().filter_map(|r| r.1).fold(f64::INFINITY, f64::min).min(max);
    let height = 120 + 26 * rows.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    if max / min > 100.0 {
        let low = min / 2.0;
        draw(&root, title, &format!("{axis}, log scale"), &rows, (low..max * 3.0).log_scale(), low)
    } else {
        draw(&root, title, axis, &rows, 0.0..max * 1.15, 0.0)
    }?;
    root.present().map_err(|e| e.to_string())
}

fn draw<X>(
    root: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    axis: &str,
    rows: &[Row],
    x: X,
    start: f64,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let n = rows.len() as u32;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(250)
        .build_cartesian_2d(x, (0u32..n).into_segmented())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .x_labels(8)
        .x_label_formatter(&|v| format_value(*v))
        .x_desc(axis)
        .y_labels(rows.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < n => {
                rows.get((n - 1 - *i) as usize).map(|r| r.0.clone()).unwrap_or_default()
            }
            _ => String::new(),
        })
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, (_, value, family))| {
            let value = (*value)?;
            let i = n - 1 - i as u32;
            let mut bar = Rectangle::new(
                [(start, SegmentValue::Exact(i)), (value, SegmentValue::Exact(i + 1))],
                colour(*family).filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            Some(bar)
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, (_, value, _))| {
            let value = (*value)?;
            let at = SegmentValue::CenterOf(n - 1 - i as u32);
            Some(Text::new(format!(" {}", format_value(value)), (value, at), ("sans-serif", 12)))
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{value:.3e}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}
