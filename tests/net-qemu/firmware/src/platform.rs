//! The board support QEMU's `virt` machine needs for an embassy application: the CLINT as
//! embassy-time's driver (mtime at 10 MHz), the PLIC for the network device's interrupt, an
//! executor loop that sleeps in `wfi` and accounts for the sleep, the goldfish RTC as the
//! wall clock, the heap MbedTLS allocates from (with its high-water mark), the painted
//! stack, and semihosting for output and exit.
//!
//! Interrupts are never taken: `mstatus.MIE` stays 0 and only `mie` enables the timer and
//! external sources, which is enough for `wfi` to return when one is pending. The loop then
//! services them (the timer queue, the PLIC claim) on the one stack, so nothing runs
//! concurrently with a task and a critical section only has to exist, not to mask.

use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicBool, Ordering};

use critical_section::Mutex;
use embassy_sync::waitqueue::AtomicWaker;
use embassy_time_queue_utils::Queue;

/// CLINT (SiFive-compatible) on `virt`.
const CLINT: usize = 0x0200_0000;
const MTIMECMP0: usize = CLINT + 0x4000;
const MTIME: usize = CLINT + 0xBFF8;
/// PLIC on `virt`, hart 0's M-mode context (context 0).
const PLIC: usize = 0x0C00_0000;
const PLIC_ENABLE0: usize = PLIC + 0x2000;
const PLIC_THRESHOLD0: usize = PLIC + 0x20_0000;
const PLIC_CLAIM0: usize = PLIC + 0x20_0004;
/// The goldfish RTC on `virt`: nanoseconds since the Unix epoch (reading TIME_LOW latches
/// TIME_HIGH).
const GOLDFISH_RTC: usize = 0x0010_1000;

