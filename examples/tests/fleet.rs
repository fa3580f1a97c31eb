//! `tessera token --cache FILE` and `--store redis://…` with real processes: a script that
//! runs the CLI twice sends one request; a fleet of processes started at once sends one
//! request and gets one token; a bad secret costs the fleet one failed attempt; a process
//! killed while it holds the fetch lease is replaced once its lease lapses; `TESSERA_STORE`
//! takes a `rediss://` URL with its password, checked against `--ca`. Against the sandbox
//! and a real `redis-server` on loopback.

use std::process::{Child, Command, Output, Stdio};

mod common;
use std::time::Duration;

use tessera_sandbox::{
    Endpoint, Fault, Gate, ProviderKind, RedisServer, Sandbox, CLIENT_ID, CLIENT_SECRET,
};

const KIND: ProviderKind = ProviderKind::Shogun;

fn tessera(sb: &Sandbox, secret: &str, extra: &[&str]) -> Command {
    let mut cmd = common::tessera_command();
    cmd.args(["token", "shogun", "--base-url", &sb.base_url(KIND)])
        .args(["--client-id", CLIENT_ID, "--show-token"])
        .args(extra)
        .env("TESSERA_CLIENT_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The JSON line a finished run printed.
fn line(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "not one JSON line: {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn requests(sb: &Sandbox) -> u64 {
    sb.count(Endpoint::Token(KIND))
}

/// `n` processes started together; their JSON lines.
fn fleet(sb: &Sandbox, secret: &str, extra: &[&str], n: usize) -> Vec<serde_json::Value> {
    let children: Vec<Child> = (0..n)
        .map(|_| tessera(sb, secret, extra).spawn().unwrap())
        .collect();
    children
        .into_iter()
        .map(|c| line(&c.wait_with_output().unwrap()))
        .collect()
}

#[test]
fn a_cache_file_serves_the_next_run_with_no_request() {
    let sb = Sandbox::start().unwrap();
    let dir = std::env::temp_dir().join(format!("tessera-cli-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("token");
    let cache = cache.to_str().unwrap();
    let first = line(
        &tessera(&sb, CLIENT_SECRET, &["--cache", cache])
            .output()
            .unwrap(),
    );
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["cached"], false, "{first}");
    let second = line(
        &tessera(&sb, CLIENT_SECRET, &["--cache", cache])
            .output()
            .unwrap(),
    );
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(second["access_token"], first["access_token"]);
    assert_eq!(requests(&sb), 1, "run twice: one request");
    // The file holds neither the token nor the secret.
    let bytes = std::fs::read(cache).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let token = first["access_token"].as_str().unwrap();
    assert!(!text.contains(&token[..24]) && !text.contains(&token[token.len() - 24..]));
    assert!(!text.contains("s3cr3t") && !text.contains(CLIENT_ID));
    // Another secret for the same client id (rotation) does not reuse it.
    sb.set_credentials(KIND, CLIENT_ID, "rotated-41d2");
    let third = line(
        &tessera(&sb, "rotated-41d2", &["--cache", cache])
            .output()
            .unwrap(),
    );
    assert_eq!(third["cached"], false, "{third}");
    assert_eq!(requests(&sb), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_fleet_of_processes_makes_one_request() {
    let sb = Sandbox::start().unwrap();
    let redis = RedisServer::start();
    let url = redis.url();
    let lines = fleet(&sb, CLIENT_SECRET, &["--store", &url], 8);
    assert_eq!(requests(&sb), 1, "8 processes, one upstream request");
    let token = &lines[0]["access_token"];
    for l in &lines {
        assert_eq!(l["ok"], true, "{l}");
        assert_eq!(&l["access_token"], token, "one token for the fleet");
    }
    assert_eq!(
        lines.iter().filter(|l| l["cached"] == true).count(),
        7,
        "all but the lease holder were served from the store"
    );
}

#[test]
fn a_bad_secret_costs_the_fleet_one_attempt() {
    let sb = Sandbox::start().unwrap();
    // Shogun locks the account after 3 failed attempts: a fleet retrying alone would trip it.
    sb.set_lockout(3, Duration::from_secs(600));
    let redis = RedisServer::start();
    let url = redis.url();
    let lines = fleet(&sb, "wrong-secret-9", &["--store", &url], 8);
    assert_eq!(requests(&sb), 1, "one failed attempt for 8 processes");
    for l in &lines {
        assert_eq!(l["kind"], "invalid_credentials", "{l}");
    }
    // The replaced secret is tried at once, and is not locked out.
    let fixed = fleet(&sb, CLIENT_SECRET, &["--store", &url], 3);
    assert!(fixed.iter().all(|l| l["ok"] == true), "{fixed:?}");
    assert_eq!(requests(&sb), 2);
}

#[test]
fn a_killed_lease_holder_is_replaced_when_its_lease_lapses() {
    let sb = Sandbox::start().unwrap();
    let redis = RedisServer::start();
    let url = redis.url();
    // The first process's request is held at the provider; the process is then killed.
    let gate = Gate::new();
    sb.inject(Endpoint::Token(KIND), Fault::Hold(gate.clone()), 1);
    let args = ["--store", url.as_str(), "--timeout", "1"];
    let mut holder = tessera(&sb, CLIENT_SECRET, &args).spawn().unwrap();
    assert!(
        gate.wait_arrived(1, Duration::from_secs(10)),
        "the holder never asked"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    // A successor waits out the dead holder's lease (its timeout + 1 s), then fetches.
    let successor = line(&tessera(&sb, CLIENT_SECRET, &args).output().unwrap());
    gate.release();
    assert_eq!(successor["ok"], true, "{successor}");
    assert_eq!(successor["cached"], false);
    assert_eq!(
        requests(&sb),
        2,
        "the killed holder's request and the successor's"
    );
}

#[test]
fn tessera_store_takes_a_rediss_url_with_its_password_checked_against_ca() {
    let sb = Sandbox::start().unwrap();
    let password = "redis-pw-7f3a91";
    let redis = RedisServer::start_tls_with_password(password);
    let other = RedisServer::start_tls();
    let dir = std::env::temp_dir().join(format!("tessera-cli-rediss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("redis-ca.pem");
    std::fs::write(&ca, redis.ca_pem()).unwrap();
    let wrong_ca = dir.join("other-ca.pem");
    std::fs::write(&wrong_ca, other.ca_pem()).unwrap();
    let url = redis
        .tls_url()
        .replacen("rediss://", &format!("rediss://:{password}@"), 1);
    let run = |ca: &std::path::Path| {
        tessera(&sb, CLIENT_SECRET, &["--ca", ca.to_str().unwrap()])
            .env("TESSERA_STORE", &url)
            .output()
            .unwrap()
    };
    let first = run(&ca);
    let second = run(&ca);
    assert_eq!(line(&first)["ok"], true, "{}", line(&first));
    assert_eq!(line(&first)["cached"], false);
    assert_eq!(line(&second)["cached"], true, "shared through rediss://");
    assert_eq!(requests(&sb), 1);
    // A server the --ca roots do not vouch for: the store is refused (never used in the
    // clear or unchecked), and the token is fetched alone.
    let refused = run(&wrong_ca);
    assert_eq!(line(&refused)["ok"], true, "{}", line(&refused));
    assert_eq!(line(&refused)["cached"], false);
    assert_eq!(requests(&sb), 2);
    // The password is in no output.
    for out in [&first, &second, &refused] {
        for text in [&out.stdout, &out.stderr] {
            assert!(!String::from_utf8_lossy(text).contains(password));
        }
    }
    // A bad store URL says which, without its password.
    let bad = tessera(&sb, CLIENT_SECRET, &[])
        .env("TESSERA_STORE", format!("rediss://:{password}@/0"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!text.contains(password), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
