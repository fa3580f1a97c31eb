//! Replays, on stable, what the fuzzers found and started from: every file under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`, and every provider vector
//! shaped as a fuzz input. A property that fails names the file.

use std::path::{Path, PathBuf};

use tessera_fuzz_checks::{response_input, Check, TARGETS};
use tessera_vectors::{Endpoint, VECTORS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn replay(name: &str, check: Check) -> usize {
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        for path in files(&fuzz_dir().join(kind).join(name)) {
            let data = std::fs::read(&path).unwrap();
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                std::panic::resume_unwind(Box::new(format!("{}: {e:?}", path.display())));
            }
            n += 1;
        }
    }
    n
}

#[test]
fn every_target_replays_its_corpus_and_regressions() {
    for (name, check) in TARGETS {
        let n = replay(name, *check);
        assert!(n > 0, "{name}: no corpus checked in");
    }
}

#[test]
fn every_vector_holds_as_a_fuzz_input() {
    let (token, validate) = (TARGETS[0].1, TARGETS[1].1);
    for v in VECTORS.iter().flat_map(|t| t.iter()) {
        match v.endpoint {
            Endpoint::Token => token(&response_input(v.provider, v.status, v.body)),
            Endpoint::Validate => {
                let mut input = response_input(v.provider, v.status, v.body);
                input.remove(0);
                validate(&input)
            }
        }
    }
}
