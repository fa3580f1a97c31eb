//! What the CLI's test files share.

use std::process::Command;

/// The `tessera` binary, with no secret and no proxy taken from the caller's environment:
/// loopback tests set what they need.
pub fn tessera_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.env_remove("TESSERA_CLIENT_SECRET");
    // A developer's fleet store must not leak into the tests.
    cmd.env_remove("TESSERA_STORE");
    for proxy in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(proxy);
    }
    cmd
}
