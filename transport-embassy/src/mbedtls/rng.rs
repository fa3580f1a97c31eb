//! The boards' HALs implement rand_core 0.9; mbedtls-rs 0.3 takes a rand_core 0.10 RNG.

use core::convert::Infallible;
use core::fmt;

/// A rand_core 0.9 cryptographic RNG (esp-hal's `Trng`, embassy-rp's `Trng`) as the
/// rand_core 0.10 one `mbedtls_rs::Tls::new` takes. Only a 0.9 `CryptoRng` converts: a plain
/// `RngCore` does not type-check. MbedTLS draws every random byte from it directly, so it
/// must be a real CSPRNG (a TRNG, or a ChaCha seeded from one).
pub struct Rng09<R>(pub R);

impl<R: rand_core::RngCore> rand_core_010::TryRng for Rng09<R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: rand_core::CryptoRng> rand_core_010::TryCryptoRng for Rng09<R> {}

impl<R> fmt::Debug for Rng09<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rng09(..)")
    }
}
