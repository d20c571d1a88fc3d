//! ISO 20022 bank-to-customer cash management: camt.052 (account report), camt.053 (statement)
//! and camt.054 (debit/credit notification), any version (.001.02 to .001.08 and later).
//!
//! Parsed by the standard's element names, whatever the namespace version: the document's
//! message element (`BkToCstmrAcctRpt`, `BkToCstmrStmt`, `BkToCstmrDbtCdtNtfctn`) holds reports
//! (`Rpt`, `Stmt`, `Ntfctn`), each with an account (`Acct/Id/IBAN` or `Acct/Id/Othr/Id`),
//! balances (`Bal`, not in camt.054) and entries (`Ntry`). Every error names the element path,
//! e.g. `Document/BkToCstmrStmt/Stmt[1]/Ntry[2]/Amt: "12,50" is not an amount`.

use roxmltree::{Document, Node};
use thiserror::Error;

/// Why a file was refused. Nothing of a refused file is used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CamtError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("{path}: {why}")]
    Element { path: String, why: String },
}

/// Which message the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// camt.052, intraday account report.
    Report,
    /// camt.053, statement.
    Statement,
    /// camt.054, debit/credit notification.
    Notification,
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CamtFile {
    pub kind: MessageKind,
    /// E.g. `camt.054.001.08` (from the namespace), empty when the document has none.
    pub version: String,
    /// `GrpHdr/MsgId`.
    pub message_id: String,
    pub reports: Vec<AccountReport>,
}

/// One `Rpt` / `Stmt` / `Ntfctn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountReport {
    /// IBAN, or the other (domestic) account number, as given.
    pub account: String,
    pub balances: Vec<Balance>,
    pub entries: Vec<Entry>,
}

/// One `Bal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// `Tp/CdOrPrtry/Cd` (OPBD, CLBD, CLAV, ITBD…) or the proprietary code.
    pub code: String,
    /// Signed: negative for a debit balance.
    pub amount_fen: i64,
    /// `Dt/Dt` (or the date of `Dt/DtTm`).
    pub date: String,
}

/// One booked `Ntry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Amount booked on the account, in fen (always positive; see `credit`).
    pub amount_fen: i64,
    pub credit: bool,
    /// `Sts` (`Sts/Cd` from version 8): BOOK, PDNG, INFO.
    pub status: String,
    pub booking_date: String,
    pub value_date: String,
    /// `AcctSvcrRef`, the bank's reference of the entry.
    pub reference: String,
    /// `BkTxCd/Domn` as `PMNT/ICDT/SALA`, when given.
    pub bank_code: String,
    /// `NtryDtls/Btch` number of transactions and total, when the entry is a batch.
    pub batch: Option<(u32, i64)>,
    /// Unstructured remittance information of its transactions, joined.
    pub remittance: String,
    /// The other party's name: the debtor of a credit, the creditor of a debit.
    pub counterparty: String,
}

fn path_of(node: Node) -> String {
    let mut parts = Vec::new();
    let mut n = Some(node);
    while let Some(x) = n {
        if x.is_element() {
            let name = x.tag_name().name();
            let same: Vec<Node> = x
                .parent()
                .map(|p| {
                    p.children()
                        .filter(|c| c.is_element() && c.tag_name().name() == name)
                        .collect()
                })
                .unwrap_or_default();
            if same.len() > 1 {
                let at = same.iter().position(|c| *c == x).unwrap_or(0) + 1;
                parts.push(format!("{name}[{at}]"));
            } else {
                parts.push(name.to_owned());
            }
        }
        n = x.parent();
    }
    parts.reverse();
    parts.join("/")
}

