//! The webhook delivery loop: for every endpoint, the next event after its cursor is POSTed with
//! the Standard Webhooks headers, and the cursor moves only on a 2xx answer; a failing endpoint
//! is retried with exponential backoff (1 s doubling to 5 min), the others go on. The events and
//! cursors are in the record log, so a server killed at any point delivers every event again
//! from the last one acknowledged: at least once, in order per endpoint.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use obol_app::App;
use obol_app::webhooks::{AttemptDto, Next, acknowledge, endpoint_ids, next_delivery};

/// The longest wait between two tries of a failing endpoint.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries one endpoint gets in one round before the next endpoint's turn.
const ROUND_MAX: usize = 64;

struct Backoff {
    wait: Duration,
    until: Instant,
}

/// Runs the delivery loop until the process ends.
pub async fn run(state: App) {
    let client = match obol_client::http_client(None) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhooks cannot be delivered: no HTTP client");
            return;
        }
    };
    let mut backoff: HashMap<u128, Backoff> = HashMap::new();
    loop {
        let mut idle = true;
        let ids = endpoint_ids(&state);
        state.webhook_attempts.keep_only(&ids);
        for id in ids {
            if backoff.get(&id).is_some_and(|b| b.until > Instant::now()) {
                continue;
            }
            for _ in 0..ROUND_MAX {
                match next_delivery(&state, id) {
                    Next::Idle => break,
                    Next::Skip(key) => {
                        if acknowledge(&state, id, &key).await.is_err() {
                            break;
                        }
                    }
                    Next::Deliver(delivery) => {
                        idle = false;
                        let now_s = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let sent = client
                            .post(&delivery.url)
                            .timeout(DELIVERY_TIMEOUT)
                            .header("content-type", "application/json")
                            .header("webhook-id", &delivery.id)
                            .header("webhook-timestamp", now_s.to_string())
                            .header("webhook-signature", delivery.signature(now_s))
                            .body(delivery.body.clone())
                            .send()
                            .await;
                        let at = obol_core::time::rfc3339(u128::from(now_s) * 1_000_000_000);
                        match sent {
                            Ok(answer) if answer.status().is_success() => {
                                backoff.remove(&id);
                                let detail = format!("answered {}", answer.status());
                                let attempt = AttemptDto {
                                    at,
                                    event: delivery.id.clone(),
                                    delivered: true,
                                    detail,
                                    retry_at: None,
                                };
                                state.webhook_attempts.record(id, attempt);
                                if let Err(error) = acknowledge(&state, id, &delivery.key).await {
                                    tracing::error!(%error, webhook = %id, "a delivery could not be acknowledged");
                                    break;
                                }
                            }
                            other => {
                                let why = match other {
                                    Ok(answer) => format!("answered {}", answer.status()),
                                    Err(error) => error.without_url().to_string(),
                                };
                                let wait =
                                    backoff.get(&id).map_or(Duration::from_secs(1), |b| (b.wait * 2).min(BACKOFF_MAX));
                                tracing::warn!(webhook = %id, event = %delivery.id, %why, retry_in_s = wait.as_secs(), "a webhook delivery failed");
                                let retry_at =
                                    obol_core::time::rfc3339(u128::from(now_s + wait.as_secs()) * 1_000_000_000);
                                let attempt = AttemptDto {
                                    at,
                                    event: delivery.id.clone(),
                                    delivered: false,
                                    detail: why,
                                    retry_at: Some(retry_at),
                                };
                                state.webhook_attempts.record(id, attempt);
                                backoff.insert(id, Backoff { wait, until: Instant::now() + wait });
                                break;
                            }
                        }
                    }
                }
            }
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
