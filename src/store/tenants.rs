//! Tenants (a hospital or an integration) and their bearer tokens.
//!
//! A token is `bat_` followed by 64 hex digits (32 bytes from the operating system's
//! random source). Only its sha256 is stored: with 256 random bits a plain hash is
//! as strong as a slow password hash, and it lets [`Store::authenticate`] look the
//! token up by an index (hash, then one indexed query: the same work whatever the
//! token). Each token also has a public id (`tok_` + 16 hex digits) for listing
//! and revoking.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::images::sha256_hex;
use super::{check_text, now_timestamp, Store, StoreError};

/// Prefix of every bearer token.
pub const TOKEN_PREFIX: &str = "bat_";
/// Prefix of every token's public id.
const TOKEN_ID_PREFIX: &str = "tok_";
/// The tenant used when no token is configured (single-tenant local mode).
pub const LOCAL_TENANT: &str = "local";
/// Longest tenant name, in characters.
const MAX_TENANT_NAME: usize = 64;

/// A tenant, as proven by a token or as the local-mode tenant. Only the store makes
/// these, so holding one means access to that tenant's data was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    id: i64,
    name: String,
}

impl Tenant {
    /// The tenant's name (e.g. a hospital), as given to `token create`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn id(&self) -> i64 {
        self.id
    }

    pub(super) fn new(id: i64, name: String) -> Tenant {
        Tenant { id, name }
    }
}

/// A freshly created token. `token` is shown once and never stored; the `Debug`
/// output hides it.
#[derive(Clone)]
pub struct NewToken {
    /// Public id, for `list_tokens` and `revoke_token`.
    pub id: String,
    /// The tenant's name.
    pub tenant: String,
    /// The bearer token (`bat_…`). Print it once; it cannot be recovered.
    pub token: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub tenant: String,
    pub created_at: String,
    /// When it was revoked; `None` while active.
    pub revoked_at: Option<String>,
}

/// Checks a tenant name: 1–64 characters, no control characters, no leading or
/// trailing white space.
fn check_tenant_name(name: &str) -> Result<(), StoreError> {
    check_text(name, "tenant name", MAX_TENANT_NAME)
}

fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| {
        StoreError::Io(std::io::Error::other(format!(
            "the operating system's random source failed: {e}"
        )))
    })?;
    Ok(hex::encode(bytes))
}

/// Finds or creates the tenant `name` inside a write transaction.
fn ensure_tenant(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<Tenant, StoreError> {
    tx.execute(
        "INSERT INTO tenants (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![name, now_timestamp()?],
    )?;
    let id: i64 = tx.query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
        r.get(0)
    })?;
    Ok(Tenant {
        id,
        name: name.to_string(),
    })
}

impl Store {
    /// Creates a bearer token for the tenant `tenant_name`, creating the tenant if it
    /// is new. The returned [`NewToken::token`] exists nowhere else: only its sha256
    /// is stored.
    pub fn create_token(&self, tenant_name: &str) -> Result<NewToken, StoreError> {
        check_tenant_name(tenant_name)?;
        let token = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
        let id = format!("{TOKEN_ID_PREFIX}{}", random_hex(8)?);
        let hash = sha256_hex(token.as_bytes());
        self.write(|tx| {
            let tenant = ensure_tenant(tx, tenant_name)?;
            tx.execute(
                "INSERT INTO tokens (id, tenant_id, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, tenant.id, hash, now_timestamp()?],
            )?;
            Ok(())
        })?;
        Ok(NewToken {
            id,
            tenant: tenant_name.to_string(),
            token,
        })
    }

    /// Revokes a token given either the token itself (`bat_…`) or its public id
    /// (`tok_…`). Returns `true` if an active token was revoked now, `false` if there
    /// is no such token or it was already revoked.
    pub fn revoke_token(&self, token_or_id: &str) -> Result<bool, StoreError> {
        let token_or_id = token_or_id.trim();
        let now = now_timestamp()?;
        let changed = if token_or_id.starts_with(TOKEN_PREFIX) {
            let hash = sha256_hex(token_or_id.as_bytes());
            self.write(|tx| {
                Ok(tx.execute(
                    "UPDATE tokens SET revoked_at = ?1 WHERE token_sha256 = ?2 AND revoked_at IS NULL",
                    params![now, hash],
                )?)
            })?
        } else {
            self.write(|tx| {
                Ok(tx.execute(
                    "UPDATE tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
                    params![now, token_or_id],
                )?)
            })?
        };
        Ok(changed > 0)
    }

    /// Every token ever created, oldest first, with its tenant and state; never the
    /// token.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT k.id, t.name, k.created_at, k.revoked_at
                 FROM tokens k JOIN tenants t ON t.id = k.tenant_id
                 ORDER BY k.created_at, k.rowid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(TokenInfo {
                    id: r.get(0)?,
                    tenant: r.get(1)?,
                    created_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The tenant of an active bearer token (the header's value without `Bearer `),
    /// or `None` for an unknown or revoked token. The token is hashed and looked up
    /// by its hash, so the work does not depend on how much of it matches.
    pub fn authenticate(&self, bearer: &str) -> Result<Option<Tenant>, StoreError> {
        let hash = sha256_hex(bearer.as_bytes());
        self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT t.id, t.name FROM tokens k JOIN tenants t ON t.id = k.tenant_id
                     WHERE k.token_sha256 = ?1 AND k.revoked_at IS NULL",
                    [hash],
                    |r| {
                        Ok(Tenant {
                            id: r.get(0)?,
                            name: r.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    /// Whether tokens are configured, i.e. whether requests must authenticate.
    ///
    /// `true` once any token has been created, **even if all were revoked since**:
    /// revoking the last token locks the service rather than reopening it to anyone
    /// in local mode. A fresh database (no token ever) gives `false`: local mode.
    pub fn has_tokens(&self) -> Result<bool, StoreError> {
        self.read(|tx| Ok(tx.query_row("SELECT EXISTS (SELECT 1 FROM tokens)", [], |r| r.get(0))?))
    }

    /// The single tenant of local mode ([`LOCAL_TENANT`]), created on first use.
    /// `boneage token create --tenant local` later keeps its data reachable with a
    /// token.
    pub fn local_tenant(&self) -> Result<Tenant, StoreError> {
        let found = self.read(|tx| {
            Ok(tx
                .query_row(
                    "SELECT id, name FROM tenants WHERE name = ?1",
                    [LOCAL_TENANT],
                    |r| {
                        Ok(Tenant {
                            id: r.get(0)?,
                            name: r.get(1)?,
                        })
                    },
                )
                .optional()?)
        })?;
        match found {
            Some(t) => Ok(t),
            None => self.write(|tx| ensure_tenant(tx, LOCAL_TENANT)),
        }
    }
}
