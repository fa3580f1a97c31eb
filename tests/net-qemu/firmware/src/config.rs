//! The run's configuration, as data the host loads into guest memory before the core
//! starts (`-device loader,file=…,addr=0x80f00000`): one firmware image serves every run,
//! the sandbox suite and any loopback endpoint, with no rebuild.
//!
//! Format: `TNQ1`, then records `name\0`, a little-endian u32 length, that many bytes; a
//! record named `end` closes it. The host writes it (tests/net-qemu/host); the last MiB of
//! the 16 MiB the image is linked into is kept for it (memory.x).

/// Where the host puts the configuration.
const ADDR: usize = 0x80F0_0000;
/// At most this much is read.
const MAX: usize = 1024 * 1024;

/// The loaded configuration.
#[derive(Clone, Copy)]
pub struct Config {
    bytes: &'static [u8],
}

impl Config {
    /// The configuration the host loaded, or `None` when there is none (no magic).
    pub fn load() -> Option<Config> {
        // SAFETY: the region is RAM on `virt` (128 MiB from 0x8000_0000), outside every
        // section of the image (memory.x), written only by the host before start and only
        // read afterwards.
        let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(ADDR as *const u8, MAX) };
        (bytes.starts_with(b"TNQ1")).then_some(Config { bytes: &bytes[4..] })
    }

    /// Every record, in order.
    pub fn records(&self) -> impl Iterator<Item = (&'static str, &'static [u8])> {
        let mut rest = self.bytes;
        core::iter::from_fn(move || {
            let nul = rest.iter().position(|&b| b == 0)?;
            let name = core::str::from_utf8(&rest[..nul]).ok()?;
            if name == "end" {
                return None;
            }
            let len = u32::from_le_bytes(rest.get(nul + 1..nul + 5)?.try_into().ok()?) as usize;
            let value = rest.get(nul + 5..nul + 5 + len)?;
            rest = &rest[nul + 5 + len..];
            Some((name, value))
        })
    }

    /// The first record named `name`.
    pub fn get(&self, name: &str) -> Option<&'static [u8]> {
        self.records().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The first record named `name`, as text.
    pub fn str(&self, name: &str) -> Option<&'static str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }
}
