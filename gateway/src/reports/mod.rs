//! Reports from the data the gateway holds (DESIGN §12): the campaign's statistics annex, the
//! daily overdue scan, the weekly dispatch summary, the monthly bulletin, the
//! collaborative-handling rate (协同处置率) and the look-back (回头看), by district and
//! city-wide, written as CSV, XLSX and one self-contained HTML page.
//!
//! What it guarantees:
//! - every figure is computed from the stored case views (the lead without the reporter's
//!   personal data, the signed step history, the clocks) and the partner registry, never from
//!   payloads, so no worker's ID number, phone or bank card can reach a report;
//! - each figure is defined once ([`facts`] for what is read off a case, one module per report
//!   for what is counted) and documented in `README.md` beside this file, with what the
//!   gateway's data cannot say stated in the report itself ([`Note`]) instead of estimated;
//! - a report over a period still running is cut at the moment it is taken ([`Request::as_of`]),
//!   so the same request over the same data gives the same figures.

mod annex;
mod bulletin;
pub mod cli;
mod collaboration;
mod dispatch;
mod facts;
mod lookback;
mod overdue;
mod period;
mod render;
mod table;

use std::collections::BTreeSet;

use thiserror::Error;
use wagelink_proto::v1 as pb;

pub use facts::{Kinds, Window};
pub use period::Period;
pub use render::{Format, sheet_names, write};
pub use table::{Cell, Chart, Column, Coverage, Note, TOTAL_CODE, Table};

use crate::identity::{RegionCode, regions};
use crate::store::{Store, StoreError};

/// A report failure, with what to do about it.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{0}")]
    BadPeriod(String),
    #[error(
        "--district {0:?} is not a Chongqing district or county code (see regions-chongqing.csv)"
    )]
    BadDistrict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {why}")]
    Write { path: String, why: String },
}

/// The reports there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Annex,
    Overdue,
    Dispatch,
    Bulletin,
    Collaboration,
    Lookback,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Annex => "annex",
            Kind::Overdue => "overdue",
            Kind::Dispatch => "dispatch",
            Kind::Bulletin => "bulletin",
            Kind::Collaboration => "collaboration",
            Kind::Lookback => "lookback",
        }
    }

    pub fn title(self) -> (&'static str, &'static str) {
        match self {
            Kind::Annex => (
                "欠薪治理“百日攻坚战”暨根治欠薪冬季专项行动情况统计",
                "Campaign statistics annex",
            ),
            Kind::Overdue => ("每日超期扫描", "Daily overdue scan"),
            Kind::Dispatch => ("每周调度情况", "Weekly dispatch summary"),
            Kind::Bulletin => ("月度通报", "Monthly bulletin"),
            Kind::Collaboration => (
                "线索、预警信息多跨协同处置率",
                "Collaborative-handling rate of leads and warnings",
            ),
            Kind::Lookback => ("欠薪隐患排查“回头看”", "Look-back on risk screening"),
        }
    }
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    pub period: Period,
    /// One district or county only (no city-wide row then).
    pub district: Option<RegionCode>,
    /// The moment the report is taken (Unix seconds): steps accepted after it are not counted,
    /// and "at the end of the period" means at this moment when the period has not ended.
    pub as_of: i64,
}

impl Request {
    /// `[period start, min(period end, as_of + 1))`; empty for a period not begun yet.
    pub fn window(&self) -> Window {
        let start = self.period.start();
        Window {
            start,
            end: self
                .period
                .end()
                .min(self.as_of.saturating_add(1))
                .max(start),
        }
    }

    fn district(&self) -> Option<&str> {
        self.district.as_ref().map(RegionCode::as_str)
    }
}

/// Parses `--district`: a district or county code (not the whole city).
pub fn parse_district(code: &str) -> Result<RegionCode, ReportError> {
    code.parse::<RegionCode>()
        .ok()
        .filter(|r| !r.is_city())
        .ok_or_else(|| ReportError::BadDistrict(code.to_owned()))
}

/// What reports read: the cases that may matter for the window and the partners' kinds.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Cases opened before the window's end that were touched in it or are not closed, in
    /// Chongqing (cases relayed to another province's gateway are not the city's).
    pub cases: Vec<pb::CaseView>,
    /// For the look-back: earlier cases about the same projects or employers as the cases that
    /// surfaced through petitions, police incidents or public opinion.
    pub earlier: Vec<pb::CaseView>,
    pub kinds: Kinds,
}

impl Dataset {
    pub async fn load(store: &Store, req: &Request) -> Result<Dataset, ReportError> {
        let w = req.window();
        let known: BTreeSet<&str> = regions().iter().map(|r| r.code.as_str()).collect();
        let mut cases = store.report_cases(w.start, w.end, req.district()).await?;
        cases.retain(|v| known.contains(v.region_code.as_str()));
        let kinds = store
            .partners()
            .await?
            .into_iter()
            .map(|p| (p.id.as_str().to_owned(), p.kind))
            .collect();
        let earlier = if req.kind == Kind::Lookback {
            let (codes, keys) = lookback::earlier_keys(&cases, w);
            store.cases_about(&codes, &keys, w.end).await?
        } else {
            Vec::new()
        };
        Ok(Dataset {
            cases,
            earlier,
            kinds,
        })
    }
}

/// A computed report, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: Kind,
    pub period: Period,
    pub district: Option<String>,
    pub window: Window,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
    pub notes: Vec<Note>,
}

impl Report {
    pub fn table(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.id == id)
    }

    /// The stem of the files written: `annex_2026-11-01_2026-12-01`, `bulletin_2026-11_500112`.
    pub fn file_stem(&self) -> String {
        let mut stem = format!("{}_{}", self.kind.name(), self.period.label);
        if let Some(d) = &self.district {
            stem.push('_');
            stem.push_str(d);
        }
        stem
    }
}

/// The parts each report module returns.
struct Parts {
    tables: Vec<Table>,
    charts: Vec<Chart>,
    notes: Vec<Note>,
}

/// Computes a report from loaded data (pure: no I/O).
pub fn compute(req: &Request, data: &Dataset) -> Report {
    let w = req.window();
    let d = req.district();
    let mut cases: Vec<facts::Case> = data
        .cases
        .iter()
        .map(facts::Case::new)
        .filter(|c| d.is_none_or(|d| c.district() == d))
        .collect();
    // Listings follow the order the cases were opened in, whatever order they were loaded in.
    cases.sort_by_key(|c| c.opening_order());
    let parts = match req.kind {
        Kind::Annex => annex::report(&cases, &data.kinds, w, d),
        Kind::Overdue => overdue::report(&cases, w, d),
        Kind::Dispatch => dispatch::report(&cases, w, d),
        Kind::Bulletin => bulletin::report(&cases, &data.kinds, w, d),
        Kind::Collaboration => collaboration::report(&cases, &data.kinds, w, d),
        Kind::Lookback => {
            let earlier: Vec<facts::Case> = data.earlier.iter().map(facts::Case::new).collect();
            lookback::report(&cases, &earlier, w, d)
        }
    };
    Report {
        kind: req.kind,
        period: req.period.clone(),
        district: d.map(str::to_owned),
        window: w,
        tables: parts.tables,
        charts: parts.charts,
        notes: parts.notes,
    }
}

/// Loads what the request needs and computes the report.
pub async fn build(store: &Store, req: &Request) -> Result<Report, ReportError> {
    let data = Dataset::load(store, req).await?;
    Ok(compute(req, &data))
}
