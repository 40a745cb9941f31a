//! The offline demo: everything on this machine, with real parts.
//!
//! - AWS: the moto server, listening on the testbed's platform address so that the private
//!   namespaces reach it (as a VPC reaches S3 through its gateway endpoint).
//! - The VPC: `tests/egress/testbed` (private subnets → router → NAT one / NAT two with their
//!   EIPs → the internet → the partner, whose firewall admits only the two EIPs).
//! - The stack: `deploy/provision apply` on moto, with two EIPs allocated at the testbed's NAT
//!   addresses and adopted through `eip_allocation_ids`, so the IPs it prints are the ones the
//!   partner sees.
//! - The function: the `bootstrap` binary, one instance in each private namespace, with the
//!   environment `provision` gave the function, each behind its own Lambda Runtime API endpoint.
//! - The event source mapping: [`event_source`] receives batches from the stack's queue, hands each
//!   to an instance (alternating) and deletes only the messages the function did not report failed.
//!
//! All processes and namespaces are stopped by testkit's watchdogs when this process ends
//! (normally, on an error, or on Ctrl-C).

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use aws_sdk_ec2::types::DomainType;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use serde_json::{json, Value};
use sftp_forward_core::event::decode_key;
use sftp_forward_core::source::S3Store;
use sftp_forward_smoke::job::{self, Sample};
use testkit::strict_aws::{StrictAws, Timings};
use testkit::testbed::{Testbed, ECHO_URL, EIPS, PARTNER_IP, PARTNER_NETNS, PLATFORM_IP};
use testkit::{Moto, RuntimeApi, Sshd};

use crate::Args;

/// Where the demo keeps its config, the partner secret file and the function logs (tmpfs, root
/// only); emptied at the start of every run.
const WORK_DIR: &str = "/run/sftp-forward-demo";

/// The checkout (deploy/provision, tests/egress/testbed).
pub fn repo() -> PathBuf {
    testkit::repo_root()
}

