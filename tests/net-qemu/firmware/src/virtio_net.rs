//! QEMU's `virtio-net-device` (virtio-mmio) as an embassy-net device: virtio-drivers'
//! `VirtIONetRaw` (no alloc) behind `embassy_net_driver::Driver`, with its own receive and
//! transmit buffers. Legacy (version 1) and modern (version 2) transports both work; the
//! header length follows what was negotiated.
//!
//! The device's interrupt wakes the driver through [`platform::NET_WAKER`]: embassy-net's
//! runner asks for a frame, finds none, registers its waker and sleeps until the device
//! says a used ring moved.

use core::cell::RefCell;
use core::ptr::NonNull;
use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use crate::platform;

/// `virt`'s eight virtio-mmio slots.
const MMIO_BASE: usize = 0x1000_1000;
const MMIO_STRIDE: usize = 0x1000;
const MMIO_SLOTS: usize = 8;
/// Descriptors per queue.
const QUEUE: usize = 16;
/// Frames in flight each way.
const RX_BUFS: usize = 8;
const TX_BUFS: usize = 4;
/// An Ethernet frame (1514) plus the largest virtio-net header (12).
const BUF: usize = 1536;
const MTU: usize = 1514;

/// Identity-mapped DMA on bare metal: the device sees physical addresses, which here are
/// the addresses the program uses. Queue memory comes from a static pool and is never
/// given back (the device lives as long as the program).
struct DmaHal;

/// Pages for the two queues' rings: they take 4 (legacy or modern, 16 descriptors each);
/// twice that, for a device that asks for more.
const DMA_PAGES: usize = 8;
#[repr(C, align(4096))]
struct Pages([u8; DMA_PAGES * PAGE_SIZE]);
static mut DMA_POOL: Pages = Pages([0; DMA_PAGES * PAGE_SIZE]);
static DMA_NEXT: critical_section::Mutex<core::cell::Cell<usize>> =
    critical_section::Mutex::new(core::cell::Cell::new(0));

// SAFETY: addresses are identity-mapped; every page handed out is used by one queue only
// and zeroed; share/unshare need no copy or cache maintenance (QEMU is coherent).
unsafe impl Hal for DmaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let start = critical_section::with(|cs| {
            let next = DMA_NEXT.borrow(cs);
            let start = next.get();
            next.set(start + pages);
            start
        });
        assert!(start + pages <= DMA_PAGES, "virtio DMA pool exhausted");
        let base = core::ptr::addr_of_mut!(DMA_POOL) as usize + start * PAGE_SIZE;
        // SAFETY: [base, base + pages pages) is in the pool and was handed out to no one.
        unsafe { core::ptr::write_bytes(base as *mut u8, 0, pages * PAGE_SIZE) };
        (base as PhysAddr, NonNull::new(base as *mut u8).unwrap())
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).unwrap()
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// The transport's version register (1 legacy, 2 modern).
fn raw_version(base: usize) -> u32 {
    // SAFETY: the version register of a slot `virt` maps.
    unsafe { core::ptr::read_volatile((base + 0x004) as *const u32) }
}

type Raw = VirtIONetRaw<DmaHal, MmioTransport<'static>, QUEUE>;

struct RxSlot {
    buf: [u8; BUF],
    /// The device's token while the buffer is queued.
    token: Option<u16>,
    /// (header, frame) lengths once the device filled it.
    filled: Option<(usize, usize)>,
}

struct TxSlot {
    buf: [u8; BUF],
    /// The device's token and the bytes queued, while in flight.
    sending: Option<(u16, usize)>,
}

/// The buffers, in a static (they are 18 KiB).
pub struct Buffers {
    rx: [RxSlot; RX_BUFS],
    tx: [TxSlot; TX_BUFS],
}

impl Buffers {
    /// Empty buffers.
    pub const fn new() -> Self {
        const RX: RxSlot = RxSlot {
            buf: [0; BUF],
            token: None,
            filled: None,
        };
        const TX: TxSlot = TxSlot {
            buf: [0; BUF],
            sending: None,
        };
        Buffers {
            rx: [RX; RX_BUFS],
            tx: [TX; TX_BUFS],
        }
    }
}

/// The device, ready for `embassy_net::new`.
pub struct VirtioNet {
    raw: RefCell<Raw>,
    bufs: &'static mut Buffers,
    mac: [u8; 6],
}

/// Why there is no network device.
#[derive(Debug)]
pub enum NoDevice {
    /// No virtio-mmio slot holds a network device.
    NotFound,
    /// virtio-drivers refused it (its `log` lines say why).
    Driver,
}

