//! `wagelink report <kind>`: reads the gateway's database directly (as `wagelink audit export`
//! does), computes one report and writes it as CSV, XLSX and/or HTML into a folder.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Format, Kind, Period, Request, build, parse_district, write};
use crate::config::Config;
use crate::server;

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub report: ReportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The campaign's statistics annex for a period, by district and city-wide.
    Annex {
        #[command(flatten)]
        span: Span,
        #[command(flatten)]
        common: Common,
    },
    /// The daily overdue scan: clocks running past their due instant at the end of a day.
    Overdue {
        /// The day, YYYY-MM-DD (China time); default today.
        #[arg(long)]
        date: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The weekly dispatch summary: the flow of leads and cases in one week (Monday to Sunday).
    Dispatch {
        /// Any day of the week, YYYY-MM-DD; default today.
        #[arg(long)]
        week_of: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The monthly bulletin: flow, wages recovered, channels and collaboration in one month.
    Bulletin {
        /// The month, YYYY-MM; default this month.
        #[arg(long)]
        month: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The collaborative-handling rate (target ≥ 50%) of the leads and warnings of a period.
    Collaboration {
        #[command(flatten)]
        span: Span,
        #[command(flatten)]
        common: Common,
    },
    /// The look-back (回头看): cases that first surfaced through petitions, police incidents or
    /// public opinion rather than screening or warnings.
    Lookback {
        #[command(flatten)]
        span: Span,
        #[command(flatten)]
        common: Common,
    },
}

/// A period of whole China-time days, `[from, to)`.
#[derive(Debug, Args)]
pub struct Span {
    /// First day, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// First day NOT included, YYYY-MM-DD (a month is --from 2026-11-01 --to 2026-12-01).
    #[arg(long)]
    pub to: String,
}

/// What every report takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The gateway's configuration (its database).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Database URL (overrides the configuration's `database_url`).
    #[arg(long, env = "WAGELINK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// One district or county code only (e.g. 500112); default every district and the city.
    #[arg(long)]
    pub district: Option<String>,
    /// The folder to write into (created if missing).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Which files to write.
    #[arg(long, value_enum, default_value = "all")]
    pub format: Format,
}

fn today() -> String {
    crate::cases::china_today().to_string()
}

/// Runs `wagelink report …`: prints each file written.
pub async fn run(args: ReportArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (kind, period, common) = match args.report {
        ReportCommand::Annex { span, common } => {
            (Kind::Annex, Period::between(&span.from, &span.to)?, common)
        }
        ReportCommand::Overdue { date, common } => (
            Kind::Overdue,
            Period::day(&date.unwrap_or_else(today))?,
            common,
        ),
        ReportCommand::Dispatch { week_of, common } => (
            Kind::Dispatch,
            Period::week_of(&week_of.unwrap_or_else(today))?,
            common,
        ),
        ReportCommand::Bulletin { month, common } => (
            Kind::Bulletin,
            Period::month(&month.unwrap_or_else(|| today()[..7].to_owned()))?,
            common,
        ),
        ReportCommand::Collaboration { span, common } => (
            Kind::Collaboration,
            Period::between(&span.from, &span.to)?,
            common,
        ),
        ReportCommand::Lookback { span, common } => (
            Kind::Lookback,
            Period::between(&span.from, &span.to)?,
            common,
        ),
    };
    let district = common.district.as_deref().map(parse_district).transpose()?;
    let mut config = Config::load(&common.config)?;
    if common.database_url.is_some() {
        config.database_url = common.database_url;
    }
    let (store, _) = server::open(&config).await?;
    let request = Request {
        kind,
        period,
        district,
        as_of: crate::store::now_unix(),
    };
    let report = build(&store, &request).await?;
    store.close().await;
    let written = write(&report, &common.out, common.format)?;
    let (zh, en) = kind.title();
    println!(
        "{zh} / {en}, {} – {}: {} tables",
        report.period.from,
        report.period.last_day(),
        report.tables.len()
    );
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
