//! What the QEMU board supplies to the shared terminal application (tessera-terminal):
//! embassy-net's TCP client (counting the connections it opens), a static name table
//! instead of DNS (no query leaves the guest); and the scenarios' handle on the shared
//! application's client.

use core::cell::Cell;
use core::net::{IpAddr, SocketAddr};

use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::Stack;
use embedded_nal_async::{AddrType, Dns, TcpConnect};
use static_cell::StaticCell;
use tessera_core::TokenId;
use tessera_embassy::mbedtls::mbedtls_rs::TlsReference;
use tessera_embassy::mbedtls::Roots;
use tessera_embassy::{Error, Resources, Settings};
use tessera_terminal::{Config, SetupError};

/// Two sockets: a token fetch and a downstream call at once.
pub type Tcp = TcpClient<'static, 2, 4096, 4096>;

/// A TCP client that counts the connections it opens.
pub struct Counting<T> {
    inner: T,
    opened: Cell<u32>,
}

impl<T: TcpConnect> TcpConnect for Counting<T> {
    type Error = T::Error;
    type Connection<'a>
        = T::Connection<'a>
    where
        Self: 'a;

    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<Self::Connection<'a>, T::Error> {
        self.opened.set(self.opened.get() + 1);
        self.inner.connect(remote).await
    }
}

/// Names resolved from a fixed table: the server's name to its address.
pub struct StaticDns {
    name: &'static str,
    ip: IpAddr,
}

/// A name not in the table.
#[derive(Debug)]
pub struct Unknown;

impl Dns for StaticDns {
    type Error = Unknown;

    async fn get_host_by_name(&self, host: &str, _addr_type: AddrType) -> Result<IpAddr, Unknown> {
        if host.eq_ignore_ascii_case(self.name) {
            Ok(self.ip)
        } else {
            Err(Unknown)
        }
    }

    async fn get_host_by_address(
        &self,
        _addr: IpAddr,
        _result: &mut [u8],
    ) -> Result<usize, Unknown> {
        Err(Unknown)
    }
}

/// The network the clients share.
pub struct Net {
    /// TCP, counted.
    pub tcp: Counting<Tcp>,
    /// Names.
    pub dns: StaticDns,
}

/// The network on `stack`, with `name` resolving to `ip`.
pub fn net(stack: Stack<'static>, name: &'static str, ip: IpAddr) -> &'static Net {
    static STATE: StaticCell<TcpClientState<2, 4096, 4096>> = StaticCell::new();
    static NET: StaticCell<Net> = StaticCell::new();
    NET.init(Net {
        tcp: Counting {
            inner: TcpClient::new(stack, STATE.init(TcpClientState::new())),
            opened: Cell::new(0),
        },
        dns: StaticDns { name, ip },
    })
}

/// `host` through the name table.
pub fn resolve(net: &Net, host: &str) -> Option<IpAddr> {
    host.eq_ignore_ascii_case(net.dns.name)
        .then_some(net.dns.ip)
}

/// The shared terminal client on the QEMU network.
pub type Tessera<'r> = tessera_terminal::Tessera<'r, Counting<Tcp>, StaticDns>;

/// A client and what the scenarios read from it.
pub struct Terminal<'r> {
    /// The client.
    pub client: Tessera<'r>,
    net: &'r Net,
    last: Cell<Option<TokenId>>,
}

impl<'r> Terminal<'r> {
    /// The shared application's client for `config`, with `settings`, on the given buffers.
    pub fn new(
        net: &'r Net,
        tls: TlsReference<'r>,
        roots: Roots<'r>,
        config: &Config<'r>,
        settings: Settings,
        resources: &'r mut Resources,
        rng: &mut impl rand_core::RngCore,
    ) -> Result<Terminal<'r>, SetupError> {
        let client = tessera_terminal::build(
            config,
            &net.tcp,
            &net.dns,
            (tls, roots),
            settings,
            resources,
            rng,
        )?;
        Ok(Terminal {
            client,
            net,
            last: Cell::new(None),
        })
    }

    /// Connections opened so far on the shared network (every client's).
    pub fn connections(&self) -> u32 {
        self.net.tcp.opened.get()
    }

    /// A token (its text is not kept).
    pub async fn token(&self) -> Result<(), Error> {
        let mut out = [0u8; 2048];
        let t = self.client.token(&mut out).await?;
        self.last.set(Some(t.id()));
        out.fill(0);
        Ok(())
    }

    /// Rejects the last token served, so the next `token()` fetches a new one.
    pub fn force_refresh(&self) {
        if let Some(id) = self.last.get() {
            self.client.reject(id);
        }
    }
}
