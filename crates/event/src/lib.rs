//! Event decoding: whatever invoked the function (an S3 notification, SQS messages carrying S3
//! notifications, an EventBridge "Object Created" event) becomes a list of [`Item`]s, each holding
//! the objects to forward or the reason it cannot be read. Decoding never drops a record: a record
//! it cannot understand becomes a failed item that is reported, not skipped.

use aws_lambda_events::event::sqs::SqsEvent;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

/// One S3 object named by an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// The object key, decoded (as S3's API expects it).
    pub key: String,
    /// The object version the event is about, when the bucket is versioned.
    pub version_id: Option<String>,
    /// ETag from the event, without quotes.
    pub etag: Option<String>,
    /// Size from the event.
    pub size: Option<u64>,
}

/// What one record asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Forward this object.
    Forward(ObjectRef),
    /// Acknowledge and do nothing (S3 test event, folder marker), with the reason for the log.
    Skip(String),
}

/// One unit of acknowledgement: an SQS message, or one record of a direct invocation.
#[derive(Debug)]
pub struct Item {
    /// The SQS message id (what a batch item failure names); `None` for direct invocations.
    pub message_id: Option<String>,
    /// How many times SQS has handed this message out (`ApproximateReceiveCount`, 1 on the first
    /// delivery); `None` for direct invocations. Compared with the queue's `maxReceiveCount` to
    /// tell a last attempt (a failure then sends the message to the dead-letter queue).
    pub receive_count: Option<u32>,
    /// The work, or why the record could not be decoded (a permanent failure).
    pub work: Result<Vec<Work>, DecodeError>,
}

/// How the function was invoked: this decides the shape of the response.
#[derive(Debug)]
pub enum Invocation {
    /// SQS messages: answer with the ids of the failed ones (ReportBatchItemFailures).
    Sqs(Vec<Item>),
    /// An S3 notification or EventBridge event: fail the invocation if any item failed.
    Direct(Vec<Item>),
    /// `{"check": true}`: run the egress self-check (the function's `check` module) instead of forwarding.
    Check,
}

/// Why an event or record cannot be understood. Always permanent: the same bytes will not decode later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is none of the shapes this function accepts.
    #[error(
        "unrecognised event: expected an S3 notification (Records[].s3), SQS messages (Records[].eventSource = aws:sqs), \
         an EventBridge \"Object Created\" event from aws.s3, or {{\"check\": true}}; got {what}"
    )]
    UnknownShape { what: String },
    /// The JSON has the right shape but a field is missing or of the wrong type.
    #[error("malformed {shape}: {problem}")]
    Malformed {
        shape: &'static str,
        problem: String,
    },
    /// The key is not valid percent-encoded UTF-8.
    #[error("object key {raw:?} is not valid URL-encoded UTF-8")]
    BadKey { raw: String },
}

/// Decode an invocation payload.
pub fn decode(payload: &Value) -> Result<Invocation, DecodeError> {
    if payload.get("check") == Some(&Value::Bool(true)) {
        return Ok(Invocation::Check);
    }
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        let source = records
            .first()
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        return match source {
            "aws:sqs" => {
                let event: SqsEvent = serde_json::from_value(payload.clone())
                    .map_err(|e| malformed("SQS event", e))?;
                Ok(Invocation::Sqs(
                    event
                        .records
                        .into_iter()
                        .map(|m| Item {
                            receive_count: m
                                .attributes
                                .get("ApproximateReceiveCount")
                                .and_then(|n| n.parse().ok()),
                            message_id: m.message_id,
                            work: match m.body {
                                Some(body) => decode_message_body(&body),
                                None => Err(DecodeError::Malformed {
                                    shape: "SQS message",
                                    problem: "no body".into(),
                                }),
                            },
                        })
                        .collect(),
                ))
            }
            "aws:s3" => Ok(Invocation::Direct(
                records
                    .iter()
                    .map(|r| Item {
                        message_id: None,
                        receive_count: None,
                        work: decode_s3_record(r).map(|w| vec![w]),
                    })
                    .collect(),
            )),
            other => Err(DecodeError::UnknownShape {
                what: format!("Records with eventSource {other:?}"),
            }),
        };
    }
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Invocation::Direct(vec![Item {
            message_id: None,
            receive_count: None,
            work: Ok(vec![Work::Skip("s3:TestEvent".into())]),
        }]));
    }
    if is_eventbridge(payload) {
        return Ok(Invocation::Direct(vec![Item {
            message_id: None,
            receive_count: None,
            work: decode_eventbridge(payload).map(|w| vec![w]),
        }]));
    }
    Err(DecodeError::UnknownShape {
        what: describe(payload),
    })
}

