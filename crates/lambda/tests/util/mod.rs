//! Shared by the Lambda test binaries: AWS clients on the moto server, a bucket and a partner
//! secret for the test sshd, SQS payloads built from real notification bodies.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};
use sftp_forward_core::secret::SecretsManager;
use sftp_forward_core::source::S3Store;
use sftp_forward_core::{Forwarder, Settings};
use testkit::{moto, sshd};

pub struct Aws {
    pub config: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sqs: aws_sdk_sqs::Client,
}

/// Clients configured only through standard settings (endpoint, region, credentials).
pub async fn aws() -> Aws {
    let config = moto().sdk_config().await;
    Aws {
        s3: S3Store::client(&config),
        secrets: aws_sdk_secretsmanager::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
        config,
    }
}

/// A name unique within this process and across runs.
pub fn unique(hint: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{hint}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The partner JSON for the test sshd, publishing under `remote_dir`.
pub fn partner_json(remote_dir: &str) -> Value {
    sshd().partner_json(remote_dir)
}

/// The partner JSON for the test sshd reached through `link`, publishing under `remote`.
///
/// `Parallelism` 2: what an interrupted file has in flight goes after the writes already in the
/// link (about 2 MiB per channel, 0.5 s at 8 MB/s), well inside the deadline's cleanup.
pub fn behind(link: &testkit::delay::DelayProxy, remote: &str) -> Value {
    let mut partner = partner_json(remote);
    partner["Port"] = json!(link.addr().port());
    partner["Parallelism"] = json!(2);
    partner
}

/// Every file under `dir` (temporary ones included), as names relative to it.
pub fn left_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = testkit::watch::files(dir)
        .into_iter()
        .map(|(p, _)| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

impl Aws {
    pub async fn bucket(&self, hint: &str) -> String {
        let name = unique(hint).to_lowercase();
        self.s3.create_bucket().bucket(&name).send().await.unwrap();
        name
    }

    /// Puts an object; S3's answer (its ETag, its version id in a versioned bucket).
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
    ) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap()
    }

    pub async fn tags(&self, bucket: &str, key: &str) -> Vec<(String, String)> {
        let out = self
            .s3
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        out.tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect()
    }

    /// A secret holding `value`; returns its name.
    pub async fn secret(&self, value: &Value) -> String {
        let name = unique("partner");
        self.secrets
            .create_secret()
            .name(&name)
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
        name
    }

    pub async fn set_secret(&self, name: &str, value: &Value) {
        self.secrets
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
    }

    /// A forwarder on the real S3 store and Secrets Manager (moto), with settings from `env`.
    pub fn forwarder(
        &self,
        secret: &str,
        env: &[(&str, &str)],
    ) -> Forwarder<S3Store, SecretsManager> {
        let mut vars: Vec<(String, String)> =
            vec![(sftp_forward_core::env::SECRET_ID.into(), secret.into())];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings =
            Settings::from_env(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
                .unwrap();
        Forwarder::new(
            S3Store::new(self.s3.clone()),
            SecretsManager::new(self.secrets.clone()),
            settings,
        )
    }

    /// A new empty queue named after `hint`; returns its URL.
    pub async fn queue(&self, hint: &str) -> String {
        self.sqs
            .create_queue()
            .queue_name(unique(hint))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    /// The ARN of the queue at `url`.
    pub async fn queue_arn(&self, url: &str) -> String {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone()
    }

    /// A queue that an EventBridge rule on the default bus fills with the `sftp-forward` delivery
    /// events of objects in `bucket` (docs/OPERATIONS.md's sample rule, narrowed to one bucket).
    pub async fn events_queue(&self, bucket: &str) -> String {
        let pattern = json!({
            "source": [sftp_forward_core::events::SOURCE],
            "detail": { "local-file-location": { "bucket": [bucket] } },
        });
        self.rule_queue(&pattern).await
    }

    /// A queue that an EventBridge rule on the default bus with this event pattern fills.
    pub async fn rule_queue(&self, pattern: &Value) -> String {
        let url = self.queue("events").await;
        let arn = self.queue_arn(&url).await;
        let events = aws_sdk_eventbridge::Client::new(&self.config);
        let rule = unique("sftp-forward-events");
        events
            .put_rule()
            .name(&rule)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .unwrap();
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(arn)
            .build()
            .unwrap();
        events
            .put_targets()
            .rule(&rule)
            .targets(target)
            .send()
            .await
            .unwrap();
        url
    }

    /// A queue that the bucket notifies on every object creation; the s3:TestEvent is drained.
    pub async fn notifying_queue(&self, bucket: &str) -> String {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        let url = self.queue("inbox").await;
        let arn = self.queue_arn(&url).await;
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(arn)
                            .events(Event::S3ObjectCreated)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        url
    }

    /// Receive up to `n` messages (bounded wait) as (message id, body).
    pub async fn receive(&self, url: &str, n: usize) -> Vec<(String, String)> {
        let mut got = Vec::new();
        for _ in 0..10 {
            if got.len() >= n {
                break;
            }
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in out.messages() {
                got.push((
                    m.message_id().unwrap().to_owned(),
                    m.body().unwrap().to_owned(),
                ));
            }
        }
        got
    }
}

/// A test's usual set-up: the moto clients, a new bucket, a scratch directory on the shared sshd
/// and a partner secret for it.
pub struct Bed {
    pub aws: Aws,
    pub bucket: String,
    /// The scratch directory on this machine, and as the partner names it.
    pub local: std::path::PathBuf,
    pub remote: String,
    pub secret: String,
}

impl Bed {
    pub async fn start(hint: &str) -> Bed {
        let aws = aws().await;
        let bucket = aws.bucket(hint).await;
        let (local, remote) = testkit::scratch_dir(hint);
        let secret = aws.secret(&partner_json(&remote)).await;
        Bed {
            aws,
            bucket,
            local,
            remote,
            secret,
        }
    }

    /// A forwarder for this bed, with settings from `env`.
    pub fn forwarder(&self, env: &[(&str, &str)]) -> Forwarder<S3Store, SecretsManager> {
        self.aws.forwarder(&self.secret, env)
    }
}

/// An SQS event as Lambda delivers it, carrying these (message id, body) pairs.
pub fn sqs_event(messages: &[(String, String)]) -> Value {
    json!({
        "Records": messages.iter().map(|(id, body)| json!({
            "messageId": id,
            "receiptHandle": "handle",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1714651200000",
                           "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1714651200001"},
            "messageAttributes": {},
            "md5OfBody": "0",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:inbox",
            "awsRegion": "us-east-1",
        })).collect::<Vec<_>>()
    })
}

/// An S3 notification body for one object, form-encoding the key as S3 does.
pub fn s3_body(bucket: &str, key: &str) -> String {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": encoded, "size": 1}}
    }]})
    .to_string()
}

