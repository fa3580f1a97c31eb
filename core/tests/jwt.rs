//! The providers' published example tokens, read from the shared fixtures. An integration
//! test, not a unit test in `src/jwt.rs`: the fixtures live in tests/vectors, outside this
//! crate, and the published package carries `src` only, so its own `cargo test` must not
//! reach for them.

use tessera_core::jwt::lifetime;

#[test]
fn seed_tokens() {
    // Setu's example (Keycloak): exp 1613994312 - iat 1613994012.
    let setu = include_str!("../../tests/vectors/fixtures/setu-token.txt");
    assert_eq!(lifetime(setu.trim()), Some(300));
    // StoneX's example (Okta): 1725027565 - 1725023965.
    let stonex = include_str!("../../tests/vectors/fixtures/stonex-token.txt");
    assert_eq!(lifetime(stonex.trim()), Some(3600));
}
