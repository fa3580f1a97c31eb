//! A stack with a fixed pool of sockets (as embassy-net's `TcpClient` has): connections kept
//! for one origin must not starve a request to another. With one socket, kept for the token
//! host, a call to the API host closes it and connects.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embedded_nal_async::TcpConnect;
use std_embedded_nal_async::Stack;
use tessera_core::{AnyProvider, Credentials, ProviderKind};
use tessera_embassy::{ApiRequest, CallBuffers, Client, Plain, Resources, Settings};
use tessera_sandbox::{Endpoint, Sandbox, CLIENT_ID, CLIENT_SECRET};

mod common;
use common::TestRng;

/// `std-embedded-nal-async` with at most `max` connections alive at once; one more fails as
/// embassy-net's pool does (a connection error).
struct Limited {
    inner: Stack,
    live: Arc<AtomicUsize>,
    max: usize,
}

struct Counted<C> {
    conn: C,
    live: Arc<AtomicUsize>,
}

impl<C> Drop for Counted<C> {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<C: embedded_io_async::ErrorType> embedded_io_async::ErrorType for Counted<C> {
    type Error = C::Error;
}

impl<C: embedded_io_async::Read> embedded_io_async::Read for Counted<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.conn.read(buf).await
    }
}

impl<C: embedded_io_async::Write> embedded_io_async::Write for Counted<C> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.conn.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.conn.flush().await
    }
}

impl TcpConnect for Limited {
    type Error = <Stack as TcpConnect>::Error;
    type Connection<'a> = Counted<<Stack as TcpConnect>::Connection<'a>>;

    async fn connect<'a>(
        &'a self,
        remote: SocketAddr,
    ) -> Result<Self::Connection<'a>, Self::Error> {
        if self.live.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.live.fetch_sub(1, Ordering::SeqCst);
            return Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory));
        }
        match self.inner.connect(remote).await {
            Ok(conn) => Ok(Counted {
                conn,
                live: Arc::clone(&self.live),
            }),
            Err(e) => {
                self.live.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

#[test]
fn kept_connections_give_their_socket_to_another_origin() {
    let token_host = Sandbox::start().unwrap();
    let api = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let stack: &'static Limited = Box::leak(Box::new(Limited {
        inner: Stack::default(),
        live: Arc::default(),
        max: 1,
    }));
    let dns: &'static Stack = Box::leak(Box::default());
    let base: &'static str = Box::leak(token_host.base_url(kind).into_boxed_str());
    let resources: &'static mut Resources = Box::leak(Box::default());
    let settings = Settings {
        timeout: embassy_time::Duration::from_secs(5),
        ..Settings::default()
    };
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap();
    let c: Client<'_, NoopRawMutex, _, _> = Client::builder(
        AnyProvider::new(kind, base),
        creds,
        Plain::new(stack, dns),
        resources,
        &mut TestRng(3),
    )
    .settings(settings)
    .build();
    // Any answer but a 401: the API host's sandbox does not know the token host's tokens.
    let url = format!("{}/nothing-here", api.origin());
    let status = async_io::block_on(async {
        let mut out = [0u8; 2048];
        c.token(&mut out).await.unwrap();
        assert_eq!(
            stack.live.load(Ordering::SeqCst),
            1,
            "the token host's connection is kept"
        );
        let mut buffers: Box<CallBuffers> = Box::default();
        c.call(ApiRequest::get(&url), &mut buffers)
            .await
            .map(|r| r.status())
    });
    assert_eq!(status, Ok(404), "the kept socket was given to the API host");
    assert_eq!(token_host.count(Endpoint::Token(kind)), 1);
    assert_eq!(api.wire().connections, 1);
    assert_eq!(
        stack.live.load(Ordering::SeqCst),
        1,
        "the API host's connection is kept"
    );
}

/// `Settings::kept_connections = 0` keeps none: every request opens a connection, and no
/// socket stays held between them.
#[test]
fn keeping_can_be_turned_off() {
    let sb = Sandbox::start().unwrap();
    let kind = ProviderKind::OAuth2;
    let stack: &'static Limited = Box::leak(Box::new(Limited {
        inner: Stack::default(),
        live: Arc::default(),
        max: 8,
    }));
    let dns: &'static Stack = Box::leak(Box::default());
    let base: &'static str = Box::leak(sb.base_url(kind).into_boxed_str());
    let resources: &'static mut Resources = Box::leak(Box::default());
    let settings = Settings {
        timeout: embassy_time::Duration::from_secs(5),
        kept_connections: 0,
        ..Settings::default()
    };
    let creds = Credentials::new(CLIENT_ID, CLIENT_SECRET).unwrap();
    let c: Client<'_, NoopRawMutex, _, _> = Client::builder(
        AnyProvider::new(kind, base),
        creds,
        Plain::new(stack, dns),
        resources,
        &mut TestRng(3),
    )
    .settings(settings)
    .build();
    let url = sb.protected_url(kind);
    async_io::block_on(async {
        let mut buffers: Box<CallBuffers> = Box::default();
        for _ in 0..3 {
            let r = c.call(ApiRequest::get(&url), &mut buffers).await.unwrap();
            assert_eq!((r.status(), r.connection().reused), (200, false));
            assert_eq!(stack.live.load(Ordering::SeqCst), 0, "nothing kept");
        }
    });
    assert_eq!(sb.wire().connections, 4, "the token fetch and three calls");
    let w = c.wire_stats();
    assert_eq!((w.connections, w.reused), (4, 0), "{w:?}");
}
