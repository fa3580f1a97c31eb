//! A test PKI for the TLS matrix: RSA and ECDSA roots, intermediates and leaves minted at
//! start-up with rcgen, the certificate shapes both transports must connect to or refuse
//! ([`matrix`]), and [`Sandbox::start_tls_with`] serving any of them over the TLS versions
//! a case asks for.
//!
//! ring cannot generate RSA keys, so the RSA keys are fixtures (`fixtures/rsa/*.pem`, made
//! once with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:N`); the
//! certificates are minted fresh at every run, the ECDSA keys too.
//!
//! Host names end in `.localhost` ([`HOST`], [`OTHER`]): tessera-std maps `*.localhost` to
//! loopback itself, and the embassy tests resolve them with a resolver that answers
//! 127.0.0.1, so no name is ever looked up on the network.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{version, ServerConfig, SupportedProtocolVersion};

use crate::Sandbox;

/// The host the matrix's certificates are made for.
pub const HOST: &str = "api.tessera.localhost";
/// Another host: certificates that name it are not valid for [`HOST`].
pub const OTHER: &str = "other.tessera.localhost";

/// A server's certificate chain (leaf first, then the intermediates it sends) and the
/// leaf's private key.
pub struct Chain {
    /// Leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Chain {
    fn clone(&self) -> Self {
        Chain {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Chain {
    /// Bytes of certificates the server sends.
    pub fn wire_len(&self) -> usize {
        self.certs.iter().map(|c| c.len()).sum()
    }
}

/// The TLS versions a sandbox speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 only.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
    /// Both (the client's choice: 1.3 when it can).
    Both,
}

impl Versions {
    fn rustls(self) -> &'static [&'static SupportedProtocolVersion] {
        static V12: [&SupportedProtocolVersion; 1] = [&version::TLS12];
        static V13: [&SupportedProtocolVersion; 1] = [&version::TLS13];
        static BOTH: [&SupportedProtocolVersion; 2] = [&version::TLS13, &version::TLS12];
        match self {
            Versions::Tls12 => &V12,
            Versions::Tls13 => &V13,
            Versions::Both => &BOTH,
        }
    }
}

impl Sandbox {
    /// Starts an HTTPS sandbox on a free port on 127.0.0.1 that presents `chain` and speaks
    /// only `versions` (see [`matrix`] for ready-made chains).
    pub fn start_tls_with(chain: &Chain, versions: Versions) -> io::Result<Sandbox> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions.rustls())
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(chain.certs.clone(), chain.key.clone_key())
            .map_err(io::Error::other)?;
        Sandbox::start_inner(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(Arc::new(config)),
        )
    }
}

/// An RSA key from the fixtures (`name`: `r2048_root`, `r2048_inter`, `r2048_leaf`,
/// `r4096_root`, `r4096_i1`..`r4096_i3`, `r4096_leaf`).
pub fn rsa_key(name: &str) -> KeyPair {
    let path = format!("{}/fixtures/rsa/{name}.pem", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fresh ECDSA P-256 key.
pub fn ec_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

fn key_der(k: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()))
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2045, 1, 1);
    p
}

/// A self-signed root CA named `cn`.
pub fn root(cn: &str, key: KeyPair) -> CertifiedIssuer<'static, KeyPair> {
    CertifiedIssuer::self_signed(ca_params(cn), key).expect("root")
}

/// An intermediate CA named `cn`, signed by `by`.
pub fn intermediate(
    cn: &str,
    key: KeyPair,
    by: &Issuer<'_, KeyPair>,
) -> CertifiedIssuer<'static, KeyPair> {
    CertifiedIssuer::signed_by(ca_params(cn), key, by).expect("intermediate")
}

/// What a leaf certificate says.
#[derive(Clone, Debug)]
pub struct LeafSpec<'a> {
    /// subjectAltName dNSNames (none: no SAN extension at all).
    pub sans: &'a [&'a str],
    /// The subject's common name (none: an empty subject).
    pub cn: Option<&'a str>,
    /// notBefore (year, month, day).
    pub from: (i32, u8, u8),
    /// notAfter.
    pub to: (i32, u8, u8),
}

impl Default for LeafSpec<'_> {
    /// SAN = [`HOST`], no CN, valid from 2025 to 2045.
    fn default() -> Self {
        LeafSpec {
            sans: &[HOST],
            cn: None,
            from: (2025, 6, 1),
            to: (2045, 1, 1),
        }
    }
}

