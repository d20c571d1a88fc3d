//! CSV: one file per table with the column keys as header (labels are in the notes file, the
//! XLSX and the HTML page), values written exactly as the other formats show them; and a notes
//! file saying, figure by figure, how far the data reaches.

use crate::reports::{Report, ReportError};

fn csv_error(e: impl std::fmt::Display) -> ReportError {
    ReportError::Write {
        path: "CSV".into(),
        why: e.to_string(),
    }
}

/// (file suffix, bytes) per table, then the notes.
pub(super) fn files(report: &Report) -> Result<Vec<(String, Vec<u8>)>, ReportError> {
    let mut out = Vec::new();
    for table in &report.tables {
        let mut w = ::csv::Writer::from_writer(Vec::new());
        w.write_record(table.columns.iter().map(|c| c.key))
            .map_err(csv_error)?;
        for row in table.text_rows() {
            w.write_record(&row).map_err(csv_error)?;
        }
        out.push((
            table.id.to_owned(),
            w.into_inner().map_err(|e| csv_error(e.error()))?,
        ));
    }
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record([
        "figure", "label_zh", "label_en", "coverage", "note_zh", "note_en",
    ])
    .map_err(csv_error)?;
    for note in &report.notes {
        let (zh, en) = label(report, note.figure);
        w.write_record([
            note.figure,
            zh,
            en,
            note.coverage.label().1,
            note.zh,
            note.en,
        ])
        .map_err(csv_error)?;
    }
    // Then every column once, as a dictionary of the keys the table files use.
    let mut seen = std::collections::BTreeSet::new();
    for c in report.tables.iter().flat_map(|t| &t.columns) {
        if seen.insert(c.key) {
            w.write_record([c.key, c.zh, c.en, "", "", ""])
                .map_err(csv_error)?;
        }
    }
    out.push((
        "notes".to_owned(),
        w.into_inner().map_err(|e| csv_error(e.error()))?,
    ));
    Ok(out)
}

/// The labels of a figure: a column's, or a table's.
pub(super) fn label(report: &Report, figure: &str) -> (&'static str, &'static str) {
    report
        .tables
        .iter()
        .find_map(|t| {
            if t.id == figure {
                Some((t.zh, t.en))
            } else {
                t.columns
                    .iter()
                    .find(|c| c.key == figure)
                    .map(|c| (c.zh, c.en))
            }
        })
        .unwrap_or(("", ""))
}