/// The body of one SQS message: an S3 notification (one or more records), an `s3:TestEvent`,
/// or an EventBridge event routed to the queue.
pub fn decode_message_body(body: &str) -> Result<Vec<Work>, DecodeError> {
    let value: Value = serde_json::from_str(body).map_err(|e| DecodeError::Malformed {
        shape: "SQS message body",
        problem: format!("not JSON ({e})"),
    })?;
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(vec![Work::Skip(
            "s3:TestEvent (sent when a bucket notification is configured)".into(),
        )]);
    }
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        if records.is_empty() {
            return Err(DecodeError::Malformed {
                shape: "S3 notification",
                problem: "Records is empty".into(),
            });
        }
        return records.iter().map(decode_s3_record).collect();
    }
    if is_eventbridge(&value) {
        return decode_eventbridge(&value).map(|w| vec![w]);
    }
    Err(DecodeError::UnknownShape {
        what: describe(&value),
    })
}

/// The fields of an S3 notification record we use. Parsed leniently: only these must be present,
/// so records from S3-compatible senders with fewer fields still decode.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_name: Option<String>,
    s3: S3Entity,
}
#[derive(Deserialize)]
struct S3Entity {
    bucket: EbBucket,
    object: S3Object,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: Option<String>,
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
}

fn decode_s3_record(record: &Value) -> Result<Work, DecodeError> {
    let record: S3Record =
        serde_json::from_value(record.clone()).map_err(|e| malformed("S3 event record", e))?;
    let name = record.event_name.unwrap_or_default();
    if !name.starts_with("ObjectCreated:") && !name.starts_with("s3:ObjectCreated:") {
        return Ok(Work::Skip(format!(
            "event {name:?} is not an object creation"
        )));
    }
    let bucket = non_empty(record.s3.bucket.name, "S3 event record", "s3.bucket.name")?;
    let raw_key = non_empty(record.s3.object.key, "S3 event record", "s3.object.key")?;
    let key = decode_key(&raw_key)?;
    object_or_marker(ObjectRef {
        bucket,
        key,
        version_id: record
            .s3
            .object
            .version_id
            .filter(|v| !v.is_empty() && v != "null"),
        etag: record.s3.object.e_tag.map(unquote),
        size: record.s3.object.size,
    })
}

#[derive(Deserialize)]
struct EbDetail {
    bucket: EbBucket,
    object: EbObject,
}
#[derive(Deserialize)]
struct EbBucket {
    name: Option<String>,
}
#[derive(Deserialize)]
struct EbObject {
    key: Option<String>,
    size: Option<u64>,
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
}

fn is_eventbridge(v: &Value) -> bool {
    v.get("detail-type").is_some() && v.get("detail").is_some()
}

fn decode_eventbridge(v: &Value) -> Result<Work, DecodeError> {
    let source = v.get("source").and_then(Value::as_str).unwrap_or_default();
    let detail_type = v
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if source != "aws.s3" || detail_type != "Object Created" {
        return Err(DecodeError::UnknownShape {
            what: format!("an EventBridge event from {source:?} of type {detail_type:?}"),
        });
    }
    let detail: EbDetail = serde_json::from_value(v["detail"].clone())
        .map_err(|e| malformed("EventBridge S3 event", e))?;
    // EventBridge carries the key as stored (not form-encoded like S3 notifications): use it as is.
    object_or_marker(ObjectRef {
        bucket: non_empty(
            detail.bucket.name,
            "EventBridge S3 event",
            "detail.bucket.name",
        )?,
        key: non_empty(
            detail.object.key,
            "EventBridge S3 event",
            "detail.object.key",
        )?,
        version_id: detail.object.version_id.filter(|v| !v.is_empty()),
        etag: detail.object.etag.map(unquote),
        size: detail.object.size,
    })
}

fn object_or_marker(obj: ObjectRef) -> Result<Work, DecodeError> {
    if obj.key.ends_with('/') {
        return Ok(Work::Skip(format!("{:?} is a folder marker", obj.key)));
    }
    Ok(Work::Forward(obj))
}

/// S3 notification keys are form-encoded: `+` is a space, then percent-escapes are UTF-8 bytes.
/// (`a+b%2Bc%20d.csv` → `a b+c d.csv`.) moto also encodes `/` as `%2F`; that decodes the same way.
pub fn decode_key(raw: &str) -> Result<String, DecodeError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| DecodeError::BadKey {
            raw: raw.to_owned(),
        })
}

fn unquote(etag: String) -> String {
    etag.trim_matches('"').to_owned()
}

fn non_empty(v: Option<String>, shape: &'static str, field: &str) -> Result<String, DecodeError> {
    v.filter(|s| !s.is_empty())
        .ok_or_else(|| DecodeError::Malformed {
            shape,
            problem: format!("{field} is missing or empty"),
        })
}

fn malformed(shape: &'static str, e: serde_json::Error) -> DecodeError {
    DecodeError::Malformed {
        shape,
        problem: e.to_string(),
    }
}