fn read32(addr: usize) -> u32 {
    // SAFETY: only called with the MMIO registers above, which `virt` always maps.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write32(addr: usize, value: u32) {
    // SAFETY: as `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// mtime, in 100 ns ticks (10 MHz on `virt`).
pub fn mtime() -> u64 {
    loop {
        let hi = read32(MTIME + 4);
        let lo = read32(MTIME);
        if read32(MTIME + 4) == hi {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

fn set_mtimecmp(at: u64) {
    // Written high word first with the low word at its maximum, so the compare never
    // passes through a value below both the old and the new deadline.
    write32(MTIMECMP0, u32::MAX);
    write32(MTIMECMP0 + 4, (at >> 32) as u32);
    write32(MTIMECMP0, at as u32);
}

/// Instructions retired since reset (`minstret`, 64-bit).
pub fn instret() -> u64 {
    loop {
        let (hi, lo, hi2): (u32, u32, u32);
        // SAFETY: reading counters has no side effect; M-mode may read them.
        unsafe {
            core::arch::asm!("csrr {0}, minstreth", "csrr {1}, minstret", "csrr {2}, minstreth",
                out(reg) hi, out(reg) lo, out(reg) hi2);
        }
        if hi == hi2 {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// What `minstret` advanced by across the `wfi`s so far, and how long the core slept (mtime
/// ticks). Under `-icount` QEMU (up to 9.0 at least) also adds the nanoseconds the core
/// slept to `minstret`: those are not instructions, so [`busy_instructions`] leaves the
/// whole advance across each `wfi` out (the `wfi` itself and the counter reads around it,
/// a handful of real instructions per sleep, go with it).
static SLEPT_INSTRET: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
static SLEPT_TICKS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Instructions the core executed since reset, sleep and the stack watch's hook excluded:
/// exact under `-icount shift=0`, where one instruction is one tick of `minstret`.
pub fn busy_instructions() -> u64 {
    instret() - critical_section::with(|cs| SLEPT_INSTRET.borrow(cs).get()) - hook_instret()
}

/// How long the core has slept in `wfi` since reset, in mtime ticks (100 ns).
pub fn slept_ticks() -> u64 {
    critical_section::with(|cs| SLEPT_TICKS.borrow(cs).get())
}

/// Instructions, `minstret`'s advance across the sleeps, and the sleep (mtime ticks) since
/// reset, for the run's last line.
pub fn totals() -> (u64, u64, u64) {
    let slept = critical_section::with(|cs| SLEPT_INSTRET.borrow(cs).get());
    (busy_instructions(), slept, slept_ticks())
}

/// Unix time in nanoseconds from the goldfish RTC (QEMU gives it the host's UTC clock).
pub fn rtc_unix_nanos() -> u64 {
    let lo = read32(GOLDFISH_RTC);
    let hi = read32(GOLDFISH_RTC + 4);
    (u64::from(hi) << 32) | u64::from(lo)
}

// ---- embassy-time on the CLINT ----

struct ClintTime {
    queue: Mutex<RefCell<Queue>>,
}

impl embassy_time_driver::Driver for ClintTime {
    fn now(&self) -> u64 {
        mtime()
    }

    fn schedule_wake(&self, at: u64, waker: &core::task::Waker) {
        // The executor loop reads the queue's next deadline before every sleep, so adding
        // a timer needs nothing else.
        critical_section::with(|cs| {
            self.queue.borrow(cs).borrow_mut().schedule_wake(at, waker);
        });
    }
}

embassy_time_driver::time_driver_impl!(static TIME: ClintTime = ClintTime {
    queue: Mutex::new(RefCell::new(Queue::new())),
});

// ---- the executor ----

/// Set by the executor when a task was woken: poll again before sleeping.
static PENDED: AtomicBool = AtomicBool::new(false);

#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDED.store(true, Ordering::Release);
}

/// Woken when the network device raises its interrupt (a frame arrived or one was sent).
pub static NET_WAKER: AtomicWaker = AtomicWaker::new();

/// The network device's interrupt: its PLIC source and its MMIO base (to acknowledge it).
static NET_IRQ: Mutex<Cell<Option<(u32, usize)>>> = Mutex::new(Cell::new(None));

/// Routes the virtio-mmio device at `base` (PLIC source `irq`) to [`NET_WAKER`].
pub fn enable_net_irq(irq: u32, base: usize) {
    critical_section::with(|cs| NET_IRQ.borrow(cs).set(Some((irq, base))));
    write32(PLIC + 4 * irq as usize, 1);
    write32(PLIC_ENABLE0 + 4 * (irq as usize / 32), 1 << (irq % 32));
    write32(PLIC_THRESHOLD0, 0);
}

/// Runs `executor` for ever: polls, fires due timers, sleeps in `wfi` until the next
/// deadline or the network device's interrupt, and counts the sleep.
pub fn run(executor: &'static embassy_executor::raw::Executor) -> ! {
    // mie: machine timer (MTIE, bit 7) and external (MEIE, bit 11). mstatus.MIE stays 0.
    // SAFETY: enabling wake-up sources; no trap is taken with MIE clear.
    unsafe { core::arch::asm!("csrs mie, {0}", in(reg) (1u32 << 7) | (1u32 << 11)) };
    loop {
        // SAFETY: one executor, polled from this loop only, never from an interrupt.
        unsafe { executor.poll() };
        let next = critical_section::with(|cs| {
            TIME.queue.borrow(cs).borrow_mut().next_expiration(mtime())
        });
        if PENDED.load(Ordering::Acquire) {
            PENDED.store(false, Ordering::Release);
            continue;
        }
        set_mtimecmp(next);
        let (i0, t0) = (instret(), mtime());
        // SAFETY: waits for a pending enabled interrupt; none is taken (MIE is clear).
        unsafe { core::arch::asm!("wfi") };
        let (t1, i1) = (mtime(), instret());
        critical_section::with(|cs| {
            let s = SLEPT_INSTRET.borrow(cs);
            s.set(s.get() + (i1 - i0));
            let t = SLEPT_TICKS.borrow(cs);
            t.set(t.get() + (t1 - t0));
        });
        service_external();
    }
}

fn service_external() {
    let mip: u32;
    // SAFETY: reading a CSR.
    unsafe { core::arch::asm!("csrr {0}, mip", out(reg) mip) };
    if mip & (1 << 11) == 0 {
        return;
    }
    let claimed = read32(PLIC_CLAIM0);
    if claimed == 0 {
        return;
    }
    if let Some((irq, base)) = critical_section::with(|cs| NET_IRQ.borrow(cs).get()) {
        if claimed == irq {
            // virtio-mmio InterruptStatus (0x60) acknowledged through InterruptACK (0x64):
            // the line drops, and the driver finds the used rings itself.
            let status = read32(base + 0x60);
            write32(base + 0x64, status);
            NET_WAKER.wake();
        }
    }
    write32(PLIC_CLAIM0, claimed);
}

// ---- heap ----

/// The heap MbedTLS allocates from (calloc/free through tinyrlibc): tessera and embassy-net
/// do not allocate.
pub const HEAP_SIZE: usize = 128 * 1024;

struct Tracking {
    heap: embedded_alloc::LlffHeap,
    peak: Mutex<Cell<usize>>,
}

// SAFETY: every call goes to the linked-list heap (itself a GlobalAlloc) unchanged; the
// bookkeeping only reads how much it has in use.
unsafe impl core::alloc::GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.heap.alloc(layout) };
        let used = self.heap.used();
        critical_section::with(|cs| {
            let peak = self.peak.borrow(cs);
            peak.set(peak.get().max(used));
        });
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: Tracking = Tracking {
    heap: embedded_alloc::LlffHeap::empty(),
    peak: Mutex::new(Cell::new(0)),
};

/// Gives the heap its memory; once, before anything allocates.
pub fn init_heap() {
    static mut MEMORY: [u8; HEAP_SIZE] = [0; HEAP_SIZE];
    // SAFETY: called once, first thing in main; MEMORY is used by the heap only.
    unsafe {
        HEAP.heap
            .init(core::ptr::addr_of_mut!(MEMORY) as usize, HEAP_SIZE)
    };
}

/// Bytes allocated now, and the most ever allocated at once.
pub fn heap_use() -> (usize, usize) {
    let used = HEAP.heap.used();
    (
        used,
        critical_section::with(|cs| HEAP.peak.borrow(cs).get()),
    )
}

/// Starts a new high-water mark from what is allocated now.
pub fn reset_heap_peak() {
    let used = HEAP.heap.used();
    critical_section::with(|cs| HEAP.peak.borrow(cs).set(used));
}

// ---- the stack ----
//
// Every task is polled on the one stack (embassy keeps each task's state in its static
// pool). The bottom WINDOW bytes of the stack are painted at boot; after each task's poll
// the executor's trace hook finds the lowest word that poll overwrote (scanning up from the
// window's bottom), charges that depth to the task and to the current step, and paints the
// region again. The hook's instructions are left out of the counts like the sleeps.

const PAINT: u32 = 0xC0FF_EE11;
/// How much of the stack is watched: far more than any poll needs; a poll that reaches the
/// bottom is reported as the whole window (a floor, not a measurement).
pub const WINDOW: usize = 128 * 1024;
/// Tasks tracked by name, in the order they are spawned.
pub const TASKS: [&str; 3] = [
    "main (scenarios, payment, clients)",
    "net (embassy-net runner)",
    "refresher (tessera-terminal)",
];

struct StackWatch {
    /// The stack pointer where the current step began (in the caller's poll).
    step_top: usize,
    /// The lowest address the current step reached.
    step_lowest: usize,
    /// Each task's id (its TaskRef address) and the lowest address it reached.
    tasks: [(u32, usize); 3],
    spawned: usize,
    /// minstret spent in the hook.
    hook_instret: u64,
}

static WATCH: Mutex<RefCell<StackWatch>> = Mutex::new(RefCell::new(StackWatch {
    step_top: 0,
    step_lowest: usize::MAX,
    tasks: [(0, usize::MAX); 3],
    spawned: 0,
    hook_instret: 0,
}));

fn stack_start() -> usize {
    extern "C" {
        static _stack_start: u8;
    }
    core::ptr::addr_of!(_stack_start) as usize
}

#[inline(always)]
fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mv {}, sp", out(reg) sp) };
    sp
}

/// Paints the watched window below the caller's frame; once, at boot, before any task runs.
#[inline(never)]
pub fn paint_stack() {
    repaint(stack_start() - WINDOW);
}

/// Paints from `from` up to just below this function's frame.
#[inline(never)]
fn repaint(from: usize) {
    let top = (stack_pointer() - 64) & !3;
    let mut a = from;
    while a < top {
        // SAFETY: [from, top) is free stack below this frame (the stack is 14 MiB).
        unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
        a += 4;
    }
}

/// The lowest overwritten word of the window.
#[inline(never)]
fn lowest_used() -> usize {
    let top = (stack_pointer() - 64) & !3;
    let mut a = stack_start() - WINDOW;
    // SAFETY: the watched window, below this frame.
    while a < top && unsafe { core::ptr::read_volatile(a as *const u32) } == PAINT {
        a += 4;
    }
    a
}

/// Starts a step: its stack figure counts from the caller's frame down.
#[inline(always)]
pub fn reset_stack_step() {
    let sp = stack_pointer();
    critical_section::with(|cs| {
        let mut w = WATCH.borrow(cs).borrow_mut();
        w.step_top = sp;
        w.step_lowest = usize::MAX;
    });
}

/// How deep the current step's own work went below the frame that started it (the client
/// call's stack, without the test harness's frames above it): the polls that ended, and
/// the one running now.
pub fn stack_high_water() -> usize {
    let now = lowest_used();
    let (top, lowest) = critical_section::with(|cs| {
        let w = WATCH.borrow(cs).borrow();
        (w.step_top, w.step_lowest)
    });
    top.saturating_sub(lowest.min(now))
}

/// Each task's deepest point so far, in bytes from the stack's start, by [`TASKS`] order.
pub fn task_stacks() -> [usize; 3] {
    let start = stack_start();
    critical_section::with(|cs| {
        let w = WATCH.borrow(cs).borrow();
        w.tasks
            .map(|(_, lowest)| start.saturating_sub(lowest.min(start)))
    })
}

fn hook_instret() -> u64 {
    critical_section::with(|cs| WATCH.borrow(cs).borrow().hook_instret)
}

#[unsafe(no_mangle)]
fn _embassy_trace_task_new(_executor: u32, task: u32) {
    critical_section::with(|cs| {
        let mut w = WATCH.borrow(cs).borrow_mut();
        let i = w.spawned;
        if let Some(slot) = w.tasks.get_mut(i) {
            slot.0 = task;
        }
        w.spawned += 1;
    });
}

#[unsafe(no_mangle)]
fn _embassy_trace_task_exec_end(_executor: u32, task: u32) {
    let i0 = instret();
    let lowest = lowest_used();
    repaint(lowest);
    critical_section::with(|cs| {
        let mut w = WATCH.borrow(cs).borrow_mut();
        w.step_lowest = w.step_lowest.min(lowest);
        if let Some(slot) = w.tasks.iter_mut().find(|(id, _)| *id == task) {
            slot.1 = slot.1.min(lowest);
        }
        w.hook_instret += instret() - i0;
    });
}

#[unsafe(no_mangle)]
fn _embassy_trace_poll_start(_executor: u32) {}
#[unsafe(no_mangle)]
fn _embassy_trace_task_end(_executor: u32, _task: u32) {}
#[unsafe(no_mangle)]
fn _embassy_trace_task_exec_begin(_executor: u32, _task: u32) {}
#[unsafe(no_mangle)]
fn _embassy_trace_task_ready_begin(_executor: u32, _task: u32) {}
#[unsafe(no_mangle)]
fn _embassy_trace_executor_idle(_executor: u32) {}

// ---- output and exit ----

pub use riscv_semihosting::hprintln as println;

/// tessera-embassy's and embassy-net's `log` lines, through semihosting.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        println!(
            "log {} {}: {}",
            record.level(),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Prints `log` records up to `level` (tessera-embassy never logs a secret or a token).
pub fn init_log(level: log::LevelFilter) {
    static LOGGER: Logger = Logger;
    // SAFETY: one hart and no interrupt handler: nothing runs concurrently with this.
    unsafe {
        let _ = log::set_logger_racy(&LOGGER);
        log::set_max_level_racy(level);
    }
}

/// Prints `prefix` and `bytes` in hex on one line.
pub fn print_hex(prefix: &str, bytes: &[u8]) {
    use core::fmt::Write as _;
    let mut line: heapless::String<128> = heapless::String::new();
    riscv_semihosting::hprint!("{}", prefix);
    for chunk in bytes.chunks(60) {
        line.clear();
        for b in chunk {
            let _ = write!(line, "{b:02x}");
        }
        riscv_semihosting::hprint!("{}", line);
    }
    println!();
}

/// Ends the emulator with a pass or a fail exit code.
pub fn exit(pass: bool) -> ! {
    use riscv_semihosting::debug;
    debug::exit(if pass {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC {}", info);
    exit(false)
}
