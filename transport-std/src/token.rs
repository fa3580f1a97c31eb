//! [`Token`]: tessera-host's, the one both host clients hand out.

pub use tessera_host::Token;
