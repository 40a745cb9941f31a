//! The function's CloudWatch Embedded Metric Format lines: one namespace, and a `FunctionName`
//! dimension on every metric so that two stacks in one account and region never add up (the
//! provisioner's alarms, crates/provision `alarms`, read exactly these names).

use serde_json::{json, Map, Value};

/// The metrics' namespace.
pub const NAMESPACE: &str = "SftpForward";
/// The dimension naming the function (Lambda's `AWS_LAMBDA_FUNCTION_NAME`).
pub const FUNCTION_DIMENSION: &str = "FunctionName";
/// The dimension naming the partner of a record ([`crate::routing`]), beside
/// [`FUNCTION_DIMENSION`].
pub const PARTNER_DIMENSION: &str = "Partner";
/// The self-check's dimension: the AZ it ran in, or [`UNKNOWN_AZ`].
pub const AZ_DIMENSION: &str = "AvailabilityZone";
/// [`AZ_DIMENSION`]'s value when the check could not tell where it ran.
pub const UNKNOWN_AZ: &str = "unknown";

/// The function's name, as Lambda sets it; `local` outside Lambda.
pub fn function_name() -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into())
}

/// One metric of a line: name, unit, value.
pub type Metric<'a> = (&'a str, &'a str, u64);

/// One group of metrics that share their dimension sets.
pub struct Group<'a> {
    /// Each set of dimension names the metrics are published under.
    pub dimension_sets: &'a [&'a [&'a str]],
    /// The metrics.
    pub metrics: &'a [Metric<'a>],
}

/// One EMF line: the groups' metrics with their values, and each dimension's value.
pub fn line(groups: &[Group<'_>], dimensions: &[(&str, String)]) -> Value {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let directives: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "Namespace": NAMESPACE,
                "Dimensions": g.dimension_sets,
                "Metrics": g.metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut out = Map::new();
    out.insert(
        "_aws".into(),
        json!({"Timestamp": now_ms, "CloudWatchMetrics": directives}),
    );
    for (name, value) in dimensions {
        out.insert((*name).into(), json!(value));
    }
    for g in groups {
        for (name, _, value) in g.metrics {
            out.insert((*name).into(), json!(value));
        }
    }
    Value::Object(out)
}
