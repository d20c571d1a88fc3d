//! The bank adapter: camt files in, account events out; account queries answered from the bank
//! core's HTTP API over the bank's outbound query link.

pub mod camt;
pub mod events;
pub mod link;
pub mod runner;
