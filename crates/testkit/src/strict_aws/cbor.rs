//! CloudWatch speaks Smithy RPC v2 CBOR to the Rust SDK (`POST /service/GraniteServiceVersion20100801
//! /operation/<Op>`, `smithy-protocol: rpc-v2-cbor`), which moto 5.2 does not serve (it answers
//! CloudWatch's query and JSON protocols: getmoto/moto#9195). The proxy translates: the CBOR
//! request becomes the same operation in AWS JSON 1.0 (`X-Amz-Target`), and moto's JSON answer
//! (or error) goes back as CBOR, timestamps tagged as epoch seconds (RFC 8949 tag 1) as the
//! protocol requires. A wire-format shim only: no behaviour of AWS is added or hidden.

use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{Map, Number, Value};

use super::http::{Request, Response};

/// The path prefix of CloudWatch's RPC v2 operations.
const PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";
/// RFC 8949's epoch-based date/time tag.
const EPOCH: Tag = Tag::new(1);
/// Members that are doubles in CloudWatch's model although moto may write them as integers.
const DOUBLES: &[&str] = &[
    "Threshold",
    "Value",
    "Sum",
    "Minimum",
    "Maximum",
    "SampleCount",
];

/// The operation of an RPC v2 CBOR CloudWatch request, if `req` is one.
pub(crate) fn operation(req: &Request) -> Option<&str> {
    let op = req.path().strip_prefix(PREFIX)?;
    (req.header("smithy-protocol") == Some("rpc-v2-cbor")).then_some(op)
}

/// The same call in AWS JSON 1.0, for moto.
pub(crate) fn to_json_request(req: &Request, op: &str) -> Result<Request, String> {
    let body = if req.body.is_empty() {
        Value::Object(Map::new())
    } else {
        let mut d = Decoder::new(&req.body);
        value(&mut d).map_err(|e| format!("CBOR request of {op}: {e}"))?
    };
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            !matches!(
                k.as_str(),
                "content-type" | "content-length" | "smithy-protocol" | "accept"
            )
        })
        .cloned()
        .collect();
    headers.push(("Content-Type".into(), "application/x-amz-json-1.0".into()));
    headers.push((
        "X-Amz-Target".into(),
        format!("GraniteServiceVersion20100801.{op}"),
    ));
    Ok(Request {
        method: "POST".into(),
        target: "/".into(),
        version: req.version.clone(),
        headers,
        body: body.to_string().into_bytes(),
    })
}

/// moto's JSON answer as the CBOR answer the SDK expects.
pub(crate) fn to_cbor_response(resp: Response) -> Response {
    let json: Value = if resp.body.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(&resp.body).unwrap_or_else(|_| {
            // Not JSON (e.g. an HTML 404): an error envelope naming what moto said.
            serde_json::json!({"__type": "InternalFailure", "message": resp.text()})
        })
    };
    let mut e = Encoder::new(Vec::new());
    encode(&mut e, None, &json).expect("writing to a Vec cannot fail");
    let mut out = Response::new(resp.status, "application/cbor", e.into_writer());
    out.reason = resp.reason;
    out.headers
        .push(("smithy-protocol".into(), "rpc-v2-cbor".into()));
    out
}

fn value(d: &mut Decoder<'_>) -> Result<Value, minicbor::decode::Error> {
    Ok(match d.datatype()? {
        Type::Bool => Value::Bool(d.bool()?),
        Type::Null | Type::Undefined => {
            d.skip()?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64()?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => Value::from(d.i64()?),
        Type::F16 | Type::F32 | Type::F64 => {
            Number::from_f64(d.f64()?).map_or(Value::Null, Value::Number)
        }
        Type::String | Type::StringIndef => {
            let mut s = String::new();
            for part in d.str_iter()? {
                s.push_str(part?);
            }
            Value::String(s)
        }
        Type::Tag => {
            d.tag()?;
            value(d)?
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array()?;
            let mut items = Vec::new();
            while len.is_none_or(|n| (items.len() as u64) < n) {
                if len.is_none() && d.datatype()? == Type::Break {
                    d.set_position(d.position() + 1);
                    break;
                }
                items.push(value(d)?);
            }
            Value::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let len = d.map()?;
            let mut map = Map::new();
            let mut n = 0u64;
            while len.is_none_or(|l| n < l) {
                if len.is_none() && d.datatype()? == Type::Break {
                    d.set_position(d.position() + 1);
                    break;
                }
                let Value::String(k) = value(d)? else {
                    return Err(minicbor::decode::Error::message(
                        "a map key that is not text",
                    ));
                };
                map.insert(k, value(d)?);
                n += 1;
            }
            Value::Object(map)
        }
        other => {
            return Err(minicbor::decode::Error::message(format!(
                "unexpected CBOR {other}"
            )))
        }
    })
}

fn encode(
    e: &mut Encoder<Vec<u8>>,
    key: Option<&str>,
    v: &Value,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    match v {
        Value::Null => {
            e.null()?;
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Number(n) => {
            let timestamp = key.is_some_and(|k| k.ends_with("Timestamp") || k.ends_with("Date"));
            let double = key.is_some_and(|k| DOUBLES.contains(&k));
            if timestamp {
                e.tag(EPOCH)?.f64(n.as_f64().unwrap_or_default())?;
            } else if double || n.is_f64() {
                e.f64(n.as_f64().unwrap_or_default())?;
            } else if let Some(u) = n.as_u64() {
                e.u64(u)?;
            } else {
                e.i64(n.as_i64().unwrap_or_default())?;
            }
        }
        Value::String(s) => {
            e.str(s)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            for item in items {
                encode(e, key, item)?;
            }
        }
        Value::Object(map) => {
            e.map(map.len() as u64)?;
            for (k, item) in map {
                e.str(k)?;
                encode(e, Some(k), item)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_survives_the_round_trip_with_tagged_timestamps() {
        let json = serde_json::json!({
            "MetricAlarms": [{"AlarmName": "a", "Period": 60, "Threshold": 3,
                              "StateUpdatedTimestamp": 1796187897.5, "Dimensions": []}],
            "NextToken": null
        });
        let mut e = Encoder::new(Vec::new());
        encode(&mut e, None, &json).unwrap();
        let bytes = e.into_writer();
        let back = value(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(back["MetricAlarms"][0]["Threshold"], 3.0);
        assert_eq!(back["MetricAlarms"][0]["Period"], 60);
        assert_eq!(
            back["MetricAlarms"][0]["StateUpdatedTimestamp"],
            1796187897.5
        );
        // The timestamp carries tag 1.
        let needle = [0xc1u8, 0xfb];
        assert!(bytes.windows(2).any(|w| w == needle), "{bytes:02x?}");
    }
}
