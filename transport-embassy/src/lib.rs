//! # tessera-embassy
//!
//! Tessera for embassy firmware: drives the `tessera-core` lifecycle with
//! `embassy_time::Instant`.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use tessera_core as core;
