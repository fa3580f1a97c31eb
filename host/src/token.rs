//! [`Token`]: a bearer token handed out to callers, shared and wiped.

use std::fmt;
use std::sync::Arc;

use tessera_core::{Grant, TokenId};
use zeroize::Zeroize;

/// A bearer token handed out by a host client's `token()`. Its `Debug` hides
/// the value, and the value is wiped from memory when the last copy is dropped.
///
/// Cheap to clone: every caller handed the same token shares one copy of it (so the hot path,
/// a cached token, allocates nothing).
#[derive(Clone)]
pub struct Token {
    shared: Arc<Shared>,
    id: TokenId,
}

/// One token's value and scopes, shared by every [`Token`] handed out for it.
struct Shared {
    value: String,
    scopes: Vec<String>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl Token {
    /// The token, for `Authorization: Bearer <token>`.
    pub fn as_str(&self) -> &str {
        &self.shared.value
    }

    /// Which token this is, for a client's `reject`.
    pub fn id(&self) -> TokenId {
        self.id
    }

    /// Whether the grant carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.shared.scopes.iter().any(|s| s == scope)
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.shared.scopes
    }

    /// A token handed out for `grant` (a transport's hot path shares one per token id).
    pub fn from_grant<const T: usize, const R: usize>(grant: &Grant<T, R>, id: TokenId) -> Self {
        Token {
            shared: Arc::new(Shared {
                value: grant.access_token().to_owned(),
                scopes: grant.scopes().iter().map(str::to_owned).collect(),
            }),
            id,
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field(
                "value",
                &format_args!("<redacted {} bytes>", self.shared.value.len()),
            )
            .field("id", &self.id)
            .field("scopes", &self.shared.scopes)
            .finish()
    }
}
