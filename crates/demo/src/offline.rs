//! The offline demo: everything on this machine, with real parts.
//!
//! - AWS: the moto server, listening on the testbed's platform address so that the private
//!   namespaces reach it (as a VPC reaches S3 through its gateway endpoint).
//! - The VPC: `tests/egress/testbed` (private subnets → router → NAT one / NAT two with their
//!   EIPs → the internet → the partner host, whose firewall admits only the two EIPs).
//! - Two partners on that host ([`partners`](crate::partners)): `acme` (keys `acme/`) on port 22
//!   and `bank` (keys `bank/`) on port 2222, each its own OpenSSH sshd, user and disk.
//! - The stack: `deploy/provision apply` on moto with both partners in its config, with two EIPs
//!   allocated at the testbed's NAT addresses and adopted through `eip_allocation_ids`, so the IPs
//!   it prints are the ones the partners see. The security group's rule for each partner's port is
//!   applied to the private namespaces' firewall.
//! - The function: the `bootstrap` binary, one instance in each private namespace, with the
//!   environment `provision` gave the function, each behind its own Lambda Runtime API endpoint
//!   ([`mapping`](crate::mapping)).
//! - The event source mappings ([`mapping::event_source`]): each partner's queue is read in turn,
//!   each batch handed to an instance (alternating), and only the messages the function did not
//!   report failed are deleted.
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
use serde_json::{json, Value};
use sftp_forward_core::source::S3Store;
use sftp_forward_smoke::job::{self, Sample};
use testkit::strict_aws::{StrictAws, Timings};
use testkit::testbed::{Testbed, ECHO_URL, EIPS, PARTNER_IP, PLATFORM_IP};
use testkit::Sshd;

use crate::mapping::{self, Instance};
use crate::partners::{self, DemoPartner};
use crate::Args;

