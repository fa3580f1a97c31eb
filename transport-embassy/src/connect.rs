//! Where a URL points, and the TCP connection to it: the host the core checked is the host
//! resolved and connected to, `localhost` is loopback without a lookup, and every failure
//! is classified (`dns`, `connect`).

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use embedded_nal_async::{AddrType, Dns, TcpConnect};
use tessera_core::transport::{parse_url, Target};
use tessera_core::{Stage, TransportError};

use crate::error::Fault;

/// The URL as the core parses it ([`parse_url`]): the host, port, path and query the
/// core's checks read are what is resolved, connected to and sent. A URL the core refuses
/// (user info, a `%`-escape or a stray character in the host, a bad port…) is refused here
/// before any lookup, as [`Error::Url`](tessera_core::Error::Url).
pub(crate) fn target(url: &str) -> Result<Target<'_>, Fault> {
    parse_url(url).map_err(Fault::Local)
}

/// The TLS server name (SNI and the certificate's name): the host, an IPv6 literal without
/// its brackets.
#[cfg_attr(not(any(feature = "tls", feature = "mbedtls")), allow(dead_code))]
pub(crate) fn server_name<'a>(to: &Target<'a>) -> &'a str {
    to.host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(to.host)
}

const NO_NAME: TransportError = TransportError::new(Stage::Dns, "the host name did not resolve");

/// The address of `host`: an IP literal as is, `localhost` and `*.localhost` as 127.0.0.1
/// (RFC 6761: never sent to the network's DNS server), any other name through `dns`.
pub(crate) async fn resolve<D: Dns>(dns: &D, to: &Target<'_>) -> Result<IpAddr, TransportError> {
    if let Some(ip) = to.ip() {
        return Ok(ip);
    }
    if to.is_loopback() {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    dns.get_host_by_name(to.host, AddrType::Either)
        .await
        .map_err(|_| NO_NAME)
}

/// A TCP connection to `to`'s host and port.
pub(crate) async fn connect<'t, T: TcpConnect, D: Dns>(
    tcp: &'t T,
    dns: &D,
    to: &Target<'_>,
) -> Result<T::Connection<'t>, TransportError> {
    let ip = resolve(dns, to).await?;
    tcp.connect(SocketAddr::new(ip, to.port))
        .await
        .map_err(|e| match embedded_io::Error::kind(&e) {
            embedded_io::ErrorKind::ConnectionRefused => {
                TransportError::new(Stage::Connect, "connection refused")
            }
            embedded_io::ErrorKind::TimedOut => {
                TransportError::new(Stage::Timeout, "connect timed out")
            }
            _ => TransportError::new(Stage::Connect, "could not connect"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::convert::Infallible;

    /// A resolver that answers every name with 10.9.9.9 and counts the questions.
    struct Counting(core::cell::Cell<u32>);

    impl Dns for Counting {
        type Error = Infallible;

        async fn get_host_by_name(&self, _: &str, _: AddrType) -> Result<IpAddr, Infallible> {
            self.0.set(self.0.get() + 1);
            Ok(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)))
        }

        async fn get_host_by_address(&self, _: IpAddr, _: &mut [u8]) -> Result<usize, Infallible> {
            Ok(0)
        }
    }

    fn resolved(url: &str) -> (IpAddr, u32) {
        let dns = Counting(core::cell::Cell::new(0));
        let to = target(url).unwrap();
        let ip = embassy_futures::block_on(resolve(&dns, &to)).unwrap();
        (ip, dns.0.get())
    }

    #[test]
    fn the_host_the_core_checked_is_the_host_connected_to() {
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // The fragment is not part of the host: no name is looked up.
        assert_eq!(resolved("http://127.0.0.1#.attacker.example/"), (local, 0));
        // localhost is loopback without asking the LAN's DNS server.
        assert_eq!(resolved("http://localhost:8080/token"), (local, 0));
        assert_eq!(resolved("http://api.localhost/token"), (local, 0));
        assert_eq!(resolved("http://[::1]:9/t").1, 0);
        assert_eq!(
            resolved("https://api.example/v1"),
            (IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), 1)
        );
        for bad in [
            "http://user:pw@localhost/",
            "http://127.0.0.1\\.attacker.example/",
            "http://127.1/",
            "http://api%2eexample/",
            "ftp://localhost/",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
        let to = target("https://[::1]:8443/x").unwrap();
        assert_eq!(server_name(&to), "::1");
    }
}
