//! Replicas a commit needs: a chunk a device sent straight to one provider (presigned
//! upload) is committed with that one placement; the bucket's other replicas are made here,
//! in the background, from a verified read of the first. A chunk the account had stored
//! already, with fewer copies than this bucket asks for (it came from a bucket with fewer
//! replicas), gets its missing copies *before* the commit ([`Nuage::complete_copies`]), as
//! a first upload of it would have.
//!
//! The queue lives in memory. A server that stops before it is drained leaves chunks with
//! fewer replicas than their bucket asks for; the chunk index says so (their placements),
//! which is what the repair worker reads.

use nuage_blob::{Placement, StoredChunk};
use nuage_core::Address;

use crate::Nuage;

impl Nuage {
    /// Makes the replicas of every queued chunk, then returns. A chunk whose copies cannot
    /// be made now (providers down) is logged and left to the repair worker.
    pub async fn replicate_pending(&self) {
        let _one_at_a_time = self.replicas.running.lock().await;
        loop {
            let batch = std::mem::take(&mut *self.replicas.queue.lock().expect("replica queue"));
            if batch.is_empty() {
                return;
            }
            for (address, placement) in batch {
                if let Err(e) = self.replicate(&address, placement).await {
                    tracing::warn!("replicating chunk {address}: {e}");
                }
            }
        }
    }

    /// Brings a chunk stored on `providers` up to `placement` from a verified read of one of
    /// its copies, and answers every provider that holds it then. When the chunk already has
    /// its write quorum, a failure only leaves the rest to the background (and to repair);
    /// below the quorum it fails, as a first upload would.
    pub async fn complete_copies(
        &self,
        address: &Address,
        providers: &[String],
        placement: Placement,
    ) -> crate::ServiceResult<Vec<String>> {
        let attempt = async {
            let hint: Vec<&str> = providers.iter().map(String::as_str).collect();
            let read = self.store.get(address, &hint).await?;
            let chunk = StoredChunk::verify(*address, read.bytes)?;
            self.store.put_preferring(&chunk, placement, providers).await
        };
        match attempt.await {
            Ok(report) => {
                let mut all = providers.to_vec();
                for p in report.stored_on {
                    if !all.contains(&p) {
                        all.push(p);
                    }
                }
                Ok(all)
            }
            Err(e) if providers.len() >= placement.write_quorum => {
                tracing::warn!("making the other copies of chunk {address}: {e}; left to the background");
                self.replicas.push([*address], placement);
                Ok(providers.to_vec())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn replicate(&self, address: &Address, placement: Placement) -> anyhow::Result<()> {
        let read = self.store.get(address, &[]).await?;
        let chunk = StoredChunk::verify(*address, read.bytes)?;
        let report = self.store.put_with(&chunk, placement).await?;
        self.store.sync().await?;
        self.meta.add_placements(address.as_bytes(), &report.stored_on).await?;
        Ok(())
    }
}
