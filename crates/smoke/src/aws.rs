//! `deploy/demo --aws` (`sftp-forward-smoke`): the smoke test an operator runs after
//! `deploy/provision apply` on real AWS. Lambda's own event source mapping delivers; this only
//! uploads, waits for the receipt and asks the function for its egress self-check.

use anyhow::Context;
use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;
use sftp_forward_core::source::S3Store;

use crate::job::{self, Sample};

/// The smoke test of stack `stack_name`: true when the sample was delivered (receipt within
/// `wait`) and the egress self-check passed.
pub async fn run(stack_name: &str, wait: std::time::Duration) -> anyhow::Result<bool> {
    let repo = crate::repo();
    println!(
        "sftp-forward smoke test against real AWS: stack {stack_name:?} (AWS config of this shell)"
    );
    let stack = job::outputs(&repo, &["--stack", stack_name], &[])?;
    println!(
        "   Elastic IPs (the partner's allowlist): {}",
        stack.elastic_ips.join(", ")
    );
    let config = aws_config::load_from_env().await;
    let s3 = S3Store::client(&config);

    println!("\n1. Deliver a sample through the real pipeline (S3 → SQS → Lambda → NAT → partner)");
    // One sample per partner, under its prefix (a single-partner stack: one, under outbound/).
    let samples: Vec<(String, Sample)> = if stack.partners.is_empty() {
        vec![(String::new(), Sample::new("smoke", 2000))]
    } else {
        stack
            .partners
            .iter()
            .map(|p| {
                let sample = Sample::under(&p.prefix, "smoke", 2000);
                (format!("{}: ", p.name), sample)
            })
            .collect()
    };
    for (_, sample) in &samples {
        job::upload(&s3, &stack.bucket, sample).await?;
    }
    let mut delivered = true;
    for (partner, sample) in &samples {
        if let Err(e) = job::wait_for_receipt(&s3, &stack.bucket, &sample.key, wait).await {
            println!("   {partner}NOT DELIVERED: {e:#}");
            delivered = false;
        }
    }

    println!(
        "\n2. Egress self-check (invoke {} with {{\"check\": true}})",
        stack.function
    );
    let lambda = aws_sdk_lambda::Client::new(&config);
    let answer = invoke_check(&lambda, &stack.function).await?;
    let check_ok = job::print_checks("function", &answer);
    Ok(delivered && check_ok)
}

/// The check invocation: the report, or the function error's message.
async fn invoke_check(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> anyhow::Result<Result<Value, String>> {
    let out = lambda
        .invoke()
        .function_name(function)
        .payload(Blob::new(br#"{"check": true}"#.to_vec()))
        .send()
        .await
        .with_context(|| format!("invoke {function}"))?;
    let raw = out.payload().map(|b| b.as_ref()).unwrap_or_default();
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(_) => {
            let text = String::from_utf8_lossy(raw);
            let shown: String = text.chars().take(200).collect();
            return Ok(Err(format!(
                "the function answered something that is not JSON (is the stack's code this \
                 version's deploy/package zip?): {shown:?}"
            )));
        }
    };
    Ok(match out.function_error() {
        None => Ok(body),
        Some(kind) => Err(format!(
            "{kind}: {}",
            body["errorMessage"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned)
        )),
    })
}
