//! The handler's decisions on in-memory fakes of its two edges, the object store and the secret
//! source (issue 16): no root, no sshd, no moto, a few milliseconds. The partner is an address
//! where nothing listens, so a record that gets as far as the connection fails there, as
//! transient; every decision before it is what these tests see. What needs a real partner
//! (delivery, a rotated password, the deadline cutting a transfer) is in the other test files.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sftp_forward_core::event::ObjectRef;
use sftp_forward_core::receipt::{Delivery, Receipt};
use sftp_forward_core::secret::{SecretError, SecretSource};
use sftp_forward_core::source::{ObjectStore, Opened, StoreError};
use sftp_forward_core::{Forwarder, HandlerError, Settings};

/// An object's bytes and tags.
type Stored = (Vec<u8>, Vec<(String, String)>);

/// Objects by key (one bucket): bytes and tags; every call recorded as `op key`.
#[derive(Default)]
struct MemStore {
    objects: Mutex<HashMap<String, Stored>>,
    calls: Arc<Mutex<Vec<String>>>,
}

fn etag_of(bytes: &[u8]) -> String {
    format!("etag-{}", bytes.len())
}

impl MemStore {
    fn put(&self, key: &str, bytes: &[u8]) {
        let mut objects = self.objects.lock().unwrap();
        objects.insert(key.into(), (bytes.to_vec(), Vec::new()));
    }

    fn tag(&self, key: &str, tags: Vec<(String, String)>) {
        self.objects.lock().unwrap().get_mut(key).unwrap().1 = tags;
    }

    fn note(&self, op: &str, obj: &ObjectRef) -> Option<Stored> {
        self.calls.lock().unwrap().push(format!("{op} {}", obj.key));
        self.objects.lock().unwrap().get(&obj.key).cloned()
    }
}

fn missing(obj: &ObjectRef) -> StoreError {
    StoreError::Missing {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
    }
}

impl ObjectStore for MemStore {
    async fn tags(&self, obj: &ObjectRef) -> Result<Vec<(String, String)>, StoreError> {
        self.note("tags", obj)
            .map(|(_, tags)| tags)
            .ok_or_else(|| missing(obj))
    }

    async fn put_tags(
        &self,
        obj: &ObjectRef,
        tags: Vec<(String, String)>,
    ) -> Result<(), StoreError> {
        self.note("put_tags", obj).ok_or_else(|| missing(obj))?;
        self.tag(&obj.key, tags);
        Ok(())
    }

    async fn open(&self, obj: &ObjectRef) -> Result<Opened, StoreError> {
        let (bytes, tags) = self.note("open", obj).ok_or_else(|| missing(obj))?;
        Ok(Opened {
            len: bytes.len() as u64,
            etag: Some(etag_of(&bytes)),
            last_modified: None,
            sha256: None,
            tag_count: Some(tags.len() as u32),
            body: Box::new(Cursor::new(bytes)),
        })
    }
}

/// Secrets by id; every fetch counted.
#[derive(Default)]
struct MemSecrets {
    values: HashMap<String, String>,
    fetches: Arc<Mutex<usize>>,
}

impl SecretSource for MemSecrets {
    async fn fetch(&self, id: &str) -> Result<String, SecretError> {
        *self.fetches.lock().unwrap() += 1;
        self.values
            .get(id)
            .cloned()
            .ok_or_else(|| SecretError::Unusable {
                id: id.into(),
                problem: "does not exist".into(),
            })
    }
}

const BUCKET: &str = "inbox";
const SECRET_ID: &str = "partner";
const PASSWORD: &str = "s3cr3t-never-shown";

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn partner_text() -> String {
    json!({
        "Host": "127.0.0.1",
        "Port": closed_port(),
        "Username": "acme",
        "Password": PASSWORD,
        "TrustedHostKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"],
        "RemoteDirectory": "inbound",
    })
    .to_string()
}

fn forwarder(store: MemStore, secret: Option<String>) -> Forwarder<MemStore, MemSecrets> {
    forwarder_counting(store, secret, Arc::default())
}

