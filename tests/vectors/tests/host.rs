//! Runs every vector on the host.

use std::collections::HashSet;

use tessera_core::{Grant, TokenInfo};
use tessera_vectors::{check, VECTORS};

#[test]
fn every_vector_passes() {
    let mut grant: Box<Grant> = Box::default();
    let mut info = TokenInfo::default();
    let mut failures = Vec::new();
    let mut count = 0;
    for v in VECTORS.iter().flat_map(|t| t.iter()) {
        count += 1;
        if let Err(m) = check(v, &mut grant, &mut info) {
            failures.push(m.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count >= 100, "only {count} vectors");
}

#[test]
fn names_are_unique_and_say_their_provider() {
    let mut seen = HashSet::new();
    for v in VECTORS.iter().flat_map(|t| t.iter()) {
        assert!(seen.insert(v.name), "duplicate vector name {}", v.name);
        assert!(
            v.name.starts_with(v.provider.name()),
            "{} is not a {} vector",
            v.name,
            v.provider
        );
    }
}

#[test]
fn a_wrong_expectation_is_caught() {
    // The checker must be able to fail: flip one expectation and see it reported.
    let mut v = VECTORS[0][0];
    v.status = 500;
    let mut grant: Box<Grant> = Box::default();
    let err = check(&v, &mut grant, &mut TokenInfo::default()).unwrap_err();
    assert_eq!(err.what, "unexpected error");
}

#[test]
fn every_lifecycle_scenario_passes() {
    let failures: Vec<String> = tessera_vectors::lifecycle::SCENARIOS
        .iter()
        .filter_map(|s| (s.run)().err().map(|why| format!("{}: {why}", s.name)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(tessera_vectors::lifecycle::SCENARIOS.len(), 16);
}
