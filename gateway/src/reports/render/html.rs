//! One self-contained HTML page: inline CSS, inline SVG charts, every table with Chinese and
//! English labels, and the notes on each figure. No script, no font, nothing fetched.

use std::fmt::Write;

use super::csv::label;
use super::svg;
use crate::reports::facts::china_time;
use crate::reports::{Cell, Report};

/// Text safe inside HTML element content and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:\"PingFang SC\",\"Microsoft YaHei\",\"Noto Sans CJK SC\",sans-serif;margin:24px;color:#222;max-width:1200px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}.en{color:#666;font-weight:normal;font-size:.85em}\
.meta{color:#444;margin:4px 0 16px}figure{margin:12px 0 20px}figcaption{font-weight:bold;margin-bottom:6px}\
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top}\
th{background:#f2f4f7;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.total td{font-weight:bold;background:#fafafa}\
.partial{color:#a15c00}.none{color:#b8433f}.complete{color:#3c7d4d}footer{margin-top:32px;color:#777;font-size:12px}\
svg text{font-size:11px;fill:#333}svg .legend{font-size:11px}svg .target{fill:#b8433f}svg .empty{fill:#999}";

pub(super) fn page(report: &Report) -> String {
    let (zh, en) = report.kind.title();
    let p = &report.period;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} {} {}</title><style>{STYLE}</style></head><body>\n",
        escape(zh),
        escape(en),
        escape(&p.label)
    );
    let _ = writeln!(
        s,
        "<header><h1>{}<br><span class=\"en\">{}</span></h1><p class=\"meta\">统计期 period: {} – {} · 截至 as of: {} · 范围 scope: {}</p></header>",
        escape(zh),
        escape(en),
        p.from,
        p.last_day(),
        china_time(report.window.end),
        escape(report.district.as_deref().unwrap_or("全市 city-wide"))
    );
    for chart in &report.charts {
        if let Some(table) = report.table(chart.table) {
            let _ = writeln!(
                s,
                "<figure><figcaption>{} <span class=\"en\">{}</span></figcaption>{}</figure>",
                escape(chart.zh),
                escape(chart.en),
                svg::chart(chart, table)
            );
        }
    }
    for table in &report.tables {
        let _ = write!(
            s,
            "<h2 id=\"{}\">{} <span class=\"en\">{}</span></h2><div class=\"scroll\"><table><thead><tr>",
            escape(table.id),
            escape(table.zh),
            escape(table.en)
        );
        for c in &table.columns {
            let _ = write!(
                s,
                "<th>{}<br><span class=\"en\">{}</span></th>",
                escape(c.zh),
                escape(c.en)
            );
        }
        s.push_str("</tr></thead><tbody>");
        if table.rows.is_empty() {
            let _ = write!(
                s,
                "<tr><td colspan=\"{}\">无 none</td></tr>",
                table.columns.len()
            );
        }
        let last = table.rows.len().saturating_sub(1);
        for (r, row) in table.rows.iter().enumerate() {
            s.push_str(if table.total && r == last {
                "<tr class=\"total\">"
            } else {
                "<tr>"
            });
            for cell in row {
                let class = if matches!(cell, Cell::Text(_)) {
                    ""
                } else {
                    " class=\"num\""
                };
                let _ = write!(s, "<td{class}>{}</td>", escape(&cell.render()));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table></div>\n");
    }
    s.push_str(
        "<h2 id=\"notes\">口径与数据来源 <span class=\"en\">How each figure is computed, and what the gateway's data cannot say</span></h2>\
         <div class=\"scroll\"><table><thead><tr><th>指标<br><span class=\"en\">figure</span></th>\
         <th>数据覆盖<br><span class=\"en\">coverage</span></th><th>说明</th><th>note</th></tr></thead><tbody>",
    );
    for note in &report.notes {
        let (lzh, len) = label(report, note.figure);
        let (czh, cen) = note.coverage.label();
        let class = match note.coverage {
            crate::reports::Coverage::Complete => "complete",
            crate::reports::Coverage::Partial => "partial",
            crate::reports::Coverage::NoSource => "none",
        };
        let _ = write!(
            s,
            "<tr><td>{}<br><span class=\"en\">{}</span></td><td class=\"{class}\">{} {}</td><td>{}</td><td>{}</td></tr>",
            escape(lzh),
            escape(len),
            escape(czh),
            escape(cen),
            escape(note.zh),
            escape(note.en)
        );
    }
    s.push_str("</tbody></table></div>\n");
    let _ = write!(
        s,
        "<footer>wagelink {} · 由网关保存的案件视图生成，不含反映人身份证号、电话或银行卡号 · generated from the cases the gateway stores, without any reporter's ID number, phone or bank card</footer>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    s
}