/// A short description of an unknown payload: its top-level field names (never its values).
fn describe(v: &Value) -> String {
    match v {
        Value::Object(m) => format!(
            "an object with fields {:?}",
            m.keys().take(8).collect::<Vec<_>>()
        ),
        Value::Array(_) => "a JSON array".into(),
        Value::String(_) => "a JSON string".into(),
        other => format!("JSON {}", other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        // Read at run time: the compiled test may come from another checkout sharing the target dir.
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let path = format!("{dir}/../../fixtures/events/{name}");
        serde_json::from_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        )
        .unwrap()
    }

    fn forwards(inv: Invocation) -> Vec<ObjectRef> {
        let items = match inv {
            Invocation::Sqs(i) | Invocation::Direct(i) => i,
            Invocation::Check => panic!("not a check"),
        };
        items
            .into_iter()
            .flat_map(|i| i.work.unwrap())
            .filter_map(|w| match w {
                Work::Forward(o) => Some(o),
                Work::Skip(_) => None,
            })
            .collect()
    }

    #[test]
    fn keys_are_form_decoded() {
        assert_eq!(decode_key("a+b%2Bc%20d.csv").unwrap(), "a b+c d.csv");
        assert_eq!(decode_key("dir%2Fsub%2Ff.txt").unwrap(), "dir/sub/f.txt");
        assert_eq!(
            decode_key("donn%C3%A9es/%E5%A0%B1%E5%91%8A.csv").unwrap(),
            "données/報告.csv"
        );
        assert!(matches!(
            decode_key("bad%FF%FE"),
            Err(DecodeError::BadKey { .. })
        ));
    }

    #[test]
    fn aws_sample_s3_put_event() {
        let objs = forwards(decode(&fixture("s3-put.json")).unwrap());
        assert_eq!(
            objs,
            [ObjectRef {
                bucket: "amzn-s3-demo-bucket".into(),
                key: "test/key".into(),
                version_id: None,
                etag: Some("0123456789abcdef0123456789abcdef".into()),
                size: Some(1024),
            }]
        );
    }

    #[test]
    fn sqs_wrapped_s3_event_keeps_message_ids() {
        let Invocation::Sqs(items) = decode(&fixture("sqs-s3-put.json")).unwrap() else {
            panic!("expected SQS")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].message_id.as_deref(),
            Some("059f36b4-87a3-44ab-83d2-661975830a7d")
        );
        assert_eq!(items[0].receive_count, Some(1), "ApproximateReceiveCount");
        let Ok(work) = &items[0].work else { panic!() };
        assert!(
            matches!(&work[0], Work::Forward(o) if o.key == "incoming/a b+c d.csv" && o.version_id.as_deref() == Some("3HL4kqtJlcpXroDTDmJ"))
        );
        // The second message is an s3:TestEvent: acknowledged, nothing forwarded.
        assert!(matches!(&items[1].work, Ok(w) if matches!(w[..], [Work::Skip(_)])));
    }

    #[test]
    fn eventbridge_object_created() {
        let objs = forwards(decode(&fixture("eventbridge-object-created.json")).unwrap());
        assert_eq!(objs[0].bucket, "amzn-s3-demo-bucket1");
        assert_eq!(objs[0].key, "reports/2024 Q1+final.csv");
        assert_eq!(
            objs[0].version_id.as_deref(),
            Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e")
        );
        assert_eq!(objs[0].size, Some(5));
    }

    #[test]
    fn unicode_and_plus_keys() {
        let objs = forwards(decode(&fixture("s3-put-special-keys.json")).unwrap());
        let keys: Vec<&str> = objs.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "with space.csv",
                "c++ notes (1).txt",
                "données/報告 2024 📦.csv"
            ]
        );
    }

    #[test]
    fn folder_markers_and_test_events_are_skipped() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-01-01T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"folder%2F","size":0}}}]}"#;
        assert!(
            matches!(&decode_message_body(body).unwrap()[..], [Work::Skip(r)] if r.contains("folder marker"))
        );
        let Invocation::Direct(items) = decode(&fixture("s3-test-event.json")).unwrap() else {
            panic!("a direct invocation")
        };
        assert!(matches!(&items[0].work, Ok(w) if matches!(w[..], [Work::Skip(_)])));
        let body = serde_json::to_string(&fixture("s3-test-event.json")).unwrap();
        assert!(matches!(
            &decode_message_body(&body).unwrap()[..],
            [Work::Skip(_)]
        ));
    }

    #[test]
    fn a_check_payload_asks_for_the_self_check() {
        assert!(matches!(
            decode(&serde_json::json!({"check": true})),
            Ok(Invocation::Check)
        ));
        let err = decode(&serde_json::json!({"check": "yes"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unrecognised event"), "{err}");
    }

    #[test]
    fn unknown_and_malformed_events_are_clear_errors() {
        let err = decode(&serde_json::json!({"hello": "world"}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unrecognised event") && err.contains("hello"),
            "{err}"
        );
        let err =
            decode(&serde_json::json!({"Records": [{"eventSource": "aws:dynamodb"}]})).unwrap_err();
        assert!(err.to_string().contains("aws:dynamodb"));
        let err = decode_message_body("{not json").unwrap_err().to_string();
        assert!(err.contains("not JSON"), "{err}");
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2024-01-01T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":""},"object":{"key":"k"}}}]}"#;
        let err = decode_message_body(body).unwrap_err().to_string();
        assert!(err.contains("s3.bucket.name"), "{err}");
    }
}
