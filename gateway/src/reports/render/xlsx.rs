//! XLSX (rust_xlsxwriter): one sheet per table — Chinese labels, then English labels, then the
//! rows, numbers as numbers with as many decimals as the exact value has, the city-wide row in
//! bold — and a `notes` sheet with the period and what each figure can and cannot say.

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::csv::label;
use crate::reports::facts::china_time;
use crate::reports::{Cell, Report};

/// The sheet names a report's workbook holds, in order.
pub fn sheet_names(report: &Report) -> Vec<&'static str> {
    report
        .tables
        .iter()
        .map(|t| t.id)
        .chain(["notes"])
        .collect()
}

fn number_format(decimals: u32) -> Format {
    let format = if decimals == 0 {
        "0".to_owned()
    } else {
        format!("0.{}", "0".repeat(decimals as usize))
    };
    Format::new().set_num_format(format)
}

fn write_cell(
    sheet: &mut Worksheet,
    row: u32,
    col: u16,
    cell: &Cell,
    bold: bool,
) -> Result<(), XlsxError> {
    let mut format = number_format(cell.decimals());
    if bold {
        format = format.set_bold();
    }
    match cell.number() {
        Some(n) => sheet.write_number_with_format(row, col, n, &format)?,
        None => sheet.write_string_with_format(row, col, cell.render(), &format)?,
    };
    Ok(())
}

pub(super) fn workbook(report: &Report) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let head = Format::new().set_bold().set_text_wrap();
    for table in &report.tables {
        let sheet = book.add_worksheet();
        sheet.set_name(table.id)?;
        for (c, column) in table.columns.iter().enumerate() {
            let c = c as u16;
            sheet.write_string_with_format(0, c, column.zh, &head)?;
            sheet.write_string_with_format(1, c, column.en, &head)?;
            sheet.set_column_width(c, 16)?;
        }
        sheet.set_freeze_panes(2, 0)?;
        let last = table.rows.len().saturating_sub(1);
        for (r, row) in table.rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                write_cell(
                    sheet,
                    r as u32 + 2,
                    c as u16,
                    cell,
                    table.total && r == last,
                )?;
            }
        }
    }
    let sheet = book.add_worksheet();
    sheet.set_name("notes")?;
    let (zh, en) = report.kind.title();
    let p = &report.period;
    let lines = [
        format!("{zh} {en}"),
        format!("统计期 period: {} – {}", p.from, p.last_day()),
        format!("截至 as of: {}", china_time(report.window.end)),
        format!(
            "区县 district: {}",
            report.district.as_deref().unwrap_or("全市 city-wide")
        ),
    ];
    for (r, line) in lines.iter().enumerate() {
        sheet.write_string(r as u32, 0, line)?;
    }
    let start = lines.len() as u32 + 1;
    for (c, h) in [
        "figure", "label_zh", "label_en", "coverage", "note_zh", "note_en",
    ]
    .iter()
    .enumerate()
    {
        sheet.write_string_with_format(start, c as u16, *h, &head)?;
    }
    for (i, note) in report.notes.iter().enumerate() {
        let r = start + 1 + i as u32;
        let (lzh, len) = label(report, note.figure);
        let (czh, cen) = note.coverage.label();
        for (c, text) in [
            note.figure.to_owned(),
            lzh.to_owned(),
            len.to_owned(),
            format!("{czh} {cen}"),
            note.zh.to_owned(),
            note.en.to_owned(),
        ]
        .iter()
        .enumerate()
        {
            sheet.write_string(r, c as u16, text)?;
        }
    }
    sheet.set_column_width(0, 40)?;
    sheet.set_column_width(4, 60)?;
    sheet.set_column_width(5, 60)?;
    book.save_to_buffer()
}
