//! The little platform layer the test firmware needs on QEMU: printing and exiting through
//! semihosting, the stack pointer, and paint-and-scan stack measurement.
//!
//! This is test equipment, not library code: it is where the `unsafe` lives (volatile
//! access to the unused stack). `tessera-core` itself has none.
#![no_std]

// The runtimes' critical-section implementations (semihosting output takes a lock).
#[cfg(target_arch = "arm")]
use cortex_m as _;
#[cfg(target_arch = "riscv32")]
use riscv as _;

#[cfg(target_arch = "arm")]
pub use cortex_m_semihosting::hprintln as println;
#[cfg(target_arch = "riscv32")]
pub use riscv_semihosting::hprintln as println;

/// Ends the emulator with a pass or a fail exit code.
pub fn exit(pass: bool) -> ! {
    #[cfg(target_arch = "arm")]
    {
        use cortex_m_semihosting::debug;
        debug::exit(if pass {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
    }
    #[cfg(target_arch = "riscv32")]
    {
        use riscv_semihosting::debug;
        debug::exit(if pass {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
    }
    #[allow(clippy::empty_loop)]
    loop {}
}

/// The current stack pointer.
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    #[cfg(target_arch = "arm")]
    unsafe {
        core::arch::asm!("mov {}, sp", out(reg) sp);
    }
    #[cfg(target_arch = "riscv32")]
    unsafe {
        core::arch::asm!("mv {}, sp", out(reg) sp);
    }
    sp
}

/// The lowest address the stack may grow to (the end of static data).
pub fn stack_floor() -> usize {
    extern "C" {
        static __sheap: u8;
    }
    core::ptr::addr_of!(__sheap) as usize
}

const PAINT: u32 = 0xC0FF_EE11;
/// Bytes below the measuring frame left unpainted (this function's own calls).
const MARGIN: usize = 64;

/// Peak stack used by `f`, in bytes: the stack below this frame is painted with a pattern,
/// `f` runs, and the lowest overwritten word marks its deepest point. Exact to 4 bytes;
/// anything under the 64-byte margin reads as 64.
#[inline(never)]
pub fn peak_stack<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let sp = stack_pointer();
    let top = (sp - MARGIN) & !3;
    let floor = (stack_floor() + 3) & !3;
    let mut a = floor;
    while a < top {
        // SAFETY: [floor, top) is free stack below this frame, and nothing else runs.
        unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
        a += 4;
    }
    let r = core::hint::black_box(f());
    let mut lowest = floor;
    // SAFETY: the same region, read back.
    while lowest < top && unsafe { core::ptr::read_volatile(lowest as *const u32) } == PAINT {
        lowest += 4;
    }
    (sp - lowest, r)
}

/// Which core this is, for the report.
pub const CPU: &str = if cfg!(target_arch = "arm") {
    "Cortex-M0 (thumbv6m, QEMU microbit)"
} else {
    "RISC-V rv32imc (QEMU virt)"
};