fn bad(node: Node, why: impl Into<String>) -> CamtError {
    CamtError::Element {
        path: path_of(node),
        why: why.into(),
    }
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// The element at a path of child names below `node`.
fn at<'a, 'i>(node: Node<'a, 'i>, path: &[&str]) -> Option<Node<'a, 'i>> {
    path.iter().try_fold(node, |n, name| child(n, name))
}

fn text(node: Node) -> String {
    node.text().unwrap_or_default().trim().to_owned()
}

fn required<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Result<Node<'a, 'i>, CamtError> {
    child(node, name).ok_or_else(|| bad(node, format!("{name} is missing")))
}

/// `123`, `123.4`, `123.45` → fen. More than two decimals (other than zeros), signs, exponents
/// and separators are refused.
pub fn amount_fen(node: Node) -> Result<i64, CamtError> {
    let t = text(node);
    let refuse = || {
        bad(
            node,
            format!(
                "{:?} is not an amount in yuan with at most 2 decimals",
                t.chars().take(40).collect::<String>()
            ),
        )
    };
    let (int, frac) = t.split_once('.').unwrap_or((&t, ""));
    let frac = frac.trim_end_matches('0');
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 2
        || int.len() > 15
    {
        return Err(refuse());
    }
    let yuan: i64 = int.parse().map_err(|_| refuse())?;
    let fen: i64 = format!("{frac:0<2}").parse().map_err(|_| refuse())?;
    yuan.checked_mul(100)
        .and_then(|v| v.checked_add(fen))
        .ok_or_else(refuse)
}

fn credit_debit(node: Node) -> Result<bool, CamtError> {
    let ind = required(node, "CdtDbtInd")?;
    match text(ind).as_str() {
        "CRDT" => Ok(true),
        "DBIT" => Ok(false),
        other => Err(bad(
            ind,
            format!(
                "{:?} is neither CRDT nor DBIT",
                other.chars().take(20).collect::<String>()
            ),
        )),
    }
}

/// `Dt` or `DtTm` inside a date choice element, as YYYY-MM-DD.
fn date_choice(node: Node) -> Result<String, CamtError> {
    if let Some(d) = child(node, "Dt") {
        let t = text(d);
        return t
            .parse::<jiff::civil::Date>()
            .map(|d| d.to_string())
            .map_err(|_| {
                bad(
                    d,
                    format!(
                        "{:?} is not a date (YYYY-MM-DD)",
                        t.chars().take(40).collect::<String>()
                    ),
                )
            });
    }
    if let Some(d) = child(node, "DtTm") {
        let t = text(d);
        return t
            .get(..10)
            .and_then(|s| s.parse::<jiff::civil::Date>().ok())
            .map(|d| d.to_string())
            .ok_or_else(|| {
                bad(
                    d,
                    format!(
                        "{:?} is not a date-time",
                        t.chars().take(40).collect::<String>()
                    ),
                )
            });
    }
    Err(bad(node, "neither Dt nor DtTm is given"))
}

fn account(report: Node) -> Result<String, CamtError> {
    let acct = required(report, "Acct")?;
    let id = required(acct, "Id")?;
    if let Some(iban) = child(id, "IBAN") {
        return Ok(text(iban));
    }
    if let Some(other) = at(id, &["Othr", "Id"]) {
        return Ok(text(other));
    }
    Err(bad(id, "neither IBAN nor Othr/Id is given"))
}

fn balance(b: Node) -> Result<Balance, CamtError> {
    let tp = required(b, "Tp")?;
    let code = at(tp, &["CdOrPrtry", "Cd"])
        .or_else(|| at(tp, &["CdOrPrtry", "Prtry"]))
        .map(text)
        .ok_or_else(|| bad(tp, "CdOrPrtry/Cd is missing"))?;
    let amount = amount_fen(required(b, "Amt")?)?;
    let credit = credit_debit(b)?;
    let date = date_choice(required(b, "Dt")?)?;
    Ok(Balance {
        code,
        amount_fen: if credit { amount } else { -amount },
        date,
    })
}

fn entry(n: Node) -> Result<Entry, CamtError> {
    let amount = amount_fen(required(n, "Amt")?)?;
    let credit = credit_debit(n)?;
    let sts = required(n, "Sts")?;
    // Up to version 7 `Sts` holds the code; from version 8 it is `Sts/Cd` (or `Sts/Prtry`).
    let status = child(sts, "Cd")
        .or_else(|| child(sts, "Prtry"))
        .map(text)
        .unwrap_or_else(|| text(sts));
    let booking_date = match child(n, "BookgDt") {
        Some(d) => date_choice(d)?,
        None => String::new(),
    };
    let value_date = match child(n, "ValDt") {
        Some(d) => date_choice(d)?,
        None => String::new(),
    };
    let reference = child(n, "AcctSvcrRef").map(text).unwrap_or_default();
    let bank_code = at(n, &["BkTxCd", "Domn"])
        .map(|d| {
            let domain = child(d, "Cd").map(text).unwrap_or_default();
            let family = at(d, &["Fmly", "Cd"]).map(text).unwrap_or_default();
            let sub = at(d, &["Fmly", "SubFmlyCd"]).map(text).unwrap_or_default();
            format!("{domain}/{family}/{sub}")
        })
        .unwrap_or_default();
    let mut batch = None;
    let mut remittance = Vec::new();
    let mut counterparty = String::new();
    for details in children(n, "NtryDtls") {
        if let Some(b) = child(details, "Btch") {
            let count = match child(b, "NbOfTxs") {
                Some(c) => text(c)
                    .parse::<u32>()
                    .map_err(|_| bad(c, "is not a number of transactions"))?,
                None => 0,
            };
            let total = match child(b, "TtlAmt") {
                Some(t) => amount_fen(t)?,
                None => amount,
            };
            batch = Some((count, total));
        }
        for tx in children(details, "TxDtls") {
            if let Some(rmt) = child(tx, "RmtInf") {
                remittance.extend(children(rmt, "Ustrd").map(text));
            }
            if counterparty.is_empty() {
                let side = if credit { "Dbtr" } else { "Cdtr" };
                // `RltdPties/Dbtr/Nm` up to version 7, `RltdPties/Dbtr/Pty/Nm` from 8.
                counterparty = at(tx, &["RltdPties", side, "Nm"])
                    .or_else(|| at(tx, &["RltdPties", side, "Pty", "Nm"]))
                    .map(text)
                    .unwrap_or_default();
            }
        }
    }
    if let Some(info) = child(n, "AddtlNtryInf")
        && remittance.is_empty()
    {
        remittance.push(text(info));
    }
    Ok(Entry {
        amount_fen: amount,
        credit,
        status,
        booking_date,
        value_date,
        reference,
        bank_code,
        batch,
        remittance: remittance.join(" "),
        counterparty,
    })
}

/// Parses a camt.052, camt.053 or camt.054 document.
pub fn parse(xml: &str) -> Result<CamtFile, CamtError> {
    let doc = Document::parse(xml).map_err(|e| CamtError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "Document" {
        return Err(bad(root, "the root element must be Document"));
    }
    let version = root
        .tag_name()
        .namespace()
        .and_then(|ns| ns.rsplit(':').next())
        .unwrap_or_default()
        .to_owned();
    let (message, kind, report_name) = [
        ("BkToCstmrAcctRpt", MessageKind::Report, "Rpt"),
        ("BkToCstmrStmt", MessageKind::Statement, "Stmt"),
        ("BkToCstmrDbtCdtNtfctn", MessageKind::Notification, "Ntfctn"),
    ]
    .into_iter()
    .find_map(|(name, kind, report)| child(root, name).map(|m| (m, kind, report)))
    .ok_or_else(|| {
        bad(
            root,
            "holds none of BkToCstmrAcctRpt (camt.052), BkToCstmrStmt (camt.053), BkToCstmrDbtCdtNtfctn (camt.054)",
        )
    })?;
    let message_id = text(required(required(message, "GrpHdr")?, "MsgId")?);
    let mut reports = Vec::new();
    for r in children(message, report_name) {
        let account = account(r)?;
        let balances = children(r, "Bal").map(balance).collect::<Result<_, _>>()?;
        let entries = children(r, "Ntry").map(entry).collect::<Result<_, _>>()?;
        reports.push(AccountReport {
            account,
            balances,
            entries,
        });
    }
    if reports.is_empty() {
        return Err(bad(
            message,
            format!("{report_name} is missing: the message must hold at least one"),
        ));
    }
    Ok(CamtFile {
        kind,
        version,
        message_id,
        reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/camt")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_sample_version_parses() {
        for (name, kind, version) in [
            ("camt052.v8.xml", MessageKind::Report, "camt.052.001.08"),
            (
                "camt053.v2.minimal.xml",
                MessageKind::Statement,
                "camt.053.001.02",
            ),
            (
                "camt053.v2.all-balance-types.xml",
                MessageKind::Statement,
                "camt.053.001.02",
            ),
            (
                "camt054.v2.xml",
                MessageKind::Notification,
                "camt.054.001.02",
            ),
            (
                "camt054.v8.xml",
                MessageKind::Notification,
                "camt.054.001.08",
            ),
        ] {
            let f = parse(&sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((f.kind, f.version.as_str()), (kind, version), "{name}");
            assert!(
                !f.reports.is_empty() && !f.reports[0].account.is_empty(),
                "{name}"
            );
            assert_eq!(f.reports[0].entries.len(), 1, "{name}");
        }
    }

    #[test]
    fn entries_and_balances_are_read_by_the_standard() {
        let f = parse(&sample("camt054.v8.xml")).unwrap();
        let e = &f.reports[0].entries[0];
        assert_eq!(f.reports[0].account, "CH2801234000123456789");
        assert_eq!((e.amount_fen, e.credit), (20_000_000, false));
        assert_eq!(e.status, "BOOK");
        assert_eq!(e.booking_date, "2007-10-18");
        assert_eq!(e.reference, "ACSR160617103200001");
        assert_eq!(e.bank_code, "PMNT/ICDT/DMCT");
        assert_eq!(e.batch, Some((2, 630)));
        let s = parse(&sample("camt053.v2.minimal.xml")).unwrap();
        let b = &s.reports[0].balances;
        assert_eq!(b[0].code, "OPBD");
        assert_eq!((b[0].amount_fen, b[0].date.as_str()), (1815, "2014-12-30"));
        assert_eq!(b[1].amount_fen, -2700, "a debit balance is negative");
    }

    #[test]
    fn a_malformed_file_is_refused_naming_the_element() {
        let e = parse(&sample("camt053.v2.wrong.xml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Document/BkToCstmrStmt: Stmt is missing: the message must hold at least one"
        );
        let xml = sample("camt054.v8.xml").replace(
            "<Amt Ccy=\"SEK\">200000</Amt>",
            "<Amt Ccy=\"SEK\">2,000.00</Amt>",
        );
        let e = parse(&xml).unwrap_err().to_string();
        assert!(
            e.starts_with("Document/BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry/Amt: \"2,000.00\""),
            "{e}"
        );
        let e = parse("<Document><Other/></Document>")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("Document: holds none of"), "{e}");
        assert!(matches!(parse("<Document>"), Err(CamtError::Xml(_))));
    }

    #[test]
    fn amounts_are_exact_in_fen() {
        let doc = |t: &str| format!("<Amt>{t}</Amt>");
        for (t, fen) in [
            ("0", 0),
            ("1", 100),
            ("1.5", 150),
            ("1.05", 105),
            ("12.340", 1234),
        ] {
            let d = doc(t);
            let x = Document::parse(&d).unwrap();
            assert_eq!(amount_fen(x.root_element()).unwrap(), fen, "{t}");
        }
        for t in ["", "-1", "1.005", "1e3", "1,00", " .5", "9999999999999999"] {
            let d = doc(t);
            let x = Document::parse(&d).unwrap();
            assert!(amount_fen(x.root_element()).is_err(), "{t:?}");
        }
    }
}
