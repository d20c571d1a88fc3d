//! The shape every report takes before it is written: tables of typed cells with bilingual
//! column labels, the charts drawn from them, and notes on what each figure can and cannot
//! say. CSV, XLSX and HTML all render this one model, so a figure is computed once and reads
//! the same in every format.

use std::collections::BTreeMap;

use crate::identity::regions;

/// A column: a stable ASCII key (CSV header, chart series) and its Chinese and English labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub key: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
}

pub const fn col(key: &'static str, zh: &'static str, en: &'static str) -> Column {
    Column { key, zh, en }
}

/// One value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Int(i64),
    /// An exact decimal, `units / 10^scale`: amounts in 万元 are fen with scale 6, workers in 万人
    /// are people with scale 4, so no conversion ever rounds.
    Decimal {
        units: i64,
        scale: u32,
    },
    /// A share shown as a percentage with one decimal, rounded half up; empty when `whole` is 0.
    Percent {
        part: i64,
        whole: i64,
    },
}

impl Cell {
    /// Fen as 万元 (1 万元 = 1,000,000 fen).
    pub fn wan_yuan(fen: i64) -> Cell {
        Cell::Decimal {
            units: fen,
            scale: 6,
        }
    }

    /// People as 万人.
    pub fn wan_people(people: i64) -> Cell {
        Cell::Decimal {
            units: people,
            scale: 4,
        }
    }

    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    /// Tenths of a percent, rounded half up; None when the share is undefined.
    pub fn per_mille(part: i64, whole: i64) -> Option<i64> {
        (whole > 0).then(|| (part * 2000 + whole) / (2 * whole))
    }

    /// The value as every format writes it.
    pub fn render(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Decimal { units, scale } => decimal(*units, *scale),
            Cell::Percent { part, whole } => Cell::per_mille(*part, *whole)
                .map(|m| decimal(m, 1))
                .unwrap_or_default(),
        }
    }

    /// The value as a number (XLSX cells, chart bars); None for text and undefined shares.
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Text(_) => None,
            Cell::Int(n) => Some(*n as f64),
            // Parsing the exact decimal text gives the nearest double, which dividing does not.
            Cell::Decimal { .. } | Cell::Percent { .. } => self.render().parse().ok(),
        }
    }

    /// Decimal places the value is written with (0 for counts and text).
    pub fn decimals(&self) -> u32 {
        match self {
            Cell::Decimal { scale, .. } => *scale,
            Cell::Percent { .. } => 1,
            _ => 0,
        }
    }
}

/// `units / 10^scale` written exactly.
fn decimal(units: i64, scale: u32) -> String {
    if scale == 0 {
        return units.to_string();
    }
    let base = 10i128.pow(scale);
    let u = i128::from(units);
    let sign = if u < 0 { "-" } else { "" };
    let (whole, frac) = (u.abs() / base, u.abs() % base);
    format!("{sign}{whole}.{frac:0width$}", width = scale as usize)
}

/// A table of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// File and sheet name: `annex`, `overdue-clocks`…
    pub id: &'static str,
    pub zh: &'static str,
    pub en: &'static str,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    /// Whether the last row is the city-wide total.
    pub total: bool,
}

impl Table {
    pub fn new(id: &'static str, zh: &'static str, en: &'static str, columns: &[Column]) -> Self {
        Table {
            id,
            zh,
            en,
            columns: columns.to_vec(),
            rows: Vec::new(),
            total: false,
        }
    }

    /// The column index of `key`.
    pub fn column(&self, key: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.key == key)
    }

    /// Every row as text, for reading a table back (tests, the CLI summary).
    pub fn text_rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| r.iter().map(Cell::render).collect())
            .collect()
    }
}

/// A bar chart of one or more columns of a district table (bars stacked when several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub zh: &'static str,
    pub en: &'static str,
    pub table: &'static str,
    pub series: Vec<&'static str>,
    /// Several series: stacked in one bar (parts of a whole) rather than side by side.
    pub stacked: bool,
    /// A target line, in percent (the 50% collaborative-handling target).
    pub target_percent: Option<i64>,
}

impl Chart {
    /// Bars of `series` (column keys of `table`), side by side when several.
    pub fn bars(
        zh: &'static str,
        en: &'static str,
        table: &'static str,
        series: &[&'static str],
    ) -> Chart {
        Chart {
            zh,
            en,
            table,
            series: series.to_vec(),
            stacked: false,
            target_percent: None,
        }
    }

    /// The series stacked in one bar (parts of a whole).
    pub fn stacked(mut self) -> Chart {
        self.stacked = true;
        self
    }

    /// A target line at `percent`.
    pub fn target(mut self, percent: i64) -> Chart {
        self.target_percent = Some(percent);
        self
    }
}

/// How much of a figure the gateway's data can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Everything the figure asks for is in the gateway.
    Complete,
    /// Computed from what the gateway holds; the note says what it cannot see.
    Partial,
    /// Nothing in the gateway records it: left empty, never estimated.
    NoSource,
}

impl Coverage {
    pub fn label(self) -> (&'static str, &'static str) {
        match self {
            Coverage::Complete => ("完整", "complete"),
            Coverage::Partial => ("部分", "partial"),
            Coverage::NoSource => ("网关无数据来源", "no data source in the gateway"),
        }
    }
}

/// What a figure means and how far the data reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The column key or table id the note is about.
    pub figure: &'static str,
    pub coverage: Coverage,
    pub zh: &'static str,
    pub en: &'static str,
}

