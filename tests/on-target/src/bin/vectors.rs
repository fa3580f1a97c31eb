//! Test firmware: every provider vector and lifecycle scenario (the same `tessera-vectors`
//! the host tests run), then the parse path's peak stack at token capacity 2048 and 8192.
//! Prints one line per case and exits non-zero on any failure or a stack over budget.
#![no_std]
#![no_main]

#[cfg(target_arch = "arm")]
use cortex_m_rt::entry;
#[cfg(target_arch = "riscv32")]
use riscv_rt::entry;
use tessera_core::{Grant, Provider, Setu, TokenInfo};
use tessera_on_target::{exit, peak_stack, println, CPU};
use tessera_vectors::{check, lifecycle::SCENARIOS, VECTORS};

/// The parse path's stack budget, bytes.
const STACK_BUDGET: usize = 2048;

static SETU_SEED: &[u8] = include_bytes!("../../../vectors/fixtures/setu-token-200.json");
static SETU_8K: &[u8] = include_bytes!("../../../vectors/fixtures/setu-token-200-8k.json");

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn record(&mut self, ok: bool) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

#[entry]
fn main() -> ! {
    println!("tessera-core on {}", CPU);
    let mut tally = Tally::default();
    vectors(&mut tally);
    scenarios(&mut tally);
    stack(&mut tally);
    // The plain closing line CI reads.
    println!(
        "on-target: {} passed, {} failed",
        tally.passed, tally.failed
    );
    exit(tally.failed == 0)
}

/// Each phase keeps its capacity-sized buffers in its own frame, so the peak RAM is the
/// largest phase, not their sum (the micro:bit has 16 KiB).
#[inline(never)]
fn vectors(tally: &mut Tally) {
    let mut grant: Grant = Grant::new();
    let mut info = TokenInfo::default();
    for v in VECTORS.iter().flat_map(|t| t.iter()) {
        let outcome = check(v, &mut grant, &mut info);
        match &outcome {
            Ok(()) => println!("ok   vector {}", v.name),
            Err(m) => println!("FAIL vector {}", m),
        }
        tally.record(outcome.is_ok());
    }
}

#[inline(never)]
fn scenarios(tally: &mut Tally) {
    for s in SCENARIOS {
        let outcome = (s.run)();
        match outcome {
            Ok(()) => println!("ok   lifecycle {}", s.name),
            Err(why) => println!("FAIL lifecycle {}: {}", s.name, why),
        }
        tally.record(outcome.is_ok());
    }
}

/// Parses `body` as Setu and stores it: the whole parse path.
#[inline(never)]
fn parse_into<const T: usize>(body: &[u8], grant: &mut Grant<T>) -> bool {
    match Setu::sandbox().parse_token(200, body) {
        Ok(r) => grant.store(&r).is_ok(),
        Err(_) => false,
    }
}

/// Peak stack of the parse path at capacity `T`: (seed response, 8 KiB response).
#[inline(never)]
fn stack_at<const T: usize>() -> [(usize, bool); 2] {
    // The grant lives in this frame, above the painted region: only the parse is measured.
    let mut grant: Grant<T> = Grant::new();
    let seed = peak_stack(|| parse_into(SETU_SEED, &mut grant));
    let big = peak_stack(|| parse_into(SETU_8K, &mut grant));
    [seed, big]
}

#[inline(never)]
fn stack(tally: &mut Tally) {
    let at_2048 = stack_at::<2048>();
    let at_8192 = stack_at::<8192>();
    let cases = [
        ("setu seed (1.3 KB)", 2048, at_2048[0], true),
        ("setu seed (1.3 KB)", 8192, at_8192[0], true),
        // 8 KB of token does not fit 2048: a capacity error, after the whole parse.
        ("setu 8 KB token", 2048, at_2048[1], false),
        ("setu 8 KB token", 8192, at_8192[1], true),
    ];
    for (what, capacity, (bytes, stored), want_stored) in cases {
        let ok = bytes <= STACK_BUDGET && stored == want_stored;
        println!(
            "{} stack parse {} capacity={}: {} bytes (budget {})",
            if ok { "ok  " } else { "FAIL" },
            what,
            capacity,
            bytes,
            STACK_BUDGET
        );
        tally.record(ok);
    }
    let same = at_2048[0].0 == at_8192[0].0;
    println!(
        "{} stack independent of capacity: {} bytes at 2048, {} at 8192",
        if same { "ok  " } else { "FAIL" },
        at_2048[0].0,
        at_8192[0].0
    );
    tally.record(same);
    #[cfg(feature = "naive")]
    {
        let (bytes, ok) = peak_stack(|| naive::parse(SETU_SEED));
        println!(
            "info stack parse setu seed naive-derive capacity=2048: {} bytes (parsed: {})",
            bytes, ok
        );
    }
}

/// For comparison only: deriving `Deserialize` straight into `heapless::String<2048>`.
#[cfg(feature = "naive")]
mod naive {
    #[derive(serde::Deserialize)]
    struct Data {
        #[serde(rename = "expiresIn")]
        _expires_in: u64,
        #[serde(rename = "token")]
        _token: heapless::String<2048>,
    }

    #[derive(serde::Deserialize)]
    struct Response {
        #[serde(rename = "status")]
        _status: u16,
        #[serde(rename = "success")]
        _success: bool,
        #[serde(rename = "data")]
        _data: Data,
    }

    /// Uses the parsed value, so the optimiser cannot drop the string's storage.
    #[inline(never)]
    pub fn parse(body: &[u8]) -> bool {
        match serde_json_core::from_slice::<Response>(body) {
            Ok((r, _)) => core::hint::black_box(&r)._data._token.len() == 1238,
            Err(_) => false,
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("PANIC {}", info);
    exit(false)
}
