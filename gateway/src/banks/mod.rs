//! Banks (DESIGN §8): the account events they push about dedicated wage accounts and guarantee
//! deposits, checked and turned into the account registry; and the early-warning rules that turn
//! silence on an account into a warning lead.

pub mod event;
pub mod link;
pub mod warnings;
