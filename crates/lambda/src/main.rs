//! `bootstrap`: the Lambda function for the `provided.al2023` runtime. Builds the AWS clients once,
//! keeps the forwarder (secret cache, SSH connection) across warm invocations.

// The handler future (SDK calls + SSH + SFTP) is deep; release builds need more than the default 128.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use sftp_forward_core::events::EventSink;
use sftp_forward_core::secret::SecretsManager;
use sftp_forward_core::settings::Events;
use sftp_forward_core::source::S3Store;
use sftp_forward_core::{Forwarder, Settings};
use tokio::sync::Mutex;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    let config = aws_config::load_from_env().await;
    let store = S3Store::new(S3Store::client(&config));
    let secrets = SecretsManager::new(aws_sdk_secretsmanager::Client::new(&config));
    let events = match &settings.events {
        Events::Off => None,
        Events::Bus(bus) => Some(EventSink::new(
            aws_sdk_eventbridge::Client::new(&config),
            bus.clone(),
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "sftp-forward".into()),
        )),
    };
    let mut forwarder = Forwarder::new(store, secrets, settings);
    if let Some(events) = events {
        forwarder = forwarder.after(Box::new(events));
    }
    let forwarder = Arc::new(Mutex::new(forwarder));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let forwarder = forwarder.clone();
        async move {
            let deadline = instant_of(event.context.deadline);
            // One invocation at a time per instance: records share the one partner connection.
            let mut forwarder = forwarder.lock().await;
            forwarder
                .handle(&event.payload, deadline)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.error_type().to_owned(),
                    error_message: e.to_string(),
                })
        }
    }))
    .await
}

/// The invocation deadline (epoch milliseconds) as an `Instant`; one already past is now (so
/// nothing is started), never "no deadline".
fn instant_of(deadline_ms: u64) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}
