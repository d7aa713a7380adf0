//! One storage provider reached through Apache OpenDAL.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use nuage_core::Address;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator, services};

use crate::fs::FsWriter;
use crate::health::Health;
use crate::{Error, Operation, Presigned, ProviderConfig, ProviderKind, PutOutcome, Result};

/// One provider of chunk storage: an OpenDAL operator, a name, and a health record.
#[derive(Debug, Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ProviderConfig,
    op: Operator,
    /// The same without the retry layer: one attempt per call, for callers that must know
    /// when each attempt goes out (the collector's deletes).
    once: Operator,
    health: Health,
    /// Being drained (or drained): new chunks go elsewhere; reads still come here.
    draining: std::sync::atomic::AtomicBool,
    /// Writes to a local folder bypass OpenDAL to batch their fsyncs (see `fs.rs`).
    fs: Option<FsWriter>,
}

impl Provider {
    /// Builds the provider and checks that it is reachable and that its bucket or container
    /// exists (a local folder is created).
    pub async fn open(config: ProviderConfig) -> Result<Provider> {
        let (once, root) = build_operator(&config)?;
        let op = with_retries(once.clone());
        let fs = root.map(|root| FsWriter::new(&root));
        let provider = Provider {
            inner: Arc::new(Inner {
                config,
                op,
                once,
                health: Health::default(),
                draining: Default::default(),
                fs,
            }),
        };
        provider.check().await?;
        Ok(provider)
    }

