//! The main job: the quickstart walks every provider against the built-in sandbox.

use std::process::Command;

#[test]
fn quickstart_passes_every_step_against_the_sandbox() {
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert_eq!(
        last, "quickstart: 5 providers, 32 passed, 0 failed",
        "{stdout}"
    );
    for kind in ["shogun", "apimw", "setu", "stonex", "oauth2"] {
        assert!(stdout.lines().any(|l| l == kind), "{kind} section missing");
        assert!(
            stdout.contains(&format!(
                "ok    call with an Idempotency-Key: Idempotency-Key quickstart-{kind}-0001 reached the API"
            )),
            "{kind}: {stdout}"
        );
    }
    assert!(!stdout.contains(tessera_sandbox::CLIENT_SECRET));
}

#[test]
fn quickstart_runs_against_a_given_provider() {
    let sb = tessera_sandbox::Sandbox::start().unwrap();
    let url = sb.base_url(tessera_sandbox::ProviderKind::Shogun);
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .args([
            "--provider",
            "shogun",
            "--base-url",
            &url,
            "--client-id",
            tessera_sandbox::CLIENT_ID,
        ])
        .env("TESSERA_CLIENT_SECRET", tessera_sandbox::CLIENT_SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok    validate"), "{stdout}");
    assert!(
        stdout.ends_with("quickstart: 3 passed, 0 failed\n"),
        "{stdout}"
    );
}
