//! Token stores: tessera-host's records, names and rules (`tessera_host::store`), so a
//! blocking and an async process with one credential share one token. tessera-std drives
//! them blocking; tessera-tokio awaits the same.

pub use tessera_host::store::{Binding, FileStore, Lease, StoreError, StoreKey, TokenStore};
