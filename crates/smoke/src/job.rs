//! What both the smoke test and the offline demo (crates/demo) do: read the stack's outputs,
//! upload a sample, wait for the function's delivery receipt on the object, and print the egress
//! self-check's report.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use sftp_forward_core::receipt::Receipt;
use sha2::{Digest, Sha256};

/// What `deploy/provision outputs` says about the stack.
pub struct Stack {
    pub bucket: String,
    /// The single partner's queue (a stack with `partners` has one per partner instead).
    pub queue: Option<String>,
    pub function: String,
    /// The function's security group.
    pub security_group: Option<String>,
    pub elastic_ips: Vec<String>,
    /// A stack with `partners`: each partner as the stack has it.
    pub partners: Vec<StackPartner>,
}

/// A partner of a stack with `partners`, from `deploy/provision outputs`.
pub struct StackPartner {
    pub name: String,
    /// Its key prefix in the bucket.
    pub prefix: String,
    /// Its queue's name.
    pub queue: String,
}

/// Runs `deploy/provision ARGS` with `env` added; its output goes to the terminal, indented.
pub fn provision(repo: &Path, args: &[&str], env: &[(&'static str, String)]) -> anyhow::Result<()> {
    let out = provision_output(repo, args, env)?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        println!("   | {line}");
    }
    if !out.status.success() {
        bail!(
            "deploy/provision {} failed ({})",
            args.join(" "),
            out.status
        );
    }
    Ok(())
}

fn provision_output(
    repo: &Path,
    args: &[&str],
    env: &[(&'static str, String)],
) -> anyhow::Result<std::process::Output> {
    let script = repo.join("deploy/provision");
    Command::new(&script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .with_context(|| format!("run {}", script.display()))
}

/// `deploy/provision outputs ARGS` as a [`Stack`]; says what is missing.
pub fn outputs(
    repo: &Path,
    args: &[&str],
    env: &[(&'static str, String)],
) -> anyhow::Result<Stack> {
    let mut all = vec!["outputs"];
    all.extend_from_slice(args);
    let out = provision_output(repo, &all, env)?;
    if !out.status.success() {
        bail!(
            "deploy/provision outputs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("deploy/provision outputs: JSON")?;
    let field = |name: &str| -> anyhow::Result<String> {
        v[name].as_str().map(str::to_owned).with_context(|| {
            format!(
                "the stack {:?} has no {name}: run deploy/provision apply first",
                v["stack"].as_str().unwrap_or("?")
            )
        })
    };
    let elastic_ips: Vec<String> = v["elastic_ips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if elastic_ips.len() != 2 {
        bail!(
            "the stack has {} Elastic IPs, expected 2: run deploy/provision apply",
            elastic_ips.len()
        );
    }
    let partners: Vec<StackPartner> = v["partners"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some(StackPartner {
                        name: p["name"].as_str()?.to_owned(),
                        prefix: p["prefix"].as_str().unwrap_or_default().to_owned(),
                        queue: p["queue"].as_str()?.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Stack {
        bucket: field("bucket")?,
        queue: if partners.is_empty() {
            Some(field("queue")?)
        } else {
            None
        },
        function: field("function")?,
        security_group: v["security_group"].as_str().map(str::to_owned),
        elastic_ips,
        partners,
    })
}

/// A sample file: readable CSV rows, about `rows` × 60 bytes.
pub struct Sample {
    pub key: String,
    pub body: Vec<u8>,
    pub sha256: String,
}

impl Sample {
    pub fn new(name: &str, rows: usize) -> Sample {
        Sample::under("outbound/", name, rows)
    }

    /// [`Sample::new`] with its key under `prefix` (a partner's, on a stack with `partners`).
    pub fn under(prefix: &str, name: &str, rows: usize) -> Sample {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut body = String::from("row,item,amount,note\n");
        for i in 0..rows {
            body += &format!(
                "{i},{name}-item-{:05},{}.{:02},delivered by sftp-forward\n",
                i * 7 % 10007,
                i * 13 % 997,
                i % 100
            );
        }
        let body = body.into_bytes();
        Sample {
            key: format!("{prefix}{stamp}-{name}.csv"),
            sha256: sha256_hex(&body),
            body,
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn upload(s3: &aws_sdk_s3::Client, bucket: &str, sample: &Sample) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(&sample.key)
        .body(ByteStream::from(sample.body.clone()))
        .send()
        .await
        .with_context(|| format!("upload s3://{bucket}/{}", sample.key))?;
    println!(
        "   uploaded   s3://{bucket}/{} ({} bytes, sha256 {})",
        sample.key,
        sample.body.len(),
        sample.sha256
    );
    Ok(())
}

/// Polls the object's tags until the function's delivery receipt appears (or `wait` passes).
pub async fn wait_for_receipt(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    wait: Duration,
) -> anyhow::Result<Receipt> {
    let started = Instant::now();
    loop {
        let tags = s3
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("read the tags of s3://{bucket}/{key}"))?;
        let tags: Vec<(String, String)> = tags
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        if let Some(receipt) = Receipt::from_tags(&tags) {
            println!(
                "   delivered  {} on the partner after {:.1} s (receipt tag {})",
                receipt.remote_path,
                started.elapsed().as_secs_f64(),
                sftp_forward_core::receipt::DELIVERED
            );
            return Ok(receipt);
        }
        if started.elapsed() > wait {
            bail!(
                "s3://{bucket}/{key} has no delivery receipt after {wait:?}: look at the function's \
                 logs and the queue's dead-letter queue"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints the egress self-check's answer for one function instance: one line per partner of a
/// stack with several (`{"partners": [{"name", ...report}]}`), else the one report; true when
/// every partner passed. `answer` is the answer, or the invocation's error message.
pub fn print_checks(label: &str, answer: &Result<Value, String>) -> bool {
    match answer {
        Ok(doc) if doc["partners"].as_array().is_some_and(|a| !a.is_empty()) => doc["partners"]
            .as_array()
            .into_iter()
            .flatten()
            .fold(true, |ok, r| {
                let name = r["name"].as_str().unwrap_or("?");
                print_check(&format!("{label} → {name}"), &Ok(r.clone())) && ok
            }),
        _ => print_check(label, answer),
    }
}

/// Prints one self-check report (or the invocation's error message); true when it passed.
fn print_check(label: &str, answer: &Result<Value, String>) -> bool {
    match answer {
        Ok(r) => {
            let s = |k: &str| {
                r[k].as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| r[k].to_string())
            };
            println!(
                "   {label}: egress IP {} ({}; expected {}), host key {} trusted={}, login {}, writable {}",
                s("egress_ip"),
                s("egress_match"),
                r["expected_egress_ips"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
                s("fingerprint"),
                r["trusted"],
                s("login"),
                r["writable"],
            );
            r["ok"] == true
        }
        Err(message) => {
            println!("   {label}: CHECK FAILED: {message}");
            false
        }
    }
}
