//! The wagelink client kit, and the adapters that link partner systems to the gateway:
//! [`bank`] turns a bank's camt files into signed account events.
//!
//! Every partner-side program starts here: [`client::Credentials`] reads a partner's
//! certificate, key and federation CA; [`client::connect`] opens a mutual-TLS channel to the
//! gateway that every generated wagelink.v1 client can use.

pub mod agency;
pub mod bank;
pub mod client;
pub mod http;
pub mod kit;
pub mod police;