/// Where the demo keeps its config, the partner secret files and the function logs (tmpfs, root
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
    println!("sftp-forward demo, offline: moto as AWS, network namespaces as the VPC, two partners' OpenSSH sshd's");

    println!("\n1. Network: tests/egress/testbed");
    let testbed = Testbed::up().map_err(|e| anyhow!(e))?;
    let moto = testkit::moto_on(PLATFORM_IP);
    let partners = partners::start(&testbed)?;
    println!("   private-one 10.0.0.32/28 → nat-one → {}", EIPS[0]);
    println!("   private-two 10.0.0.64/28 → nat-two → {}", EIPS[1]);
    for p in &partners {
        println!(
            "   partner {} at {PARTNER_IP}: its own OpenSSH sshd on port {}, keys {}, firewall admits the port only from {} and {}",
            p.name, p.sshd.port, p.prefix, EIPS[0], EIPS[1]
        );
    }
    println!("   IP echo at {ECHO_URL}; moto (AWS) at {}", moto.endpoint);
    // moto serves CloudWatch only in its JSON protocol and the SDK speaks CBOR to it: the
    // provisioner goes through testkit's AWS proxy, which translates (its documented refusals at
    // their shortest: each once, retried by the provisioner).
    let provisioning = StrictAws::start(&moto.endpoint, Timings::none())
        .context("start the AWS proxy in front of moto")?;

    println!("\n2. Provision: deploy/provision apply (against moto), two partners");
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
    let mut secret_files = Vec::new();
    let mut entries = Vec::new();
    for p in &partners {
        let file = work.join(format!("{}.json", p.name));
        write_private(&file, &p.sshd.partner_json(&p.remote).to_string())?;
        entries.push(p.config(&file));
        secret_files.push(file);
    }
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
        "partners": entries,
        "zip": zip,
        "eip_allocation_ids": allocations,
        "environment": {sftp_forward_core::env::EGRESS_ECHO_URL: ECHO_URL},
    });
    write_private(&config_file, &format!("{provision_config:#}"))?;
    let cfg = config_file.to_string_lossy().into_owned();
    job::provision(&repo, &["apply", "--config", &cfg], &provisioning.env())?;
    let stack = job::outputs(&repo, &["--config", &cfg], &provisioning.env())?;
    let security_group = stack
        .security_group
        .clone()
        .context("deploy/provision outputs has no security_group")?;
    // The secrets now live in (moto's) Secrets Manager: no private key stays on disk.
    for file in &secret_files {
        std::fs::remove_file(file).with_context(|| format!("remove {}", file.display()))?;
    }
    if stack.elastic_ips.len() != 2 {
        bail!(
            "the stack has {} Elastic IPs, expected 2",
            stack.elastic_ips.len()
        );
    }
    println!(
        "   Elastic IPs to give the partner for its allowlist: {} (eip-one), {} (eip-two)",
        stack.elastic_ips[0], stack.elastic_ips[1]
    );
    let rules = partners::apply_security_group(&ec2, &security_group, &testbed).await?;
    println!(
        "   security group {}: egress {} (applied to the private namespaces' firewall)",
        security_group,
        rules.join(", ")
    );

    println!(
        "\n3. The function ({}) in both private subnets, fed from the partners' queues",
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
    let queues = partners::queues(&sqs, &stack).await?;
    for q in &queues {
        println!("   partner {}: queue {}", q.partner, q.url);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mapping = tokio::spawn(mapping::event_source(
        sqs,
        queues,
        instances.clone(),
        stop.clone(),
    ));

    println!(
        "\n4. Deliver: one file under each partner's prefix in s3://{}/; each prefix notifies its partner's queue",
        stack.bucket
    );
    let s3 = S3Store::client(&config);
    let mut all_ok = true;
    for p in &partners {
        let mut sample = Sample::new(p.sample, 20_000);
        sample.key = format!("{}{}", p.prefix, sample.key);
        let log_before = p.sshd.log().len();
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
        all_ok &= verify_at_partner(&p.sshd, &receipt.remote_path, &sample);
        let sources = p.sshd.login_sources(&p.sshd.log()[log_before..]);
        if sources.is_empty() {
            println!("   source IP  (no new login: the instance reused its connection)");
        }
        for ip in sources {
            let which = which_eip(&stack.elastic_ips, &ip);
            all_ok &= which.is_some();
            println!(
                "   source IP  {}'s sshd (port {}) logged the login from {ip} ({})",
                p.name,
                p.sshd.port,
                which.unwrap_or("NOT one of the stack's EIPs")
            );
        }
    }

    println!(
        "\n5. Egress self-check: {{\"check\": true}} to each instance, which checks every partner"
    );
    for instance in &instances {
        let answer = instance.invoke(json!({"check": true})).await?;
        all_ok &= print_checks(instance.subnet, &answer);
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

    println!("\n6. What each partner has");
    for p in &partners {
        all_ok &= print_partner(p, &partners, &stack.elastic_ips);
    }
    println!(
        "\nResult: {}",
        if all_ok {
            "OK: each partner received only its own prefix, intact, on its own port; both saw the same two EIPs; the egress check passed"
        } else {
            "FAILED (see above)"
        }
    );

    if args.keep {
        print_how_to_poke(&provisioning, &partners, &cfg);
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    println!("\nCleaning up: processes stopped, namespaces removed (run with --keep to look around first).");
    drop(instances);
    Ok(all_ok)
}

/// `eip-one` or `eip-two`, if `ip` is one of the stack's EIPs.
fn which_eip(eips: &[String], ip: &str) -> Option<&'static str> {
    match eips.iter().position(|e| e == ip) {
        Some(0) => Some("eip-one"),
        Some(_) => Some("eip-two"),
        None => None,
    }
}

/// The check's answer from one instance: one line per partner; true when every partner passed.
fn print_checks(subnet: u8, answer: &testkit::Invocation) -> bool {
    let label = format!("private-{}", name(subnet));
    let answer = if !answer.ok {
        Err(answer.body.clone())
    } else {
        serde_json::from_str::<Value>(&answer.body)
            .map_err(|e| format!("not JSON ({e}): {}", answer.body))
    };
    job::print_checks(&label, &answer)
}

/// What `p`'s disk holds (only files of its own prefix) and the EIPs its sshd saw logins from
/// (both, and nothing else); true when both hold.
fn print_partner(p: &DemoPartner, all: &[DemoPartner], eips: &[String]) -> bool {
    let received = p.received();
    // A file of another partner's sample would carry that sample's name.
    let foreign: Vec<&String> = received
        .iter()
        .filter(|f| all.iter().any(|o| o.name != p.name && f.contains(o.sample)))
        .collect();
    let files = received.iter().cloned().collect::<Vec<_>>().join(", ");
    let own = !received.is_empty() && foreign.is_empty();
    println!(
        "   partner {} (port {}) holds {files}: {}",
        p.name,
        p.sshd.port,
        if own {
            "only its own prefix's file"
        } else {
            "NOT only its own file"
        }
    );
    let sources = p.login_sources();
    let named: Vec<String> = sources
        .iter()
        .map(|ip| format!("{ip} ({})", which_eip(eips, ip).unwrap_or("NOT an EIP")))
        .collect();
    let both = sources.len() == 2 && sources.iter().all(|ip| which_eip(eips, ip).is_some());
    println!(
        "   partner {} (port {}) saw logins from {}{}",
        p.name,
        p.sshd.port,
        named.join(", "),
        if both {
            ""
        } else {
            ": NOT exactly the two EIPs"
        }
    );
    own && both
}

pub fn name(subnet: u8) -> &'static str {
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

fn print_how_to_poke(provisioning: &StrictAws, partners: &[DemoPartner], provision_config: &str) {
    let env: Vec<String> = provisioning
        .env()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "\nStill running (--keep); press Ctrl-C to stop everything. To look around:
   tests/egress/testbed status                      namespaces, route tables, firewall counters
   tests/egress/testbed nat-down 1                  take AZ one's NAT away (nat-up 1, route 1 2)
{logs}
   export {env}
   deploy/provision outputs --config {provision_config}
   ip netns exec sfe-priv1 curl -s {ECHO_URL}        the source IP a private subnet shows",
        logs = partners
            .iter()
            .map(|p| format!(
                "   cat {}   partner {}'s sshd log\n   ls -R {}   what it received",
                p.sshd.log_path().display(),
                p.name,
                p.local.display()
            ))
            .collect::<Vec<_>>()
            .join("\n"),
        env = env.join(" "),
    );
}
