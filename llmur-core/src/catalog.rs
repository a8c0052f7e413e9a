//! The read side the proxy needs per request: which key is calling, and where a model goes.
//!
//! Owns: the [`Catalog`] trait, the keyed key hash ([`KeyHasher`]) and [`MemoryCatalog`],
//! an immutable snapshot swapped atomically on change. Must not touch: the database; a
//! catalog answers from memory, and a store-backed one refreshes that memory elsewhere.

use std::fmt;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use rustc_hash::{FxHashMap, FxHashSet};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::error::{Error, ErrorKind};
use crate::model::{Access, Deployment, DeploymentId, VirtualKey, VirtualKeyId};

/// The keyed hash of a virtual key, as stored; the key itself is never kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Lowercase hex, for storage.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses lowercase or uppercase hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

/// HMAC-SHA256 of virtual keys with the application secret.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    /// A hasher keyed with the application secret.
    pub fn new(application_secret: &SecretString) -> Self {
        // HMAC accepts keys of any length, so this never fails.
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(application_secret.expose_secret().as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { mac }
    }

    /// The hash of one virtual key.
    pub fn hash(&self, key: &str) -> KeyHash {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        KeyHash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher([REDACTED])")
    }
}

/// Per-request lookups, answered from memory.
pub trait Catalog: Send + Sync + fmt::Debug + 'static {
    /// The key presented as `Authorization: Bearer <key>`, if it exists (blocked or not).
    fn authenticate(&self, presented: &str) -> Option<Arc<VirtualKey>>;

    /// The deployment `model` names, if `key` may use it.
    fn route(&self, key: &VirtualKey, model: &str) -> Result<Arc<Deployment>, Error>;

    /// The deployments `key` may use, sorted by name (for `GET /v1/models`).
    fn models(&self, key: &VirtualKey) -> Vec<Arc<Deployment>>;
}

/// One consistent view of keys, deployments and links.
///
/// The maps use the Fx hash instead of SipHash: every request looks up its key, its
/// deployment and the link between them. Nothing a client sends is ever inserted (the
/// snapshot is built from the store), and key hashes are HMACs under the application secret,
/// so there is no table an attacker could fill with collisions.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    keys: FxHashMap<KeyHash, Arc<VirtualKey>>,
    deployments: FxHashMap<Arc<str>, Arc<Deployment>>,
    links: FxHashMap<VirtualKeyId, FxHashSet<DeploymentId>>,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key under its hash.
    pub fn insert_key(&mut self, hash: KeyHash, key: VirtualKey) {
        self.keys.insert(hash, Arc::new(key));
    }

    /// Adds a deployment (replacing one of the same name).
    pub fn insert_deployment(&mut self, deployment: Deployment) {
        self.deployments
            .insert(deployment.name.clone(), Arc::new(deployment));
    }

    /// Lets `key` use `deployment`.
    pub fn link(&mut self, key: VirtualKeyId, deployment: DeploymentId) {
        self.links.entry(key).or_default().insert(deployment);
    }

    fn allowed(&self, key: &VirtualKey, deployment: &Deployment) -> bool {
        deployment.access == Access::Public
            || self
                .links
                .get(&key.id)
                .is_some_and(|set| set.contains(&deployment.id))
    }
}

/// A catalog held entirely in memory; `replace` swaps in a new snapshot atomically.
pub struct MemoryCatalog {
    hasher: KeyHasher,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl MemoryCatalog {
    /// A catalog over `snapshot`, whose key hashes were made with `hasher`.
    pub fn new(hasher: KeyHasher, snapshot: Snapshot) -> Self {
        Self {
            hasher,
            snapshot: RwLock::new(Arc::new(snapshot)),
        }
    }

    /// The hasher keys must be hashed with to be found.
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// How many deployments and keys the current view holds.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.current();
        (s.deployments.len(), s.keys.len())
    }

    /// Replaces the whole view; requests already routed keep the old one.
    pub fn replace(&self, snapshot: Snapshot) {
        let mut guard = self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(snapshot);
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl fmt::Debug for MemoryCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.current();
        f.debug_struct("MemoryCatalog")
            .field("keys", &s.keys.len())
            .field("deployments", &s.deployments.len())
            .finish()
    }
}

impl Catalog for MemoryCatalog {
    fn authenticate(&self, presented: &str) -> Option<Arc<VirtualKey>> {
        let hash = self.hasher.hash(presented);
        self.current().keys.get(&hash).cloned()
    }

    fn route(&self, key: &VirtualKey, model: &str) -> Result<Arc<Deployment>, Error> {
        let snapshot = self.current();
        match snapshot.deployments.get(model) {
            Some(d) if snapshot.allowed(key, d) => {
                if d.blocked {
                    return Err(Error::new(
                        ErrorKind::Forbidden,
                        format!("The deployment `{model}` is blocked."),
                    )
                    .with_param("model")
                    .with_code("deployment_blocked"));
                }
                Ok(d.clone())
            }
            _ => Err(model_not_found(model)),
        }
    }

    fn models(&self, key: &VirtualKey) -> Vec<Arc<Deployment>> {
        let snapshot = self.current();
        let mut out: Vec<_> = snapshot
            .deployments
            .values()
            .filter(|d| snapshot.allowed(key, d))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The 404 OpenAI answers for a model that does not exist or that the key cannot use;
/// the two cases are not told apart, so a key learns nothing about other projects.
pub fn model_not_found(model: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("The model `{model}` does not exist or you do not have access to it."),
    )
    .with_param("model")
    .with_code("model_not_found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProjectId, Strategy};

    #[test]
    fn keys_are_found_by_keyed_hash_only() {
        let hasher = KeyHasher::new(&SecretString::from("secret"));
        let other = KeyHasher::new(&SecretString::from("other"));
        assert_ne!(hasher.hash("sk-a"), other.hash("sk-a"));

        let key = VirtualKey {
            id: VirtualKeyId::new_random(),
            project_id: ProjectId::new_random(),
            alias: "sk-a...".into(),
            blocked: false,
            limits: None,
            project_limits: None,
        };
        let private = Deployment::new(
            DeploymentId::new_random(),
            "private",
            Access::Private,
            Strategy::RoundRobin,
            vec![],
        );
        let public = Deployment::new(
            DeploymentId::new_random(),
            "public",
            Access::Public,
            Strategy::RoundRobin,
            vec![],
        );
        let linked = Deployment::new(
            DeploymentId::new_random(),
            "linked",
            Access::Private,
            Strategy::RoundRobin,
            vec![],
        );
        let mut s = Snapshot::new();
        s.link(key.id, linked.id);
        s.insert_key(hasher.hash("sk-a"), key.clone());
        s.insert_deployment(private);
        s.insert_deployment(public);
        s.insert_deployment(linked);
        let c = MemoryCatalog::new(hasher, s);

        assert!(c.authenticate("sk-b").is_none());
        let k = c.authenticate("sk-a");
        assert_eq!(k.as_ref().map(|k| k.id), Some(key.id));
        assert!(c.route(&key, "linked").is_ok());
        assert!(c.route(&key, "public").is_ok());
        assert_eq!(
            c.route(&key, "private").err().map(|e| e.status().as_u16()),
            Some(404)
        );
        let names: Vec<_> = c.models(&key).iter().map(|d| d.name.to_string()).collect();
        assert_eq!(names, ["linked", "public"]);
    }
}
