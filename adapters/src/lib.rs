//! The wagelink client kit, and (in later work) one adapter per partner kind.
//!
//! Every partner-side program starts here: [`client::Credentials`] reads a partner's
//! certificate, key and federation CA; [`client::connect`] opens a mutual-TLS channel to the
//! gateway that every generated wagelink.v1 client can use.

pub mod client;
