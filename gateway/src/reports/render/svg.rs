//! Horizontal bar charts drawn as inline SVG: one bar group per district with a value, series
//! side by side or stacked, the value written at the end of each bar, an optional target line.

use std::fmt::Write;

use super::html::escape;
use crate::reports::{Cell, Chart, Table};

const PALETTE: [&str; 6] = [
    "#2f6db5", "#e07b39", "#3c9d5d", "#b8433f", "#7b5ea7", "#8c8c8c",
];
const WIDTH: f64 = 760.0;
const LABEL: f64 = 190.0;
const PLOT: f64 = 470.0;
const BAR: f64 = 14.0;

/// One district's values for the chart's series.
struct Bars {
    label: String,
    values: Vec<f64>,
}

fn bars(chart: &Chart, table: &Table) -> (Vec<Bars>, Vec<usize>) {
    let series: Vec<usize> = chart
        .series
        .iter()
        .filter_map(|k| table.column(k))
        .collect();
    let label = table.column("district_name").unwrap_or(0);
    let body = if table.total {
        &table.rows[..table.rows.len().saturating_sub(1)]
    } else {
        &table.rows[..]
    };
    let bars = body
        .iter()
        .map(|row| {
            let cells: Vec<Option<&Cell>> = series.iter().map(|i| row.get(*i)).collect();
            // A district is drawn when it has something to show: a non-zero value, or a share
            // that is defined (a 0% rate over cases is a finding; no cases is not).
            let shown = cells.iter().flatten().any(|c| match c {
                Cell::Percent { whole, .. } => *whole > 0,
                c => c.number().is_some_and(|v| v != 0.0),
            });
            let bars = Bars {
                label: row.get(label).map(|c| c.render()).unwrap_or_default(),
                values: cells
                    .iter()
                    .map(|c| c.and_then(Cell::number).unwrap_or(0.0))
                    .collect(),
            };
            (shown, bars)
        })
        .filter(|(shown, _)| *shown)
        .map(|(_, b)| b)
        .collect();
    (bars, series)
}

fn shown(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The chart as an `<svg>` element; districts whose values are all zero are left out.
pub(super) fn chart(chart: &Chart, table: &Table) -> String {
    let (bars, series) = bars(chart, table);
    let per_group = if chart.stacked || series.len() <= 1 {
        BAR
    } else {
        BAR * series.len() as f64
    };
    let row_h = per_group + 8.0;
    let legend_h = if series.len() > 1 {
        16.0 * series.len() as f64 + 6.0
    } else {
        0.0
    };
    let top = 8.0 + legend_h;
    let height = top + row_h * bars.len().max(1) as f64 + 24.0;
    let totals = bars.iter().map(|b| {
        if chart.stacked {
            b.values.iter().sum::<f64>()
        } else {
            b.values.iter().copied().fold(0.0, f64::max)
        }
    });
    let target = chart.target_percent.map(|t| t as f64);
    let max = totals
        .chain(target)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let x = |v: f64| LABEL + PLOT * v / max;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="{}">"#,
        escape(&format!("{} {}", chart.zh, chart.en))
    );
    if series.len() > 1 {
        for (i, col) in series.iter().enumerate() {
            let c = &table.columns[*col];
            let y = 6.0 + 16.0 * i as f64;
            let _ = write!(
                s,
                r#"<rect x="{LABEL}" y="{y}" width="10" height="10" fill="{}"/><text x="{}" y="{}" class="legend">{} {}</text>"#,
                PALETTE[i % PALETTE.len()],
                LABEL + 14.0,
                y + 9.0,
                escape(c.zh),
                escape(c.en)
            );
        }
    }
    if bars.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{LABEL}" y="{}" class="empty">无数据 no data</text>"#,
            top + 14.0
        );
    }
    for (n, b) in bars.iter().enumerate() {
        let y0 = top + row_h * n as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" class="label">{}</text>"#,
            LABEL - 6.0,
            y0 + per_group / 2.0 + 4.0,
            escape(&b.label)
        );
        let mut acc = 0.0;
        for (i, v) in b.values.iter().enumerate() {
            let (from, y) = if chart.stacked {
                (acc, y0)
            } else {
                (
                    0.0,
                    y0 + BAR * i as f64 * f64::from(u8::from(series.len() > 1)),
                )
            };
            let w = x(from + v) - x(from);
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{y:.1}" width="{w:.1}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
                x(from),
                BAR - 2.0,
                PALETTE[i % PALETTE.len()],
                escape(&b.label),
                shown(*v)
            );
            // Zeros are written only when they are the bar (a single series): a 0% rate.
            if !chart.stacked && (*v != 0.0 || series.len() == 1) {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" class="value">{}</text>"#,
                    x(*v) + 4.0,
                    y + BAR - 4.0,
                    shown(*v)
                );
            }
            acc += v;
        }
        if chart.stacked {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="value">{}</text>"#,
                x(acc) + 4.0,
                y0 + BAR - 4.0,
                shown(acc)
            );
        }
    }
    let axis_y = top + row_h * bars.len().max(1) as f64;
    let _ = write!(
        s,
        r##"<line x1="{LABEL}" y1="{top}" x2="{LABEL}" y2="{axis_y}" stroke="#555"/><line x1="{LABEL}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#555"/><text x="{LABEL}" y="{}" class="tick">0</text><text x="{}" y="{}" text-anchor="end" class="tick">{}</text>"##,
        LABEL + PLOT,
        axis_y + 14.0,
        LABEL + PLOT,
        axis_y + 14.0,
        shown(max)
    );
    if let Some(t) = target {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{axis_y}" stroke="#b8433f" stroke-dasharray="4 3"/><text x="{0:.1}" y="{1}" text-anchor="middle" class="target">目标 target {2}%</text>"##,
            x(t),
            axis_y + 14.0,
            shown(t)
        );
    }
    s.push_str("</svg>");
    s
}