impl VirtioNet {
    /// Finds the first virtio network device on `virt`'s MMIO slots, brings it up with all
    /// receive buffers queued, and routes its interrupt to the executor.
    pub fn probe(bufs: &'static mut Buffers) -> Result<Self, NoDevice> {
        for slot in 0..MMIO_SLOTS {
            let base = MMIO_BASE + slot * MMIO_STRIDE;
            let header = NonNull::new(base as *mut VirtIOHeader).unwrap();
            // SAFETY: `virt` maps a 0x200-byte virtio-mmio region at each slot, for ever;
            // this is the only transport made for it.
            let Ok(transport) = (unsafe { MmioTransport::new(header, 0x200) }) else {
                continue;
            };
            if transport.device_type() != DeviceType::Network {
                continue;
            }
            let mut raw = Raw::new(transport).map_err(|_| NoDevice::Driver)?;
            let mac = raw.mac_address();
            for rx in bufs.rx.iter_mut() {
                // SAFETY: the buffer lives in a static and is touched again only after the
                // device gives it back (poll_receive names its token).
                rx.token =
                    Some(unsafe { raw.receive_begin(&mut rx.buf) }.map_err(|_| NoDevice::Driver)?);
            }
            raw.enable_interrupts();
            log::debug!(
                "virtio-net: {:?} transport, {} DMA pages",
                raw_version(base),
                critical_section::with(|cs| DMA_NEXT.borrow(cs).get())
            );
            platform::enable_net_irq(slot as u32 + 1, base);
            return Ok(VirtioNet {
                raw: RefCell::new(raw),
                bufs,
                mac,
            });
        }
        Err(NoDevice::NotFound)
    }

    /// Takes back every finished transmission's buffer.
    fn reap_tx(&mut self) {
        let mut raw = self.raw.borrow_mut();
        while let Some(token) = raw.poll_transmit() {
            let Some(slot) = self
                .bufs
                .tx
                .iter_mut()
                .find(|s| matches!(s.sending, Some((t, _)) if t == token))
            else {
                break;
            };
            let (_, len) = slot.sending.take().unwrap();
            // SAFETY: the same buffer and length transmit_begin was given for this token.
            let _ = unsafe { raw.transmit_complete(token, &slot.buf[..len]) };
        }
    }

    /// Moves the next received frame out of the used ring into its slot.
    fn take_rx(&mut self) -> Option<usize> {
        if let Some(i) = self.bufs.rx.iter().position(|s| s.filled.is_some()) {
            return Some(i);
        }
        let mut raw = self.raw.borrow_mut();
        let token = raw.poll_receive()?;
        let i = self.bufs.rx.iter().position(|s| s.token == Some(token))?;
        let slot = &mut self.bufs.rx[i];
        slot.token = None;
        // SAFETY: the buffer receive_begin was given for this token.
        match unsafe { raw.receive_complete(token, &mut slot.buf) } {
            Ok(lengths) => slot.filled = Some(lengths),
            Err(_) => {
                // A frame the device could not describe: queue the buffer again.
                // SAFETY: as in probe.
                slot.token = unsafe { raw.receive_begin(&mut slot.buf) }.ok();
                return None;
            }
        }
        Some(i)
    }

    fn free_tx(&self) -> Option<usize> {
        self.bufs.tx.iter().position(|s| s.sending.is_none())
    }
}

/// A received frame.
pub struct Rx<'a> {
    raw: &'a RefCell<Raw>,
    slot: &'a mut RxSlot,
}

/// Room for one frame to send.
pub struct Tx<'a> {
    raw: &'a RefCell<Raw>,
    slot: &'a mut TxSlot,
}

impl embassy_net_driver::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        let (header, len) = self.slot.filled.take().unwrap_or((0, 0));
        let r = f(&mut self.slot.buf[header..header + len]);
        // SAFETY: as in probe: the buffer goes back to the device until it returns it.
        self.slot.token = unsafe { self.raw.borrow_mut().receive_begin(&mut self.slot.buf) }.ok();
        r
    }
}

impl embassy_net_driver::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut raw = self.raw.borrow_mut();
        let header = raw.fill_buffer_header(&mut self.slot.buf).unwrap_or(0);
        let len = len.min(BUF - header);
        let r = f(&mut self.slot.buf[header..header + len]);
        let total = header + len;
        // SAFETY: the buffer is not touched until poll_transmit returns its token.
        if let Ok(token) = unsafe { raw.transmit_begin(&self.slot.buf[..total]) } {
            self.slot.sending = Some((token, total));
        }
        r
    }
}

impl embassy_net_driver::Driver for VirtioNet {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, cx: &mut Context) -> Option<(Rx<'_>, Tx<'_>)> {
        platform::NET_WAKER.register(cx.waker());
        self.reap_tx();
        let tx = self.free_tx()?;
        let rx = self.take_rx()?;
        let bufs = &mut *self.bufs;
        let rx_slot = &mut bufs.rx[rx];
        let tx_slot = &mut bufs.tx[tx];
        Some((
            Rx {
                raw: &self.raw,
                slot: rx_slot,
            },
            Tx {
                raw: &self.raw,
                slot: tx_slot,
            },
        ))
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<Tx<'_>> {
        platform::NET_WAKER.register(cx.waker());
        self.reap_tx();
        let tx = self.free_tx()?;
        Some(Tx {
            raw: &self.raw,
            slot: &mut self.bufs.tx[tx],
        })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(TX_BUFS);
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
