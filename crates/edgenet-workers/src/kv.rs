//! The standard `wasi:keyvalue@0.2.0-draft` interfaces (`store`, `atomics`, `batch`) for
//! workers, over a [`KvBackend`]: in a PoP, its replica of the edge key-value store.
//!
//! - `store.open(BINDING)` opens the namespace a script's settings bind to that name; any other
//!   name is `no-such-store`. A worker with no backend (a node that follows no control plane)
//!   gets `other` saying so.
//! - Reads are the backend's (a PoP answers from its local copy). Writes go through the
//!   backend to the authoritative store, and this PoP reads its own write at once (the WIT's
//!   "read your writes"); other PoPs see it once it propagates.
//! - `list-keys` pages through the namespace in key order, [`LIST_PAGE`] at a time; the cursor
//!   is the number of keys already returned (so a write meanwhile may shift a page).
//! - `increment` treats the value as a decimal `u64` (as wasmtime-wasi-keyvalue does) and is
//!   atomic at the authoritative store.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{HasData, Resource, ResourceTable};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::KvError,
        },
        require_store_data_send: true,
    });
}

use generated::wasi::keyvalue as wit;

/// The most keys one `list-keys` call returns.
pub const LIST_PAGE: usize = 1000;

/// Why a key-value operation failed (what the guest sees as `wasi:keyvalue/store.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// No namespace is bound to this name.
    #[error("no namespace is bound to {0:?}")]
    NoSuchStore(String),
    /// Anything else: the reason (a limit, the control plane unreachable, a bad counter).
    #[error("{0}")]
    Other(String),
}

impl From<wasmtime::component::ResourceTableError> for KvError {
    fn from(e: wasmtime::component::ResourceTableError) -> KvError {
        KvError::Other(e.to_string())
    }
}

/// Where a worker's key-value operations go. Namespaces are by id (the bindings are resolved
/// before a backend sees them).
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// The value of `key`, or none.
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Bytes>, KvError>;
    /// Writes `value` to `key` (none: deletes it); returns once the authoritative store has it
    /// and this backend reads it.
    async fn set(&self, namespace: &str, key: &str, value: Option<Bytes>) -> Result<(), KvError>;
    /// Adds `delta` to the decimal counter at `key` (absent: 0), atomically; the new value.
    async fn increment(&self, namespace: &str, key: &str, delta: u64) -> Result<u64, KvError>;
    /// Up to `limit` keys of `namespace` in order, after skipping `skip`.
    fn list(&self, namespace: &str, skip: usize, limit: usize) -> Result<Vec<String>, KvError>;
}

/// An open namespace: its id.
pub struct Bucket {
    namespace: String,
}

/// A worker's key-value access: the backend and its bindings (name to namespace id).
#[derive(Clone, Default)]
pub struct KvAccess {
    backend: Option<Arc<dyn KvBackend>>,
    bindings: Arc<BTreeMap<String, String>>,
}

impl KvAccess {
    /// Access to `backend`'s namespaces through `bindings` (name to namespace id).
    pub fn new(backend: Option<Arc<dyn KvBackend>>, bindings: BTreeMap<String, String>) -> Self {
        KvAccess {
            backend,
            bindings: Arc::new(bindings),
        }
    }
}

/// The per-request view the host functions run on.
pub(crate) struct KvView<'a> {
    pub(crate) access: &'a KvAccess,
    pub(crate) table: &'a mut ResourceTable,
}

impl KvView<'_> {
    fn open_bucket(
        &mut self,
        b: &Resource<Bucket>,
    ) -> Result<(Arc<dyn KvBackend>, String), KvError> {
        let ns = self.table.get(b)?.namespace.clone();
        Ok((self.backend()?, ns))
    }

    fn backend(&self) -> Result<Arc<dyn KvBackend>, KvError> {
        self.access.backend.clone().ok_or_else(|| {
            KvError::Other("this node has no key-value store (it follows no control plane)".into())
        })
    }
}

impl wit::store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, KvError> {
        let namespace = self
            .access
            .bindings
            .get(&identifier)
            .cloned()
            .ok_or(KvError::NoSuchStore(identifier))?;
        self.backend()?;
        Ok(self.table.push(Bucket { namespace })?)
    }

    fn convert_error(&mut self, e: KvError) -> wasmtime::Result<wit::store::Error> {
        Ok(match e {
            KvError::NoSuchStore(_) => wit::store::Error::NoSuchStore,
            KvError::Other(why) => wit::store::Error::Other(why),
        })
    }
}

impl wit::store::HostBucket for KvView<'_> {
    async fn get(&mut self, b: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        Ok(backend.get(&ns, &key).await?.map(|v| v.to_vec()))
    }

    async fn set(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        backend.set(&ns, &key, Some(value.into())).await
    }

    async fn delete(&mut self, b: Resource<Bucket>, key: String) -> Result<(), KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        backend.set(&ns, &key, None).await
    }

    async fn exists(&mut self, b: Resource<Bucket>, key: String) -> Result<bool, KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        Ok(backend.get(&ns, &key).await?.is_some())
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<wit::store::KeyResponse, KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let keys = backend.list(&ns, skip, LIST_PAGE)?;
        let cursor = (keys.len() == LIST_PAGE).then(|| (skip + keys.len()) as u64);
        Ok(wit::store::KeyResponse { keys, cursor })
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl wit::atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        backend.increment(&ns, &key, delta).await
    }
}

impl wit::batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let value = backend.get(&ns, &key).await?;
            out.push(value.map(|v| (key, v.to_vec())));
        }
        Ok(out)
    }

    async fn set_many(
        &mut self,
        b: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        for (key, value) in key_values {
            backend.set(&ns, &key, Some(value.into())).await?;
        }
        Ok(())
    }

    async fn delete_many(&mut self, b: Resource<Bucket>, keys: Vec<String>) -> Result<(), KvError> {
        let (backend, ns) = self.open_bucket(&b)?;
        for key in keys {
            backend.set(&ns, &key, None).await?;
        }
        Ok(())
    }
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds the three interfaces to `linker`, each call running on `view`'s [`KvView`].
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    wit::store::add_to_linker::<_, HasKv>(linker, view)?;
    wit::atomics::add_to_linker::<_, HasKv>(linker, view)?;
    wit::batch::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}