/// Per-district accumulator of a district table: added up into the city-wide row.
pub trait Tally: Default {
    fn add(&mut self, other: &Self);
    fn cells(&self) -> Vec<Cell>;
}

/// A district row made of counters, added up field by field into the city-wide row. The
/// struct's own `row()` says how they are shown; `shown as counts` writes each field, in order.
macro_rules! counters {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident),* $(,)? } shown as counts) => {
        $crate::reports::table::counters!($(#[$meta])* $vis struct $name { $($field),* });

        impl $name {
            fn row(&self) -> Vec<$crate::reports::table::Cell> {
                vec![$($crate::reports::table::Cell::Int(self.$field)),*]
            }
        }
    };
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $($field: i64,)*
        }

        impl $crate::reports::table::Tally for $name {
            fn add(&mut self, o: &Self) {
                $(self.$field += o.$field;)*
            }

            fn cells(&self) -> Vec<$crate::reports::table::Cell> {
                self.row()
            }
        }
    };
}
pub(super) use counters;

pub const DISTRICT_COLUMNS: [Column; 2] = [
    col("district_code", "区县代码", "district code"),
    col("district_name", "区县", "district"),
];

/// A table with one row per case: the case id, its district's code and name, then `columns`.
pub fn listing(
    (id, zh, en): (&'static str, &'static str, &'static str),
    columns: &[Column],
) -> Table {
    let mut table = Table::new(id, zh, en, columns);
    table.columns.splice(
        0..0,
        [col("case_id", "案件编号", "case")]
            .into_iter()
            .chain(DISTRICT_COLUMNS),
    );
    table
}

/// A listing's row for a case: its id, its district's code and name, then `cells`.
pub fn case_row(case: &super::facts::Case, cells: impl IntoIterator<Item = Cell>) -> Vec<Cell> {
    let mut row = vec![
        Cell::text(case.id()),
        Cell::text(case.district()),
        Cell::text(district_name(case.district())),
    ];
    row.extend(cells);
    row
}

/// The name of a region code, for listings.
pub fn district_name(code: &str) -> String {
    regions()
        .iter()
        .find(|r| r.code.as_str() == code)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| code.to_owned())
}

/// Code of the city-wide total row.
pub const TOTAL_CODE: &str = "total";

/// A table by district: one row per district and county in the official order, then cases
/// filed only against the city (`500000`, district unknown), then the city-wide total; with a
/// district chosen, that district's row alone. `columns` are the figures after the district's
/// code and name.
pub fn district_table<T: Tally>(
    (id, zh, en): (&'static str, &'static str, &'static str),
    columns: &[Column],
    tallies: &BTreeMap<String, T>,
    district: Option<&str>,
) -> Table {
    let mut table = Table::new(id, zh, en, columns);
    let empty = T::default();
    let mut total = T::default();
    let mut rows = Vec::new();
    let city = regions().iter().filter(|r| r.code.is_city());
    for r in regions().iter().filter(|r| !r.code.is_city()).chain(city) {
        let code = r.code.as_str();
        if district.is_some_and(|d| d != code) {
            continue;
        }
        let tally = tallies.get(code).unwrap_or(&empty);
        total.add(tally);
        let name = if r.code.is_city() {
            "市级（未分区县）city level".to_owned()
        } else {
            r.name.clone()
        };
        rows.push((code.to_owned(), name, tally.cells()));
    }
    if district.is_none() {
        rows.push((
            TOTAL_CODE.into(),
            "全市合计 city-wide".into(),
            total.cells(),
        ));
        table.total = true;
    }
    table.columns.splice(0..0, DISTRICT_COLUMNS);
    table.rows = rows
        .into_iter()
        .map(|(code, name, cells)| {
            let mut row = vec![Cell::Text(code), Cell::Text(name)];
            row.extend(cells);
            row
        })
        .collect();
    table
}

/// Tallies per district: `count` adds one case to its district's tally.
pub fn by_district<'a, T: Tally>(
    cases: &[super::facts::Case<'a>],
    mut count: impl FnMut(&mut T, &super::facts::Case<'a>),
) -> BTreeMap<String, T> {
    let mut tallies: BTreeMap<String, T> = BTreeMap::new();
    for case in cases {
        count(tallies.entry(case.district().to_owned()).or_default(), case);
    }
    tallies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_convert_exactly_and_shares_round_half_up() {
        assert_eq!(Cell::wan_yuan(36_000_000).render(), "36.000000");
        assert_eq!(Cell::wan_yuan(1).render(), "0.000001");
        assert_eq!(Cell::wan_yuan(-1_234_567).render(), "-1.234567");
        assert_eq!(Cell::wan_people(62).render(), "0.0062");
        assert_eq!(Cell::wan_people(123_456).render(), "12.3456");
        assert_eq!(Cell::Percent { part: 4, whole: 7 }.render(), "57.1");
        assert_eq!(Cell::Percent { part: 5, whole: 12 }.render(), "41.7");
        assert_eq!(Cell::Percent { part: 1, whole: 8 }.render(), "12.5");
        assert_eq!(Cell::Percent { part: 1, whole: 16 }.render(), "6.3");
        assert_eq!(Cell::Percent { part: 0, whole: 0 }.render(), "");
        assert_eq!(Cell::Percent { part: 2, whole: 2 }.render(), "100.0");
        assert_eq!(Cell::wan_yuan(52_200_000).number(), Some(52.2));
    }
}
