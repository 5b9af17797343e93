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

/// Draws `results` (one per subject) as horizontal bars of `key`; subjects without a value are
/// listed with their status instead of a bar.
pub fn bars(path: &Path, title: &str, axis: &str, key: &str, results: &[&JobResult]) -> Result<(), String> {
    let rows: Vec<(String, Option<f64>, Family)> = results
        .iter()
        .map(|r| {
            let value = r.metric(key);
            let label = match value {
                Some(_) => r.subject.clone(),
                None => format!("{} ({})", r.subject, r.status.label()),
            };
            (label, value, r.family)
        })
        .collect();
    let max = rows.iter().filter_map(|r| r.1).fold(0.0f64, f64::max).max(1e-9) * 1.15;
    let height = 120 + 26 * rows.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let n = rows.len() as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(250)
        .build_cartesian_2d(0.0..max, (0u32..n).into_segmented())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(axis)
        .y_labels(rows.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => rows.get(*i as usize).map(|r| r.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, (_, value, family))| {
            let value = (*value)?;
            let i = i as u32;
            let mut bar = Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (value, SegmentValue::Exact(i + 1))],
                colour(*family).filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            Some(bar)
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, (_, value, _))| {
            let value = (*value)?;
            Some(Text::new(
                format_value(value),
                (value, SegmentValue::CenterOf(i as u32)),
                ("sans-serif", 12),
            ))
        }))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
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