pub async fn run(args: &Args) -> anyhow::Result<bool> {
    let repo = repo();
    let work = Path::new(WORK_DIR);
    let _ = std::fs::remove_dir_all(work);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(work)
        .with_context(|| format!("create {WORK_DIR}"))?;
    println!("sftp-forward demo, offline: moto as AWS, network namespaces as the VPC, OpenSSH sshd as the partner");

    println!("\n1. Network: tests/egress/testbed");
    let testbed = Testbed::up().map_err(|e| anyhow!(e))?;
    let moto = testkit::moto_on(PLATFORM_IP);
    let partner = testkit::sshd_in_netns(PARTNER_NETNS, PARTNER_IP, 22)
        .map_err(|e| anyhow!("the partner's sshd: {e}"))?;
    let (_, remote_dir) = partner.scratch_dir("inbound");
    println!("   private-one 10.0.0.32/28 → nat-one → {}", EIPS[0]);
    println!("   private-two 10.0.0.64/28 → nat-two → {}", EIPS[1]);
    println!(
        "   partner {PARTNER_IP}: OpenSSH sshd on port 22, firewall admits only {} and {}; IP echo at {ECHO_URL}",
        EIPS[0], EIPS[1]
    );
    println!("   moto (AWS) at {}", moto.endpoint);
    // moto serves CloudWatch only in its JSON protocol and the SDK speaks CBOR to it: the
    // provisioner goes through testkit's AWS proxy, which translates (its documented refusals at
    // their shortest: each once, retried by the provisioner).
    let provisioning = StrictAws::start(&moto.endpoint, Timings::none())
        .context("start the AWS proxy in front of moto")?;

    println!("\n2. Provision: deploy/provision apply (against moto)");
    let config = moto.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let mut allocations = Vec::new();
    for ip in EIPS {
        let out = ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .address(ip.to_string())
            .send()
            .await
            .with_context(|| format!("allocate the Elastic IP {ip} in moto"))?;
        allocations.push(out.allocation_id().unwrap_or_default().to_owned());
    }
    let secret_file = work.join("partner.json");
    write_private(&secret_file, &partner.partner_json(&remote_dir).to_string())?;
    let zip = match &args.zip {
        Some(z) => z.clone(),
        None => {
            // moto stores the function code without running it (this program runs `bootstrap`
            // itself, step 3): a placeholder package, from the tests' one zip writer.
            let z = work.join("bootstrap.zip");
            let placeholder =
                b"#!/bin/sh\necho 'moto never runs this: deploy/demo runs bootstrap'\n";
            std::fs::write(&z, testkit::zip_with("bootstrap", placeholder))
                .with_context(|| format!("write {}", z.display()))?;
            z
        }
    };
    let config_file = work.join("provision.json");
    let provision_config = json!({
        "stack": args.stack,
        "partner_address": PARTNER_IP.to_string(),
        "secret_file": secret_file,
        "zip": zip,
        "eip_allocation_ids": allocations,
        "environment": {"SFTP_FORWARD_EGRESS_ECHO_URL": ECHO_URL},
    });
    write_private(&config_file, &format!("{provision_config:#}"))?;
    let cfg = config_file.to_string_lossy().into_owned();
    job::provision(&repo, &["apply", "--config", &cfg], &provisioning.env())?;
    let stack = job::outputs(&repo, &["--config", &cfg], &provisioning.env())?;
    // The secret now lives in (moto's) Secrets Manager: no private key stays on disk.
    std::fs::remove_file(&secret_file)
        .with_context(|| format!("remove {}", secret_file.display()))?;
    println!(
        "   Elastic IPs to give the partner for its allowlist: {} (eip-one), {} (eip-two)",
        stack.elastic_ips[0], stack.elastic_ips[1]
    );

    println!(
        "\n3. The function ({}) in both private subnets, fed from the queue",
        stack.function
    );
    let lambda = aws_sdk_lambda::Client::new(&config);
    let function_env: HashMap<String, String> = lambda
        .get_function_configuration()
        .function_name(&stack.function)
        .send()
        .await
        .context("read the function's configuration")?
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    let bootstrap = match &args.bootstrap {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the demo binary's directory")?
            .join("bootstrap"),
    };
    let mut instances = Vec::new();
    for subnet in [1u8, 2] {
        let instance = Instance::start(&testbed, subnet, &bootstrap, &function_env, moto, work)?;
        println!(
            "   private-{}: bootstrap (pid {}) in namespace sfe-priv{subnet}, log {}",
            name(subnet),
            instance.function.pid(),
            instance.function.log.display()
        );
        instances.push(Arc::new(instance));
    }
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&stack.queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .context("read the queue's ARN")?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let mapping = tokio::spawn(event_source(
        sqs,
        stack.queue.clone(),
        queue_arn,
        instances.clone(),
        stop.clone(),
    ));

    println!(
        "\n4. Deliver: upload to s3://{}/, the bucket notifies the queue",
        stack.bucket
    );
    let s3 = S3Store::client(&config);
    let mut all_ok = true;
    for name in ["invoices", "orders"] {
        let sample = Sample::new(name, 20_000);
        let log_before = partner.log().len();
        job::upload(&s3, &stack.bucket, &sample).await?;
        let receipt = job::wait_for_receipt(
            &s3,
            &stack.bucket,
            &sample.key,
            Duration::from_secs(args.wait_secs),
        )
        .await;
        let receipt = match receipt {
            Ok(r) => r,
            Err(e) => {
                println!("   NOT DELIVERED: {e:#}");
                all_ok = false;
                continue;
            }
        };
        all_ok &= verify_at_partner(&partner, &receipt.remote_path, &sample);
        let sources = partner.login_sources(&partner.log()[log_before..]);
        if sources.is_empty() {
            println!("   source IP  (no new login: the instance reused its connection)");
        }
        for ip in sources {
            let which = match stack.elastic_ips.iter().position(|e| *e == ip) {
                Some(0) => "eip-one",
                Some(_) => "eip-two",
                None => {
                    all_ok = false;
                    "NOT one of the stack's EIPs"
                }
            };
            println!("   source IP  the partner's sshd logged the login from {ip} ({which})");
        }
    }

    println!("\n5. Egress self-check: {{\"check\": true}} to each instance");
    for instance in &instances {
        let answer = instance.invoke(json!({"check": true})).await?;
        let answer = if answer.ok {
            serde_json::from_str(&answer.body)
                .map_err(|e| format!("not JSON ({e}): {}", answer.body))
        } else {
            Err(answer.body.clone())
        };
        all_ok &= job::print_check(&format!("private-{}", name(instance.subnet)), &answer);
    }

    stop.store(true, Ordering::Relaxed);
    match mapping.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            println!("   event source mapping failed: {e:#}");
            all_ok = false;
        }
        Err(e) => bail!("event source task: {e}"),
    }
    println!(
        "\nResult: {}",
        if all_ok {
            "OK: both files delivered intact, each from its subnet's EIP; the egress check passed"
        } else {
            "FAILED (see above)"
        }
    );

    if args.keep {
        print_how_to_poke(&provisioning, &partner, &cfg);
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    println!("\nCleaning up: processes stopped, namespaces removed (run with --keep to look around first).");
    drop(instances);
    Ok(all_ok)
}

fn name(subnet: u8) -> &'static str {
    if subnet == 1 {
        "one"
    } else {
        "two"
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("write {}", path.display()))
}

