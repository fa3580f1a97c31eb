//! [`OwnedProvider`]: tessera-host's, the one both host clients take.

pub use tessera_host::OwnedProvider;