/// Failed message ids of an SQS batch response.
pub fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .expect("an SQS batch response")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

/// The environment Lambda gives the `bootstrap` (JSON logs), pointed at `runtime_api`, with the
/// partner secret and the standard AWS settings for moto.
pub fn lambda_env(runtime_api: &str, secret: &str) -> Vec<(&'static str, String)> {
    let mut env = testkit::runtime_api::platform_env(runtime_api, "sftp-forward", 512, "test");
    env.push((sftp_forward_core::env::SECRET_ID, secret.to_owned()));
    env.extend(moto().env());
    env
}

/// The compiled `bootstrap` with its own Runtime API endpoint and JSON logs captured in a file
/// (removed when dropped), configured by [`lambda_env`] plus `extra`.
pub struct Bootstrap(pub testkit::Function);

impl Bootstrap {
    pub fn start(secret: &str, extra: &[(&str, &str)]) -> Bootstrap {
        Bootstrap::start_with(Some(secret), extra)
    }

    /// [`Bootstrap::start`] for a stack of several partners: `SFTP_FORWARD_PARTNERS` is `partners`
    /// (a JSON array), no `SFTP_FORWARD_SECRET_ID`.
    pub fn partners(partners: &Value, extra: &[(&str, &str)]) -> Bootstrap {
        let json = partners.to_string();
        let mut vars = vec![(sftp_forward_core::env::PARTNERS, json.as_str())];
        vars.extend(extra.iter().copied());
        Bootstrap::start_with(None, &vars)
    }

    fn start_with(secret: Option<&str>, extra: &[(&str, &str)]) -> Bootstrap {
        let api = testkit::RuntimeApi::start();
        let log = std::env::temp_dir().join(format!("{}.log", unique("bootstrap")));
        // option_env!: the CLI's tests include this module too, and Cargo names the binary only
        // for the lambda package's own tests.
        let Some(bin) = option_env!("CARGO_BIN_EXE_bootstrap") else {
            panic!("Bootstrap is for the lambda package's tests, which have the bootstrap binary")
        };
        let mut cmd = std::process::Command::new(bin);
        let env = lambda_env(&api.address(), secret.unwrap_or_default());
        let env = env
            .into_iter()
            .filter(|(k, _)| secret.is_some() || *k != sftp_forward_core::env::SECRET_ID);
        cmd.env_clear().envs(env).envs(extra.iter().copied());
        Bootstrap(testkit::Function::spawn(cmd, api, log).expect("start bootstrap"))
    }

    /// One invocation with `deadline` of time (blocks this worker thread: multi-thread runtime).
    pub fn invoke(&self, payload: &Value, deadline: std::time::Duration) -> testkit::Invocation {
        let text = payload.to_string();
        tokio::task::block_in_place(|| {
            self.0.api.invoke(
                &text,
                deadline,
                deadline + std::time::Duration::from_secs(30),
            )
        })
        .unwrap_or_else(|e| panic!("{e}\nfunction log:\n{}", self.log_text()))
    }

    /// [`Bootstrap::invoke`] of an SQS batch that must succeed with no item failed; its response.
    pub fn invoke_all_ok(&self, payload: &Value, deadline: std::time::Duration) -> Value {
        let answer = self.invoke(payload, deadline);
        let response: Value = serde_json::from_str(&answer.body).unwrap_or_default();
        assert!(
            answer.ok && failures(&response).is_empty(),
            "{answer:?}\n{}",
            self.log_text()
        );
        response
    }

    /// Everything the function printed so far.
    pub fn log_text(&self) -> String {
        self.0.log_text()
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0.log).ok();
    }
}

/// The function's JSON log lines that carry an `outcome`, as (outcome, class, reason).
pub fn outcomes(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| {
            let f = if l["fields"].is_object() {
                &l["fields"]
            } else {
                &l
            };
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            f["outcome"]
                .as_str()
                .map(|o| (o.to_owned(), s("class"), s("reason")))
        })
        .collect()
}

/// `len` pseudo-random bytes (xorshift) that differ at every offset: a shifted, truncated or
/// misplaced copy never compares equal.
pub fn noise(len: usize) -> Vec<u8> {
    testkit::noise(len, 0x9e37_79b9_7f4a_7c15)
}
