//! The demo's two partners on one host, each its own OpenSSH sshd on its own port in the partner
//! namespace, and what shows they are kept apart: the provisioner's `partners` config, the stack's
//! outputs (a queue per partner), the security group's rule for each partner's port applied to the
//! private namespaces, and what each partner's disk and sshd log hold at the end.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};
use testkit::testbed::{Testbed, EIPS, PARTNER_IP, PARTNER_NETNS};
use testkit::Sshd;

use crate::mapping::Queue;
use sftp_forward_smoke::job::{Stack, StackPartner};

/// One partner of the demo's stack.
pub struct DemoPartner {
    pub name: &'static str,
    /// Its keys in the bucket.
    pub prefix: &'static str,
    /// Its own remote path template (`None`: `{key}`, its prefix stripped).
    pub template: Option<&'static str>,
    /// The name of the sample file the demo sends it.
    pub sample: &'static str,
    pub sshd: Sshd,
    /// Its directory on the partner's disk.
    pub local: PathBuf,
    /// The same as its secret's `RemoteDirectory`.
    pub remote: String,
}

/// `acme` (keys `acme/`) on port 22 and `bank` (keys `bank/`, files named by their basename under
/// `in/`) on port 2222, both at the partner's address; the partner's firewall admits each port
/// only from the two EIPs.
pub fn start(testbed: &Testbed) -> anyhow::Result<Vec<DemoPartner>> {
    let mut partners = Vec::new();
    for (name, prefix, template, sample, port) in [
        ("acme", "acme/", None, "invoices", 22),
        ("bank", "bank/", Some("in/{basename}"), "orders", 2222),
    ] {
        let sshd = testkit::sshd_in_netns(PARTNER_NETNS, PARTNER_IP, port)
            .map_err(|e| anyhow!("partner {name}'s sshd on port {port}: {e}"))?;
        for eip in EIPS {
            // The partner's allowlist for this port (tests/egress/testbed admits port 22 only).
            let status = testbed
                .command("partner", "iptables")
                .args([
                    "-I",
                    "INPUT",
                    "1",
                    "-p",
                    "tcp",
                    "--dport",
                    &port.to_string(),
                ])
                .args(["-s", &eip.to_string(), "-j", "ACCEPT"])
                .status()
                .context("run iptables in the partner namespace")?;
            if !status.success() {
                bail!("iptables: admitting {eip} to port {port} failed ({status})");
            }
        }
        let (local, remote) = sshd.scratch_dir(name);
        partners.push(DemoPartner {
            name,
            prefix,
            template,
            sample,
            sshd,
            local,
            remote,
        });
    }
    Ok(partners)
}

impl DemoPartner {
    /// Its entry in the provisioner's `partners`, its secret created from `secret_file`.
    pub fn config(&self, secret_file: &Path) -> Value {
        let mut entry =
            json!({"name": self.name, "prefix": self.prefix, "secret_file": secret_file});
        if let Some(t) = self.template {
            entry["remote_path_template"] = json!(t);
        }
        entry
    }

    /// Every file in its directory, relative to it.
    pub fn received(&self) -> BTreeSet<String> {
        testkit::watch::files(&self.local)
            .into_iter()
            .filter_map(|(p, _)| Some(p.strip_prefix(&self.local).ok()?.display().to_string()))
            .collect()
    }

    /// The source addresses of every login its sshd logged.
    pub fn login_sources(&self) -> BTreeSet<String> {
        self.sshd
            .login_sources(&self.sshd.log())
            .into_iter()
            .collect()
    }
}

/// Each partner's queue, by URL and ARN, for its event source mapping.
pub async fn queues(sqs: &aws_sdk_sqs::Client, stack: &Stack) -> anyhow::Result<Vec<Queue>> {
    let mut out = Vec::new();
    for StackPartner {
        name: partner,
        queue: name,
        ..
    } in &stack.partners
    {
        let url = sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .with_context(|| format!("find partner {partner}'s queue {name}"))?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .with_context(|| format!("read the ARN of {name}"))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap_or_default();
        out.push(Queue {
            partner: partner.clone(),
            url,
            arn,
        });
    }
    Ok(out)
}

/// The security group's egress rules to the partners (tcp, one port, a CIDR other than
/// `0.0.0.0/0`) as apply left them, added to the private namespaces' firewall, which stands for
/// the security group (tests/egress/testbed has port 22 only). Returns them as `tcp/PORT → CIDR`.
pub async fn apply_security_group(
    ec2: &aws_sdk_ec2::Client,
    group: &str,
    testbed: &Testbed,
) -> anyhow::Result<Vec<String>> {
    let out = ec2
        .describe_security_groups()
        .group_ids(group)
        .send()
        .await
        .with_context(|| format!("describe the security group {group}"))?;
    let mut rules = Vec::new();
    for permission in out
        .security_groups()
        .iter()
        .flat_map(|g| g.ip_permissions_egress())
    {
        let (Some("tcp"), Some(port), Some(to)) = (
            permission.ip_protocol(),
            permission.from_port(),
            permission.to_port(),
        ) else {
            continue;
        };
        for range in permission.ip_ranges() {
            let cidr = range.cidr_ip().unwrap_or_default();
            if port != to || cidr.is_empty() || cidr == "0.0.0.0/0" {
                continue;
            }
            for ns in ["priv1", "priv2"] {
                let status = testbed
                    .command(ns, "iptables")
                    .args(["-I", "OUTPUT", "1", "-p", "tcp", "-d", cidr])
                    .args(["--dport", &port.to_string(), "-j", "ACCEPT"])
                    .status()
                    .with_context(|| format!("run iptables in {ns}"))?;
                if !status.success() {
                    bail!("iptables in {ns}: allowing tcp/{port} to {cidr} failed ({status})");
                }
            }
            rules.push(format!("tcp/{port} → {cidr}"));
        }
    }
    Ok(rules)
}