fn leaf_params(s: &LeafSpec<'_>) -> CertificateParams {
    let names: Vec<String> = s.sans.iter().map(|n| n.to_string()).collect();
    let mut p = CertificateParams::new(names).expect("leaf names");
    let mut dn = DistinguishedName::new();
    if let Some(cn) = s.cn {
        dn.push(DnType::CommonName, cn);
    }
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = date_time_ymd(s.from.0, s.from.1, s.from.2);
    p.not_after = date_time_ymd(s.to.0, s.to.1, s.to.2);
    p
}

/// A leaf for `spec` with `key`, signed by `by`, sent with `intermediates` (leaf-most
/// first).
pub fn chain(
    spec: &LeafSpec<'_>,
    key: KeyPair,
    by: &Issuer<'_, KeyPair>,
    intermediates: &[&CertificateDer<'static>],
) -> Chain {
    let leaf = leaf_params(spec).signed_by(&key, by).expect("leaf");
    let mut certs = vec![leaf.der().clone()];
    certs.extend(intermediates.iter().map(|c| (*c).clone()));
    Chain {
        certs,
        key: key_der(&key),
    }
}

/// A leaf for `spec` that signs itself.
pub fn self_signed(spec: &LeafSpec<'_>, key: KeyPair) -> Chain {
    let leaf = leaf_params(spec)
        .self_signed(&key)
        .expect("self-signed leaf");
    Chain {
        certs: vec![leaf.der().clone()],
        key: key_der(&key),
    }
}

/// What a transport must do with a [`Case`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Complete the handshake and fetch the token.
    Connect,
    /// Refuse in the handshake (cause `tls`), before any HTTP request.
    Refuse,
    /// Accepted by MbedTLS, refused by rustls: a certificate with no subjectAltName whose
    /// common name names the host (MbedTLS falls back to the CN; documented).
    CnFallback,
}

/// One shape of the matrix.
#[derive(Clone)]
pub struct Case {
    /// What it is, for messages.
    pub name: &'static str,
    /// What the server presents.
    pub chain: Chain,
    /// What the server speaks.
    pub versions: Versions,
    /// What a client must do.
    pub expect: Expect,
    /// The outcome depends on certificate dates (a client without a wall clock cannot
    /// refuse it).
    pub dated: bool,
}

/// The whole matrix: the roots a client trusts (PEM, several certificates) and every case.
pub struct Matrix {
    /// The trusted roots, one PEM bundle: RSA-2048, ECDSA P-256 and RSA-4096.
    pub roots_pem: String,
    /// The cases, connections first.
    pub cases: Vec<Case>,
}