fn forwarder_counting(
    store: MemStore,
    secret: Option<String>,
    fetches: Arc<Mutex<usize>>,
) -> Forwarder<MemStore, MemSecrets> {
    let vars = [
        ("SFTP_FORWARD_SECRET_ID", SECRET_ID),
        ("SFTP_FORWARD_CONNECT_TIMEOUT_SECS", "2"),
    ];
    let settings = Settings::from_env(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let mut secrets = MemSecrets {
        fetches,
        ..MemSecrets::default()
    };
    if let Some(text) = secret {
        secrets.values.insert(SECRET_ID.into(), text);
    }
    Forwarder::new(store, secrets, settings)
}

/// An SQS event of one S3 notification per key, message ids `m-<key>`.
fn sqs(keys: &[&str]) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .map(|key| {
            let body = json!({"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1}}
            }]});
            json!({
                "messageId": format!("m-{key}"), "receiptHandle": "h", "body": body.to_string(),
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "md5OfBody": "0", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:inbox", "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

fn failed_ids(response: &Value) -> Vec<String> {
    let mut ids: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A direct invocation's error text.
async fn direct_error(f: &mut Forwarder<MemStore, MemSecrets>, key: &str) -> String {
    let payload: Value =
        serde_json::from_str(sqs(&[key])["Records"][0]["body"].as_str().unwrap()).unwrap();
    match f.handle(&payload, None).await {
        Err(e @ HandlerError::Batch(_)) => e.to_string(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_receipt_for_this_delivery_skips_the_record() {
    let store = MemStore::default();
    store.put("done.csv", b"1,2\n");
    store.put("new.csv", b"3,4\n");
    let receipt = Receipt::of(Delivery {
        bucket: BUCKET,
        key: "done.csv",
        etag: &etag_of(b"1,2\n"),
        remote_path: "inbound/done.csv",
    });
    store.tag("done.csv", receipt.merge_into(Vec::new()).unwrap());
    let mut f = forwarder(store, Some(partner_text()));

    let response = f
        .handle(&sqs(&["done.csv", "new.csv"]), None)
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&response),
        ["m-new.csv"],
        "the new one reached the (closed) partner and failed there; the delivered one was skipped"
    );
}

#[tokio::test]
async fn a_receipt_carried_by_a_copy_does_not_skip() {
    let store = MemStore::default();
    store.put("moved.csv", b"1,2\n");
    // Carried by a copy: the same bytes, delivered under another key's path.
    let receipt = Receipt::of(Delivery {
        bucket: BUCKET,
        key: "original.csv",
        etag: &etag_of(b"1,2\n"),
        remote_path: "inbound/original.csv",
    });
    store.tag("moved.csv", receipt.merge_into(Vec::new()).unwrap());
    let mut f = forwarder(store, Some(partner_text()));
    let response = f.handle(&sqs(&["moved.csv"]), None).await.unwrap();
    assert_eq!(
        failed_ids(&response),
        ["m-moved.csv"],
        "not skipped: sent (and failed at the closed port)"
    );
}

#[tokio::test]
async fn each_record_gets_its_own_decision_and_the_unreachable_partner_is_transient() {
    let store = MemStore::default();
    store.put("a.csv", b"a");
    let mut f = forwarder(store, Some(partner_text()));
    // A key whose path would leave RemoteDirectory, an object that is gone, one that exists.
    let response = f
        .handle(&sqs(&["../escape.csv", "gone.csv", "a.csv"]), None)
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&response),
        ["m-../escape.csv", "m-a.csv"],
        "the gone object is skipped, not retried forever"
    );

    let e = direct_error(&mut f, "../escape.csv").await;
    assert!(e.contains("permanent"), "an unsafe key is permanent: {e}");
    let e = direct_error(&mut f, "a.csv").await;
    assert!(
        e.contains("transient"),
        "a partner that refuses the connection is transient: {e}"
    );
    assert!(!e.contains(PASSWORD), "{e}");
}

#[tokio::test]
async fn a_missing_or_invalid_secret_fails_every_record_permanently_without_quoting_it() {
    let store = MemStore::default();
    store.put("a.csv", b"a");
    let mut f = forwarder(store, None);
    let e = direct_error(&mut f, "a.csv").await;
    assert!(e.contains("permanent") && e.contains("\"partner\""), "{e}");

    let store = MemStore::default();
    store.put("a.csv", b"a");
    let mut bad: Value = serde_json::from_str(&partner_text()).unwrap();
    bad["Parallelism"] = json!(99);
    let mut f = forwarder(store, Some(bad.to_string()));
    let e = direct_error(&mut f, "a.csv").await;
    assert!(e.contains("permanent") && e.contains("Parallelism"), "{e}");
    assert!(!e.contains(PASSWORD), "{e}");
}

#[tokio::test]
async fn no_time_left_starts_nothing_and_touches_no_object() {
    let store = MemStore::default();
    store.put("a.csv", b"a");
    let calls = store.calls.clone();
    let mut f = forwarder(store, Some(partner_text()));
    let deadline = Instant::now() + Duration::from_millis(50);
    let response = f.handle(&sqs(&["a.csv"]), Some(deadline)).await.unwrap();
    assert_eq!(failed_ids(&response), ["m-a.csv"], "retried later");
    assert!(Instant::now() < deadline, "answered before the deadline");
    assert!(
        calls.lock().unwrap().is_empty(),
        "{:?}",
        calls.lock().unwrap()
    );
}

#[tokio::test]
async fn the_secret_is_read_once_for_a_batch_and_kept_for_the_next() {
    let store = MemStore::default();
    for k in ["a", "b", "c"] {
        store.put(k, b"x");
    }
    let fetches = Arc::<Mutex<usize>>::default();
    let mut f = forwarder_counting(store, Some(partner_text()), fetches.clone());
    f.handle(&sqs(&["a", "b", "c"]), None).await.unwrap();
    f.handle(&sqs(&["a"]), None).await.unwrap();
    assert_eq!(
        *fetches.lock().unwrap(),
        1,
        "one read for both invocations (within its TTL)"
    );
}

/// A forwarder for two partners, `acme/` → secret `acme` and `bank/` → secret `bank`, with the
/// secrets given (a missing one does not exist).
fn two_partners(
    store: MemStore,
    acme: Option<String>,
    bank: Option<String>,
    fetches: Arc<Mutex<usize>>,
) -> Forwarder<MemStore, MemSecrets> {
    use sftp_forward_core::routing::{PartnerSpec, Routing};
    let spec = |name: &str| PartnerSpec {
        name: name.into(),
        prefix: Some(format!("{name}/")),
        secret_id: name.into(),
        ..PartnerSpec::default()
    };
    let routing = Routing::new(vec![spec("acme"), spec("bank")]).unwrap();
    let mut settings = Settings::new(routing);
    settings.tuning.connect_timeout = Duration::from_secs(2);
    let mut secrets = MemSecrets {
        fetches,
        ..MemSecrets::default()
    };
    for (id, text) in [("acme", acme), ("bank", bank)] {
        if let Some(text) = text {
            secrets.values.insert(id.into(), text);
        }
    }
    Forwarder::new(store, secrets, settings)
}

#[tokio::test]
async fn a_key_no_partner_owns_fails_permanently_and_touches_neither_s3_nor_a_secret() {
    let store = MemStore::default();
    store.put("stray/z.csv", b"z");
    let calls = store.calls.clone();
    let fetches = Arc::<Mutex<usize>>::default();
    let mut f = two_partners(
        store,
        Some(partner_text()),
        Some(partner_text()),
        fetches.clone(),
    );
    let response = f.handle(&sqs(&["stray/z.csv"]), None).await.unwrap();
    assert_eq!(
        failed_ids(&response),
        ["m-stray/z.csv"],
        "kept (DLQ), not dropped"
    );
    let e = direct_error(&mut f, "stray/z.csv").await;
    assert!(
        e.contains("permanent") && e.contains("no partner's prefix matches"),
        "{e}"
    );
    assert!(
        e.contains("acme (\"acme/\")") && e.contains("bank (\"bank/\")"),
        "names the prefixes: {e}"
    );
    assert!(
        calls.lock().unwrap().is_empty(),
        "{:?}",
        calls.lock().unwrap()
    );
    assert_eq!(*fetches.lock().unwrap(), 0, "no partner's secret was read");
}

#[tokio::test]
async fn each_partner_has_its_own_secret_and_its_own_failures() {
    let store = MemStore::default();
    store.put("acme/a.csv", b"a");
    store.put("bank/b.csv", b"b");
    let calls = store.calls.clone();
    let fetches = Arc::<Mutex<usize>>::default();
    // acme's secret does not exist; bank's partner refuses connections.
    let mut f = two_partners(store, None, Some(partner_text()), fetches.clone());
    let payload: Value = json!({"Records": [
        serde_json::from_str::<Value>(sqs(&["acme/a.csv"])["Records"][0]["body"].as_str().unwrap()).unwrap()["Records"][0],
        serde_json::from_str::<Value>(sqs(&["bank/b.csv"])["Records"][0]["body"].as_str().unwrap()).unwrap()["Records"][0],
    ]});
    let e = match f.handle(&payload, None).await {
        Err(e @ HandlerError::Batch(_)) => e.to_string(),
        other => panic!("{other:?}"),
    };
    let (acme, bank) = e.split_once("; ").expect("two reasons");
    assert!(
        acme.contains("acme/a.csv") && acme.contains("permanent") && acme.contains("\"acme\""),
        "acme's own secret is missing: {acme}"
    );
    assert!(
        bank.contains("bank/b.csv") && bank.contains("transient"),
        "bank's partner is unreachable: {bank}"
    );
    assert_eq!(*fetches.lock().unwrap(), 2, "each partner's secret, once");
    let calls = calls.lock().unwrap();
    assert!(
        !calls.iter().any(|c| c.ends_with("acme/a.csv")),
        "acme's object is not opened without its secret: {calls:?}"
    );
}
