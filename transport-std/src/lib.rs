//! # tessera-std
//!
//! Tessera for host applications: drives the `tessera-core` lifecycle with
//! `std::time::Instant`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use tessera_core as core;