/// Mints the matrix. Every leaf is for [`HOST`] unless the case says otherwise.
///
/// Must connect: RSA-2048 with an intermediate and the host only in SAN (no CN) over TLS
/// 1.2 and over 1.3; ECDSA P-256 whose CN names another host and whose SAN names this one
/// (1.3 and 1.2); RSA-4096 with three intermediates (a chain over 4 KiB, 1.3 and 1.2); a
/// wildcard SAN; a server that speaks both versions. Must refuse: SAN names another host
/// while CN names this one; an untrusted root; an expired leaf; a not-yet-valid leaf; a
/// self-signed leaf; a leaf sent without its intermediate.
pub fn matrix() -> Matrix {
    let root_rsa = root("Tessera Test Root RSA-2048", rsa_key("r2048_root"));
    let inter_rsa = intermediate(
        "Tessera Test Intermediate RSA-2048",
        rsa_key("r2048_inter"),
        &root_rsa,
    );
    let root_ec = root("Tessera Test Root P-256", ec_key());
    let inter_ec = intermediate("Tessera Test Intermediate P-256", ec_key(), &root_ec);
    let root_4k = root("Tessera Test Root RSA-4096", rsa_key("r4096_root"));
    let i1 = intermediate(
        "Tessera RSA-4096 Intermediate 1",
        rsa_key("r4096_i1"),
        &root_4k,
    );
    let i2 = intermediate("Tessera RSA-4096 Intermediate 2", rsa_key("r4096_i2"), &i1);
    let i3 = intermediate("Tessera RSA-4096 Intermediate 3", rsa_key("r4096_i3"), &i2);
    let rogue = root("Rogue Root (not trusted)", ec_key());
    let rogue_inter = intermediate("Rogue Intermediate", ec_key(), &rogue);

    let d = LeafSpec::default;
    let rsa =
        |spec: &LeafSpec<'_>| chain(spec, rsa_key("r2048_leaf"), &inter_rsa, &[inter_rsa.der()]);
    let ec = |spec: &LeafSpec<'_>| chain(spec, ec_key(), &inter_ec, &[inter_ec.der()]);
    let big = chain(
        &d(),
        rsa_key("r4096_leaf"),
        &i3,
        &[i3.der(), i2.der(), i1.der()],
    );
    let ec_cn_other = ec(&LeafSpec {
        cn: Some(OTHER),
        ..d()
    });
    let expired = rsa(&LeafSpec {
        from: (2020, 1, 1),
        to: (2021, 1, 1),
        ..d()
    });
    let case = |name, chain, versions, expect| Case {
        name,
        chain,
        versions,
        expect,
        dated: false,
    };
    use Expect::*;
    use Versions::*;
    let cases = vec![
        case(
            "RSA-2048 + intermediate, host only in SAN (no CN), TLS 1.2",
            rsa(&d()),
            Tls12,
            Connect,
        ),
        case(
            "RSA-2048 + intermediate, host only in SAN (no CN), TLS 1.3",
            rsa(&d()),
            Tls13,
            Connect,
        ),
        case(
            "ECDSA P-256, CN names another host, SAN this one, TLS 1.3",
            ec_cn_other.clone(),
            Tls13,
            Connect,
        ),
        case(
            "ECDSA P-256, CN names another host, SAN this one, TLS 1.2",
            ec_cn_other,
            Tls12,
            Connect,
        ),
        case(
            "RSA-4096, three intermediates (chain over 4 KiB), TLS 1.3",
            big.clone(),
            Tls13,
            Connect,
        ),
        case(
            "RSA-4096, three intermediates (chain over 4 KiB), TLS 1.2",
            big,
            Tls12,
            Connect,
        ),
        case(
            "wildcard SAN *.tessera.localhost",
            ec(&LeafSpec {
                sans: &["*.tessera.localhost"],
                ..d()
            }),
            Tls13,
            Connect,
        ),
        case("server speaks TLS 1.2 and 1.3", rsa(&d()), Both, Connect),
        case(
            "SAN names another host, CN names this one",
            rsa(&LeafSpec {
                sans: &[OTHER],
                cn: Some(HOST),
                ..d()
            }),
            Tls13,
            Refuse,
        ),
        case(
            "untrusted root",
            chain(&d(), ec_key(), &rogue_inter, &[rogue_inter.der()]),
            Tls13,
            Refuse,
        ),
        Case {
            dated: true,
            ..case("expired leaf, TLS 1.3", expired.clone(), Tls13, Refuse)
        },
        Case {
            dated: true,
            ..case("expired leaf, TLS 1.2", expired, Tls12, Refuse)
        },
        Case {
            dated: true,
            ..case(
                "not-yet-valid leaf",
                rsa(&LeafSpec {
                    from: (2040, 1, 1),
                    to: (2045, 1, 1),
                    ..d()
                }),
                Tls13,
                Refuse,
            )
        },
        case(
            "self-signed leaf (SAN and CN name this host), ECDSA",
            self_signed(
                &LeafSpec {
                    cn: Some(HOST),
                    ..d()
                },
                ec_key(),
            ),
            Tls13,
            Refuse,
        ),
        case(
            "self-signed leaf (SAN and CN name this host), RSA, TLS 1.2",
            self_signed(
                &LeafSpec {
                    cn: Some(HOST),
                    ..d()
                },
                rsa_key("r2048_leaf"),
            ),
            Tls12,
            Refuse,
        ),
        case(
            "leaf sent without its intermediate",
            chain(&d(), rsa_key("r2048_leaf"), &inter_rsa, &[]),
            Tls13,
            Refuse,
        ),
        case(
            "wildcard *.localhost does not cover two labels",
            ec(&LeafSpec {
                sans: &["*.localhost"],
                ..d()
            }),
            Tls13,
            Refuse,
        ),
        case(
            "no SAN at all, CN names this host",
            rsa(&LeafSpec {
                sans: &[],
                cn: Some(HOST),
                ..d()
            }),
            Tls13,
            CnFallback,
        ),
    ];
    let roots_pem = [root_rsa.pem(), root_ec.pem(), root_4k.pem()].concat();
    Matrix { roots_pem, cases }
}