    /// The longest one request to this provider (a stat, a delete, a small put) can last,
    /// retries included: every attempt ends at the time-out, and the pauses between them are
    /// short. What a process cut off from the database may still have in flight, this long
    /// after its last request began (the collector waits this out before it finishes the
    /// deletions of a holder that did not give its claim back).
    pub fn longest_request(&self) -> std::time::Duration {
        let attempts = RETRIES as u32 + 1;
        self.inner.config.timeout() * attempts + RETRY_MAX_DELAY * 2 * RETRIES as u32
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Its configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// The OpenDAL operator, rooted at the provider's folder. For tests and tools that must
    /// reach objects directly (e.g. to damage one on purpose).
    pub fn operator(&self) -> &Operator {
        &self.inner.op
    }

    /// Whether the provider is being skipped after repeated failures.
    pub fn is_down(&self) -> bool {
        self.inner.health.is_down()
    }

    /// Whether the provider is being drained: placement gives it no new chunk (reads,
    /// deletes and the moves off it go on).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks the provider as being drained, or not.
    pub fn set_draining(&self, draining: bool) {
        self.inner.draining.store(draining, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether new chunks may be placed here: neither down nor draining.
    pub fn takes_writes(&self) -> bool {
        !self.is_down() && !self.is_draining()
    }

    async fn check(&self) -> Result<()> {
        // `Operator::check` treats NotFound as success, but a missing bucket or container is
        // exactly what must be reported here, so list the chunk prefix ourselves: an empty
        // prefix lists fine, a missing bucket answers NotFound.
        let result = async {
            let mut lister = self.inner.op.lister_with(Address::OBJECT_PREFIX).limit(1).await?;
            lister.next().await.transpose()
        }
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound || names_missing_container(&e) => {
                Err(Error::ContainerMissing { provider: self.name().to_owned(), what: self.describe() })
            }
            Err(source) => Err(self.error(Operation::Check, source)),
        }
    }

    /// Writes a small object outside the chunk prefix, reads it back and deletes it: checks
    /// that the credentials allow what nuage does, before a provider is added at run time.
    pub async fn check_writable(&self) -> Result<()> {
        let mut nonce = [0u8; 8];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Config("no random source".into()))?;
        let path = format!("nuage-probe-{:016x}", u64::from_le_bytes(nonce));
        let probe = Bytes::from_static(b"nuage write probe");
        let op = &self.inner.op;
        let result = async {
            op.write(&path, probe.clone()).await?;
            let back = op.read(&path).await?.to_bytes();
            op.delete(&path).await?;
            Ok::<bool, opendal::Error>(back == probe)
        }
        .await;
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Config(format!(
                "provider {}: an object written to {} read back different",
                self.name(),
                self.describe()
            ))),
            Err(source) => Err(self.error(Operation::Probe, source)),
        }
    }

    fn describe(&self) -> String {
        match &self.inner.config.kind {
            ProviderKind::Memory => "memory".to_owned(),
            ProviderKind::Fs { root } => format!("folder {}", root.display()),
            ProviderKind::S3 { bucket, endpoint, .. } => format!("bucket {bucket:?} at {endpoint}"),
            ProviderKind::Azblob { container, endpoint, .. } => {
                format!("container {container:?} at {endpoint}")
            }
        }
    }

    fn error(&self, operation: Operation, source: opendal::Error) -> Error {
        Error::Provider { provider: self.name().to_owned(), operation, source }
    }

    fn track<T>(&self, operation: Operation, result: opendal::Result<T>) -> Result<T> {
        match result {
            Ok(v) => {
                self.inner.health.record_success();
                Ok(v)
            }
            Err(e) if e.kind() == ErrorKind::NotFound || crate::error::is_full(&e) => {
                // An answer (no such object, no room left), not a failure of the provider:
                // a full provider still serves reads.
                self.inner.health.record_success();
                Err(self.error(operation, e))
            }
            Err(e) => {
                self.inner.health.record_failure();
                Err(self.error(operation, e))
            }
        }
    }

    /// Stores a chunk under its address unless the provider already has it.
    ///
    /// The caller vouches that `bytes` hash to `address` ([`crate::StoredChunk`] does).
    ///
    /// On a local folder the chunk is durable only after a later [`Provider::sync`]; on the
    /// other providers, when this returns.
    pub async fn put(&self, address: &Address, bytes: Bytes) -> Result<PutOutcome> {
        if let Some(fs) = &self.inner.fs {
            let result = fs.put(address, bytes).await.map_err(|e| io_error("write", e));
            return self.track(Operation::Write, result);
        }
        if self.exists(address).await? {
            return Ok(PutOutcome::AlreadyPresent);
        }
        // Object stores commit a PUT atomically and durably.
        let result = self.inner.op.write(&address.object_key(), bytes).await;
        self.track(Operation::Write, result).map(|_| PutOutcome::Written)
    }

    /// Stores a chunk under its address even where the provider has an object of that name
    /// (the repair of a damaged copy). The write replaces the old object atomically: a
    /// temp file renamed over it on a local folder (durable after [`Provider::sync`]), one
    /// PUT on an object store.
    pub async fn put_replace(&self, address: &Address, bytes: Bytes) -> Result<()> {
        if let Some(fs) = &self.inner.fs {
            let result = fs.replace(address, bytes).await.map_err(|e| io_error("write", e));
            return self.track(Operation::Write, result).map(|_| ());
        }
        let result = self.inner.op.write(&address.object_key(), bytes).await;
        self.track(Operation::Write, result).map(|_| ())
    }

    /// Makes every put that returned before this call durable: one batched filesystem sync
    /// for a local folder (shared with concurrent callers), nothing for object stores, whose
    /// puts are durable when acknowledged. Call it before committing anything that references
    /// the chunks.
    pub async fn sync(&self) -> Result<()> {
        match &self.inner.fs {
            Some(fs) => {
                let result = fs.sync().await.map_err(|e| io_error("sync", e));
                self.track(Operation::Sync, result)
            }
            None => Ok(()),
        }
    }

    /// Filesystem syncs this provider has made (0 for object stores).
    pub fn syncs(&self) -> u64 {
        self.inner.fs.as_ref().map_or(0, FsWriter::syncs)
    }

    /// Whether the provider holds the address.
    pub async fn exists(&self, address: &Address) -> Result<bool> {
        let result = self.inner.op.stat(&address.object_key()).await;
        match self.track(Operation::Stat, result) {
            Ok(_) => Ok(true),
            Err(Error::Provider { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The size of the stored object, `None` when the provider does not hold the address.
    pub async fn stored_size(&self, address: &Address) -> Result<Option<u64>> {
        let result = self.inner.op.stat(&address.object_key()).await;
        match self.track(Operation::Stat, result) {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(Error::Provider { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stored bytes, unverified: a missing chunk is `Ok(None)`.
    pub async fn get_raw(&self, address: &Address) -> Result<Option<Bytes>> {
        if let Some(fs) = &self.inner.fs {
            let result = fs.read(address).await.map_err(|e| io_error("read", e));
            return self.track(Operation::Read, result);
        }
        let result = self.inner.op.read(&address.object_key()).await;
        match self.track(Operation::Read, result) {
            Ok(buf) => Ok(Some(buf.to_bytes())),
            Err(Error::Provider { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A request that lets someone without credentials PUT this chunk straight to the
    /// provider until `expire` from now: an S3 presigned PUT, or an Azure service SAS for
    /// this one blob (`sas.rs`). `None` for a provider that cannot presign (a local folder,
    /// memory).
    /// The provider does not check what is sent: whoever relies on the object must verify it
    /// ([`ChunkStore::get`] does).
    pub async fn presign_put(
        &self,
        address: &Address,
        expire: std::time::Duration,
    ) -> Result<Option<Presigned>> {
        if let ProviderKind::Azblob { container, endpoint, account_name, account_key, root } =
            &self.inner.config.kind
        {
            let sas = crate::sas::BlobSas {
                endpoint,
                account_name,
                account_key: &account_key.0,
                container,
                root: root.as_deref(),
            };
            return sas
                .put(&address.object_key(), std::time::SystemTime::now(), expire)
                .map(Some)
                .map_err(|e| Error::Config(format!("provider {}: {e}", self.name())));
        }
        if self.inner.fs.is_some() || !self.inner.op.info().capability().presign_write {
            return Ok(None);
        }
        let result = self.inner.op.presign_write(&address.object_key(), expire).await;
        let request = self.track(Operation::Presign, result)?;
        let headers = request
            .header()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Ok(Some(Presigned {
            method: request.method().as_str().to_owned(),
            url: request.uri().to_string(),
            headers,
        }))
    }

    /// Deletes the chunk; deleting an absent chunk succeeds.
    pub async fn delete(&self, address: &Address) -> Result<()> {
        let result = self.inner.op.delete(&address.object_key()).await;
        self.track(Operation::Delete, result)
    }

    /// [`Provider::delete`] in one attempt (within the time-out), without the retries of a
    /// temporary failure: the caller retries when it may ([`Error::is_temporary`]).
    pub async fn delete_once(&self, address: &Address) -> Result<()> {
        let result = self.inner.once.delete(&address.object_key()).await;
        self.track(Operation::Delete, result)
    }

    /// Every chunk address the provider holds (objects outside the chunk prefix, or with
    /// names that are not addresses, are skipped). For garbage collection and audits.
    pub async fn list(&self) -> Result<impl Stream<Item = Result<Address>> + use<>> {
        let name = self.name().to_owned();
        let lister = self.inner.op.lister_with(Address::OBJECT_PREFIX).recursive(true).await;
        let lister = self.track(Operation::List, lister)?;
        Ok(lister
            .map_err(move |source| Error::Provider {
                provider: name.clone(),
                operation: Operation::List,
                source,
            })
            .try_filter_map(|entry| async move { Ok(Address::from_object_key(entry.path())) }))
    }

    /// Removes temporary files older than `age` that interrupted writes left in a local
    /// folder (nothing to do on the other providers, whose writes are atomic). Returns how
    /// many.
    pub async fn sweep_temporary(&self, age: std::time::Duration) -> Result<u64> {
        match &self.inner.fs {
            Some(fs) => {
                fs.sweep_temporary(age).await.map_err(|e| self.error(Operation::Sweep, io_error("sweep", e)))
            }
            None => Ok(0),
        }
    }

    pub(crate) fn record_corruption(&self) {
        self.inner.health.record_failure();
    }
}

/// OpenDAL reports S3's `NoSuchBucket` as a configuration error rather than NotFound; the
/// service's error code is the reliable signal.
fn names_missing_container(e: &opendal::Error) -> bool {
    let text = e.to_string();
    ["NoSuchBucket", "ContainerNotFound"].iter().any(|code| text.contains(code))
}

/// A local-folder failure, in the error type the other providers report.
fn io_error(what: &'static str, e: std::io::Error) -> opendal::Error {
    opendal::Error::new(ErrorKind::Unexpected, format!("{what} failed")).set_source(e)
}

/// The operator, and for a local folder its absolute root.
fn build_operator(config: &ProviderConfig) -> Result<(Operator, Option<std::path::PathBuf>)> {
    // HTTP services need a process-wide transport; installing it twice is a no-op.
    opendal::install_default();
    let name = &config.name;
    let invalid = |source: opendal::Error| Error::Provider {
        provider: name.clone(),
        operation: Operation::Open,
        source,
    };
    let mut fs_root = None;
    let op = match &config.kind {
        ProviderKind::Memory => Operator::new(services::Memory::default()),
        ProviderKind::Fs { root } => {
            std::fs::create_dir_all(root).map_err(|e| {
                Error::Config(format!("provider {name}: cannot create folder {}: {e}", root.display()))
            })?;
            let root = std::path::absolute(root)
                .map_err(|e| Error::Config(format!("provider {name}: {e}")))?
                .to_string_lossy()
                .into_owned();
            fs_root = Some(std::path::PathBuf::from(&root));
            // Chunk writes go through `fs.rs`. OpenDAL's own writes (tools, tests) keep their
            // temporary files in a folder the chunk lister never enters, on the same
            // filesystem so that rename is atomic.
            Operator::new(services::Fs::default().root(&root).atomic_write_dir(&format!("{root}/.tmp")))
        }
        ProviderKind::S3 { bucket, endpoint, access_key_id, secret_access_key, root } => {
            let mut b = services::S3::default()
                .bucket(bucket)
                .endpoint(endpoint)
                .region(config.region.as_deref().unwrap_or("us-east-1"))
                .access_key_id(access_key_id)
                .secret_access_key(&secret_access_key.0)
                .disable_config_load()
                .disable_ec2_metadata();
            if let Some(root) = root {
                b = b.root(root);
            }
            Operator::new(b)
        }
        ProviderKind::Azblob { container, endpoint, account_name, account_key, root } => {
            let mut b = services::Azblob::default()
                .container(container)
                .endpoint(endpoint)
                .account_name(account_name)
                .account_key(&account_key.0);
            if let Some(root) = root {
                b = b.root(root);
            }
            Operator::new(b)
        }
    }
    .map_err(invalid)?;
    // Each attempt has a time limit.
    let op = op.layer(TimeoutLayer::new().with_timeout(config.timeout()).with_io_timeout(config.timeout()));
    Ok((op, fs_root))
}

/// Temporary failures (a reset connection, a 503) are retried twice with a short jittered
/// back-off. Failures that survive the retries count against the provider's health, which
/// then skips it for a while: retrying longer here would only make a dead provider cost
/// more latency.
fn with_retries(op: Operator) -> Operator {
    op.layer(
        RetryLayer::new()
            .with_max_times(RETRIES)
            .with_min_delay(std::time::Duration::from_millis(20))
            .with_max_delay(RETRY_MAX_DELAY)
            .with_jitter(),
    )
}

/// Attempts after the first of a request that failed for now.
const RETRIES: usize = 2;
/// The longest pause between two attempts (jitter adds at most as much again).
const RETRY_MAX_DELAY: std::time::Duration = std::time::Duration::from_millis(200);
