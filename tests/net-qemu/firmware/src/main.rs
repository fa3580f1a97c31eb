//! The terminal's whole network path on QEMU `virt` (riscv32imc, the ESP32-C3's ISA):
//! virtio-net behind an embassy-net driver, DHCPv4 from QEMU, embassy-net's TCP, MbedTLS
//! with certificate dates against the goldfish RTC, and tessera-embassy's fetch, refresh,
//! downstream calls and snapshots, through the same terminal application the boards run.
//!
//! The host (tests/net-qemu/host, run by scripts/net-qemu) loads the run's configuration
//! into memory (src/config.rs), forwards the guest's server address to a server on its
//! loopback (QEMU user networking with `restrict=on`, one `guestfwd` per server), reads the
//! lines this prints through semihosting, and answers the control requests the scenarios
//! make over a forwarded control connection (src/scenarios.rs).
#![no_std]
#![no_main]

mod config;
mod platform;
mod scenarios;
mod terminal;
mod virtio_net;

use core::net::Ipv4Addr;

use embassy_executor::Spawner;
use embassy_net::{Runner, StackResources};
use rand_core::SeedableRng;
use static_cell::StaticCell;
use tinyrlibc as _;

use crate::platform::println;
use crate::virtio_net::VirtioNet;

/// The guest's view of the host's forwarded servers (QEMU's `guestfwd` addresses).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// Where the host's control server is forwarded.
pub const CONTROL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 101);
/// The control server's forwarded port.
pub const CONTROL_PORT: u16 = 9000;

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, VirtioNet>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn main_task(spawner: Spawner) {
    let pass = run(spawner).await;
    let (busy, slept_instret, slept) = platform::totals();
    let [main_stack, net_stack, refresher_stack] = platform::task_stacks();
    println!(
        "@tasks {{\"{}\":{},\"{}\":{},\"{}\":{}}}",
        platform::TASKS[0],
        main_stack,
        platform::TASKS[1],
        net_stack,
        platform::TASKS[2],
        refresher_stack
    );
    println!(
        "@done {{\"pass\":{},\"instructions\":{},\"instret_in_wfi\":{},\"slept_us\":{},\"heap\":{}}}",
        pass,
        busy,
        slept_instret,
        slept / 10,
        platform::heap_use().0
    );
    platform::exit(pass)
}

async fn run(spawner: Spawner) -> bool {
    let Some(config) = config::Config::load() else {
        println!("net-qemu: no configuration loaded at 0x80f00000");
        return false;
    };
    platform::init_log(match config.str("log") {
        Some("debug") => log::LevelFilter::Debug,
        Some("trace") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Info,
    });
    // The randomness: a seed from the host's OS CSPRNG, fresh for every run, expanded by
    // ChaCha20 (QEMU `virt` has no RNG device the firmware drives).
    let Some(seed) = config
        .get("seed")
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
    else {
        println!("net-qemu: the configuration has no 32-byte seed");
        return false;
    };
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);

    static NET_BUFFERS: StaticCell<virtio_net::Buffers> = StaticCell::new();
    let device = match VirtioNet::probe(NET_BUFFERS.init(virtio_net::Buffers::new())) {
        Ok(d) => d,
        Err(e) => {
            println!("net-qemu: no network device: {:?}", e);
            return false;
        }
    };
    static RESOURCES: StaticCell<StackResources<6>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        rand_core::RngCore::next_u64(&mut rng),
    );
    spawner.spawn(net_task(runner).unwrap());
    let t0 = platform::mtime();
    stack.wait_config_up().await;
    if let Some(v4) = stack.config_v4() {
        println!(
            "net-qemu: DHCP address {} in {} ms",
            v4.address,
            (platform::mtime() - t0) / 10_000
        );
    }
    scenarios::run(spawner, stack, config, rng).await
}

#[riscv_rt::entry]
fn main() -> ! {
    platform::init_heap();
    platform::paint_stack();
    static EXECUTOR: StaticCell<embassy_executor::raw::Executor> = StaticCell::new();
    let executor: &'static embassy_executor::raw::Executor =
        EXECUTOR.init(embassy_executor::raw::Executor::new(core::ptr::null_mut()));
    executor
        .spawner()
        .spawn(main_task(executor.spawner()).unwrap());
    platform::run(executor)
}
