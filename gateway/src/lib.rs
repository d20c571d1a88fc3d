//! wagelink: a federated data-exchange gateway for the agencies and banks that fight wage
//! arrears of migrant workers. One mTLS gRPC server; everything that crosses it is signed,
//! checked, logged and answered with a receipt (see DESIGN.md in the shared folder).
//!
//! Module map, mirroring the design:
//! - [`identity`] — partners, certificates, the registry, the TLS client check;
//! - [`pki`] — the federation CA and the `wagelink dev` roster;
//! - [`store`] — persistence, one interface over SQLite and PostgreSQL;
//! - [`tls`] — the TLS 1.3 endpoint;
//! - [`layers`] — tower layers around every call (authentication, limits, deadlines);
//! - [`cases`] — leads, the case state machine and its clocks; [`banks`] — account events,
//!   the account registry and early warnings; [`routing`] — the routing rules;
//! - [`services`] — the gRPC services, thin over the domain;
//! - [`server`] — assembly; [`config`] — configuration; [`cli`] — the `wagelink` command.

pub mod admin;
pub mod admin_cli;
pub mod banks;
pub mod bench;
pub mod cases;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod federation;
pub mod identity;
pub mod layers;
pub mod ledger;
pub mod pki;
pub mod refusal;
pub mod reports;
pub mod routing;
pub mod server;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod witness_cli;
