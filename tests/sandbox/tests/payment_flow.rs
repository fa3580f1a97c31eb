//! Desktop unit tests of a user's payment flow against the sandbox, as the READMEs show them
//! (`readme_shows_this_test` below keeps them the same).

// --- README ---
// Your code (src/payments.rs): a payment through a tessera-std client.
use tessera_std::core::{Credentials, ErrorKind, ProviderKind};
use tessera_std::{http, Client, Error, Options, OwnedProvider};

pub fn pay(client: &Client<OwnedProvider>, api: &http::Uri, order: u64) -> Result<u16, Error> {
    let request = http::Request::post(api)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", order)
        .body(r#"{"amount":1250,"currency":"EUR"}"#)
        .expect("a parsed URI and a numeric header always make a request");
    Ok(client.call(request)?.status().as_u16())
}

// Your tests (tests/payments.rs): the sandbox stands in for Shogun and for your payment API.
use std::sync::Arc;
use tessera_sandbox::{Endpoint, ManualClock, Sandbox, CLIENT_ID, CLIENT_SECRET};

const SHOGUN: ProviderKind = ProviderKind::Shogun;

fn terminal(sandbox: &Sandbox, secret: &str, clock: &ManualClock) -> Client<OwnedProvider> {
    let shogun = OwnedProvider::new(SHOGUN, sandbox.base_url(SHOGUN));
    let credentials = Credentials::new(CLIENT_ID, secret).expect("credentials fit");
    let clock = Arc::new(clock.clone());
    Client::with_clock(shogun, credentials, Options::default(), clock)
}

#[test]
fn a_revoked_token_is_replaced_once_and_the_payment_goes_through() {
    let sandbox = Sandbox::start().unwrap();
    let client = terminal(&sandbox, CLIENT_SECRET, &ManualClock::new());
    let api = sandbox.protected_url(SHOGUN).parse().unwrap();
    assert_eq!(pay(&client, &api, 1).unwrap(), 200);

    sandbox.revoke_all(SHOGUN); // the provider revokes every token it has issued
    assert_eq!(pay(&client, &api, 2).unwrap(), 200); // 401, new token, one retry

    assert_eq!(sandbox.count(Endpoint::Token(SHOGUN)), 2);
    assert_eq!(sandbox.count(Endpoint::Protected(SHOGUN)), 3);
    let retried = sandbox.last_headers(Endpoint::Protected(SHOGUN));
    assert!(retried.contains(&("idempotency-key".into(), "2".into())));
}

#[test]
fn a_wrong_secret_is_tried_once_and_a_lockout_is_sat_out() {
    let sandbox = Sandbox::start().unwrap();
    sandbox.set_lockout(2, std::time::Duration::from_secs(15 * 60)); // locked at 2 failures
    let api = sandbox.protected_url(SHOGUN).parse().unwrap();
    let clock = ManualClock::new();

    // A terminal with last year's secret: refused once, not retried before refusal_retry.
    let stale = terminal(&sandbox, "last-years-secret", &clock);
    let refused = pay(&stale, &api, 3).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidCredentials);
    assert!(pay(&stale, &api, 4).is_err());
    assert_eq!(sandbox.count(Endpoint::Token(SHOGUN)), 1);

    // Someone presses "retry" with the same secret: the second failure locks the account.
    stale.retry();
    let locked = pay(&stale, &api, 5).unwrap_err();
    assert_eq!(locked.kind(), ErrorKind::RateLimited);

    // A terminal with the right secret is locked out too: it backs off instead of hammering.
    let client = terminal(&sandbox, CLIENT_SECRET, &clock);
    let locked = pay(&client, &api, 6).unwrap_err();
    assert_eq!(locked.kind(), ErrorKind::RateLimited);
    let Error::Token { retry_in, .. } = locked else {
        panic!("no token while the account is locked: {locked}");
    };
    let wait = retry_in.expect("a backoff");
    assert!(pay(&client, &api, 6).is_err()); // still backing off: nothing sent
    assert_eq!(sandbox.count(Endpoint::Token(SHOGUN)), 3);
    assert_eq!(sandbox.count(Endpoint::Protected(SHOGUN)), 0);

    // The lockout ends; once the backoff has run out, the payment goes through.
    sandbox.unlock();
    clock.advance(wait);
    assert_eq!(pay(&client, &api, 6).unwrap(), 200);
    assert_eq!(sandbox.count(Endpoint::Token(SHOGUN)), 4);
}
// --- end ---

#[test]
fn readme_shows_this_test() {
    let this = include_str!("payment_flow.rs");
    let shown = this
        .split("// --- README ---\n")
        .nth(1)
        .and_then(|rest| rest.split("// --- end ---").next())
        .expect("the README markers");
    assert!(
        include_str!("../README.md").contains(shown),
        "tests/sandbox/README.md must show tests/payment_flow.rs between its markers, verbatim"
    );
    // The main README shows an excerpt, marked as one.
    let marker = "<!-- excerpt: tests/sandbox/tests/payment_flow.rs -->\n```rust\n";
    let excerpts: Vec<&str> = include_str!("../../../README.md")
        .split(marker)
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert_eq!(
        excerpts.len(),
        1,
        "README.md's excerpt of this file, and its marker"
    );
    for excerpt in excerpts {
        assert!(
            this.contains(excerpt),
            "README.md's excerpt is not in tests/sandbox/tests/payment_flow.rs:\n{excerpt}"
        );
    }
}
