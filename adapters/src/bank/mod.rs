//! The bank adapter: camt files in, account events out (and, later, account queries answered
//! from the bank core's HTTP API).

pub mod camt;
pub mod events;
