//! Writing a report: CSV (one file per table, and one for the notes), XLSX (one sheet per
//! table, and the notes) and one self-contained HTML page with inline CSS and SVG charts.
//! Every file is written under a temporary name in the target folder and renamed when
//! complete, so a failed run never leaves a partial file under a report's name.

mod csv;
mod html;
mod svg;
mod xlsx;

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Report, ReportError};

pub use xlsx::sheet_names;

/// Which files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Xlsx,
    Html,
    All,
}

impl Format {
    fn wants(self, f: Format) -> bool {
        self == Format::All || self == f
    }
}

/// Writes the report into `dir` (created if needed); returns the files written.
pub fn write(report: &Report, dir: &Path, format: Format) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let stem = report.file_stem();
    let mut written = Vec::new();
    if format.wants(Format::Csv) {
        for (suffix, bytes) in csv::files(report)? {
            written.push(put(dir, &format!("{stem}_{suffix}.csv"), &bytes)?);
        }
    }
    if format.wants(Format::Xlsx) {
        let bytes = xlsx::workbook(report).map_err(|e| ReportError::Write {
            path: dir.join(format!("{stem}.xlsx")).display().to_string(),
            why: e.to_string(),
        })?;
        written.push(put(dir, &format!("{stem}.xlsx"), &bytes)?);
    }
    if format.wants(Format::Html) {
        written.push(put(
            dir,
            &format!("{stem}.html"),
            html::page(report).as_bytes(),
        )?);
    }
    Ok(written)
}

fn failed(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Write {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

/// Writes `bytes` to `dir/name` through a temporary file renamed into place.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, ReportError> {
    let path = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| failed(&path, e))?;
    tmp.write_all(bytes).map_err(|e| failed(&path, e))?;
    tmp.as_file().sync_all().map_err(|e| failed(&path, e))?;
    tmp.persist(&path).map_err(|e| failed(&path, e.error))?;
    Ok(path)
}
