//! Voucher signature checks in batches: requests hand their vouchers to one verifier thread, which
//! takes whatever has queued up (up to 64) and checks it with one Ed25519 batch equation, about
//! twice as fast per signature as one by one. Nothing waits for a batch to fill: a voucher that
//! arrives alone is checked alone, so batching adds no latency, only throughput under load.
//! Device keys are decompressed once and kept (a few thousand at most).

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use ed25519_dalek::VerifyingKey;
use obol_core::channel::{Network, Voucher, verify_vouchers};
use tokio::sync::oneshot;

/// Vouchers checked together at most.
pub const BATCH_MAX: usize = 64;
/// Vouchers that may wait for the verifier.
const QUEUE_DEPTH_MAX: usize = 4096;
/// Decompressed device keys kept before the cache starts over.
const KEYS_CACHED_MAX: usize = 4096;

struct Job {
    voucher: Voucher,
    public_key: [u8; 32],
    reply: oneshot::Sender<bool>,
}

/// Handle to the verifier thread; cloning is cheap. The thread stops when every handle is gone.
#[derive(Clone)]
pub struct Verifier {
    sender: SyncSender<Job>,
    network: Network,
}

impl Verifier {
    /// Starts the verifier thread for vouchers signed for `network`.
    #[expect(
        clippy::expect_used,
        reason = "a process that cannot start its verifier thread cannot serve; it stops at start, before any request"
    )]
    pub fn start(network: Network) -> Verifier {
        let (sender, receiver) = sync_channel(QUEUE_DEPTH_MAX);
        std::thread::Builder::new()
            .name("obol-verifier".into())
            .spawn(move || run(network, receiver))
            .expect("spawning the verifier thread");
        Verifier { sender, network }
    }

    /// Whether `public_key` signed `voucher` for this verifier's network. When the queue is full the caller checks it itself.
    pub async fn verify(&self, voucher: Voucher, public_key: [u8; 32]) -> bool {
        let (reply, answer) = oneshot::channel();
        match self.sender.try_send(Job { voucher, public_key, reply }) {
            Ok(()) => answer.await.unwrap_or(false),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                VerifyingKey::from_bytes(&job.public_key).is_ok_and(|key| job.voucher.verify(&key, &self.network))
            }
        }
    }
}

#[expect(
    clippy::indexing_slicing,
    reason = "the indexes come from enumerating `jobs`, and `verdicts` has one slot per job"
)]
fn run(network: Network, receiver: Receiver<Job>) {
    let mut keys: HashMap<[u8; 32], Option<VerifyingKey>> = HashMap::new();
    while let Ok(first) = receiver.recv() {
        let mut jobs = vec![first];
        while jobs.len() < BATCH_MAX {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if keys.len() > KEYS_CACHED_MAX {
            keys.clear();
        }
        let resolved: Vec<Option<VerifyingKey>> = jobs
            .iter()
            .map(|job| *keys.entry(job.public_key).or_insert_with(|| VerifyingKey::from_bytes(&job.public_key).ok()))
            .collect();
        let checkable: Vec<(usize, VerifyingKey)> =
            resolved.iter().enumerate().filter_map(|(index, key)| key.map(|key| (index, key))).collect();
        let pairs: Vec<(&Voucher, &VerifyingKey)> =
            checkable.iter().map(|(index, key)| (&jobs[*index].voucher, key)).collect();
        let mut verdicts = vec![false; jobs.len()];
        for ((index, _), ok) in checkable.iter().zip(verify_vouchers(&network, &pairs)) {
            verdicts[*index] = ok;
        }
        metrics::histogram!("obol_voucher_batch").record(jobs.len() as f64);
        for (job, ok) in jobs.into_iter().zip(verdicts) {
            let _ = job.reply.send(ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn voucher(key: &SigningKey, cumulative: u128) -> Voucher {
        let signature =
            key.sign(&Voucher::signed_message(&Network::named("obol:test"), 1, 2, cumulative, 1)).to_bytes();
        Voucher { tab_id: 1, payee_id: 2, cumulative, seq: 1, signature }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_vouchers_get_their_own_verdicts() {
        let verifier = Verifier::start(Network::named("obol:test"));
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let public_key = key.verifying_key().to_bytes();
        let mut tasks = Vec::new();
        for n in 0..200u128 {
            let verifier = verifier.clone();
            let mut voucher = voucher(&key, n + 1);
            if n % 7 == 0 {
                voucher.cumulative += 1; // forged
            }
            tasks.push(tokio::spawn(async move { (n, verifier.verify(voucher, public_key).await) }));
        }
        for task in tasks {
            let (n, ok) = task.await.unwrap();
            assert_eq!(ok, n % 7 != 0, "voucher {n}");
        }
        assert!(!verifier.verify(voucher(&key, 5), [0u8; 32]).await, "a key that is no curve point verifies nothing");
    }
}