/// Reads the delivered file from the partner's disk and compares it with what was uploaded.
fn verify_at_partner(partner: &Sshd, remote_path: &str, sample: &Sample) -> bool {
    let local = partner.chroot.join(remote_path.trim_start_matches('/'));
    match std::fs::read(&local) {
        Ok(bytes) => {
            let sha = job::sha256_hex(&bytes);
            let same = sha == sample.sha256;
            println!(
                "   at partner {} ({} bytes, sha256 {sha}): {}",
                local.display(),
                bytes.len(),
                if same {
                    "identical to the upload"
                } else {
                    "DIFFERENT from the upload"
                }
            );
            same
        }
        Err(e) => {
            println!("   at partner {}: cannot read it: {e}", local.display());
            false
        }
    }
}

/// One execution environment of the function: `bootstrap` in a private namespace, with its own
/// Runtime API endpoint on the platform address.
struct Instance {
    subnet: u8,
    function: testkit::Function,
}

impl Instance {
    fn start(
        testbed: &Testbed,
        subnet: u8,
        bootstrap: &Path,
        function_env: &HashMap<String, String>,
        moto: &Moto,
        work: &Path,
    ) -> anyhow::Result<Instance> {
        let api = RuntimeApi::start_on(PLATFORM_IP);
        let log = work.join(format!("function-private-{}.log", name(subnet)));
        let mut cmd = testbed.command(&format!("priv{subnet}"), bootstrap);
        cmd.env_clear()
            .envs(testkit::runtime_api::platform_env(
                &api.address(),
                "sftp-forward-demo",
                512,
                &format!("private-{}", name(subnet)),
            ))
            .envs(function_env)
            .envs(moto.env());
        let function = testkit::Function::spawn(cmd, api, log)
            .with_context(|| format!("start {}", bootstrap.display()))?;
        Ok(Instance { subnet, function })
    }

    /// One invocation, waited for off the async threads (the endpoint blocks).
    async fn invoke(self: &Arc<Self>, payload: Value) -> anyhow::Result<testkit::Invocation> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            me.function.api.invoke(
                &payload.to_string(),
                Duration::from_secs(300),
                Duration::from_secs(330),
            )
        })
        .await?
        .map_err(|e| anyhow!(e))
    }
}

/// Lambda's SQS event source mapping, played here: receive a batch, invoke an instance (they
/// alternate), delete the messages that did not fail; failed ones stay for SQS to redeliver.
async fn event_source(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    instances: Vec<Arc<Instance>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        let got = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .context("receive from the queue")?;
        let messages = got.messages();
        if messages.is_empty() {
            continue;
        }
        let instance = &instances[turn % instances.len()];
        turn += 1;
        let answer = instance.invoke(sqs_event(messages, &queue_arn)).await?;
        let failed: Vec<String> = if answer.ok {
            let response: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
            response["batchItemFailures"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            // A failed invocation: Lambda retries the whole batch.
            messages
                .iter()
                .filter_map(|m| m.message_id().map(str::to_owned))
                .collect()
        };
        let mut deleted = 0;
        for m in messages {
            if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                continue;
            }
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .context("delete a processed message")?;
                deleted += 1;
            }
        }
        println!(
            "   [event source mapping] batch of {} ({}) → function in private-{}: {deleted} deleted, {} left for retry",
            messages.len(),
            describe(messages),
            name(instance.subnet),
            failed.len()
        );
    }
    Ok(())
}

/// The SQS event Lambda builds from received messages.
fn sqs_event(messages: &[Message], queue_arn: &str) -> Value {
    let region = queue_arn.split(':').nth(3).unwrap_or(testkit::moto::REGION);
    json!({
        "Records": messages.iter().map(|m| json!({
            "messageId": m.message_id(),
            "receiptHandle": m.receipt_handle(),
            "body": m.body(),
            "attributes": m.attributes().map(|a| a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                .collect::<serde_json::Map<_, _>>()).unwrap_or_default(),
            "messageAttributes": {},
            "md5OfBody": m.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })).collect::<Vec<_>>()
    })
}

/// "s3:TestEvent", or the object keys the notifications name.
fn describe(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().unwrap_or("")).unwrap_or(Value::Null);
            if let Some(event) = body["Event"].as_str() {
                return event.to_owned();
            }
            body["Records"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|r| r["s3"]["object"]["key"].as_str())
                        .map(|k| decode_key(k).unwrap_or_else(|_| k.to_owned()))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| "?".into())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn print_how_to_poke(provisioning: &StrictAws, partner: &Sshd, provision_config: &str) {
    let env: Vec<String> = provisioning
        .env()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "\nStill running (--keep); press Ctrl-C to stop everything. To look around:
   tests/egress/testbed status                      namespaces, route tables, firewall counters
   tests/egress/testbed nat-down 1                  take AZ one's NAT away (nat-up 1, route 1 2)
   cat {log}   the partner's sshd log
   ls -R {upload}                                   what the partner received
   export {env}
   deploy/provision outputs --config {provision_config}
   ip netns exec sfe-priv1 curl -s {ECHO_URL}        the source IP a private subnet shows",
        log = partner.log_path().display(),
        upload = partner.upload_dir.display(),
        env = env.join(" "),
    );
}
