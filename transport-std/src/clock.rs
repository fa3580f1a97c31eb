//! Time: tessera-host's clocks, the ones both host clients run on.

pub use tessera_host::{StdClock, SystemWallClock, WallClock};
