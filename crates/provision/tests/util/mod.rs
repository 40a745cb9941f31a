//! Shared by the provisioner's tests: SDK config for the strict-AWS bed (moto behind
//! `testkit::strict_aws`, which replays real AWS's eventual consistency and async states), a stack
//! spec with a small function zip and a secret file, and describe helpers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use aws_config::SdkConfig;
use provision::context::{Ctx, Mode};
use provision::{apply, Clients, RawConfig, Report, Spec, STACK_TAG};

/// The partner the security group is written for (documentation range).
pub const PARTNER_IP: &str = "198.51.100.7";

/// moto's account id (what STS answers there).
pub const ACCOUNT: &str = "123456789012";

/// The standard SDK config pointed at this binary's strict-AWS bed (endpoint, region, static keys).
pub async fn sdk_config() -> SdkConfig {
    testkit::strict_aws().sdk_config().await
}

/// Clients for moto, as the binary builds them.
pub async fn clients() -> Clients {
    Clients::new(&sdk_config().await).expect("region is set")
}

/// A directory with `bootstrap.zip` (a small valid zip: moto never runs it) and `partner.json`.
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Self {
        Self::with_partner(partner_json())
    }

    /// Test files whose partner JSON is `partner`.
    pub fn with_partner(partner: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("bootstrap.zip"),
            zip_with("bootstrap", b"#!/bin/sh\necho not run\n"),
        )
        .expect("write zip");
        std::fs::write(dir.path().join("partner.json"), partner).expect("write secret file");
        Files { dir }
    }
    pub fn zip(&self) -> PathBuf {
        self.dir.path().join("bootstrap.zip")
    }
    pub fn secret_file(&self) -> PathBuf {
        self.dir.path().join("partner.json")
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The partner secret the tests store (the README's example shape).
pub fn partner_json() -> &'static str {
    include_str!("../../../../fixtures/partner.example.json")
}

/// A config for `stack` with the test files, the test partner and max concurrency 3.
pub fn raw(stack: &str, files: &Files) -> RawConfig {
    RawConfig {
        stack: Some(stack.into()),
        partner_address: Some(PARTNER_IP.into()),
        secret_file: Some(files.secret_file()),
        zip: Some(files.zip()),
        max_concurrency: Some(3),
        ..RawConfig::default()
    }
}

/// The validated spec, with the default bucket name of moto's account and region.
pub fn spec(raw: RawConfig) -> Spec {
    Spec::from_raw(raw, "/nonexistent/bootstrap.zip".into())
        .and_then(|s| s.for_account(ACCOUNT, testkit::moto::REGION))
        .expect("valid spec")
}

/// Runs `apply` (or `plan`) and returns the report.
pub async fn run(
    c: &Clients,
    spec: &Spec,
    mode: Mode,
) -> Result<(apply::Applied, Report), provision::Error> {
    let report = Report::quiet();
    let ctx = Ctx {
        clients: c,
        spec,
        mode,
        report: &report,
    };
    let applied = apply::run(ctx).await?;
    Ok((applied, report))
}

/// Asserts that each strict-AWS behaviour bit the resource named (its id or name), i.e. that the
/// provisioner met it and waited it out: without the wait the run would have failed.
pub fn assert_bit(expected: &[(testkit::strict_aws::Behaviour, &str)]) {
    let strict = testkit::strict_aws();
    for (b, subject) in expected {
        assert!(
            strict.count(b.clone(), subject) >= 1,
            "{b:?} never bit {subject}: {:#?}",
            strict.injections()
        );
    }
}

/// Creates the IAM role `name` (Lambda may assume it) tagged for `stack`, as if an earlier run or
/// another stack had.
pub async fn create_tagged_role(c: &Clients, name: &str, stack: &str) {
    c.iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(provision::iam::trust_policy().to_string())
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key(STACK_TAG)
                .value(stack)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Creates `bucket` (untagged) and an operator's queue `queue`, and has the bucket notify that
/// queue of `event` (with notification `id` and key `prefix`, if given), as an operator or
/// another tool would have before the stack came.
pub async fn operator_notification(
    c: &Clients,
    bucket: &str,
    queue: &str,
    id: Option<&str>,
    event: &str,
    prefix: Option<&str>,
) {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    use aws_sdk_sqs::types::QueueAttributeName;
    c.s3.create_bucket().bucket(bucket).send().await.unwrap();
    let url = c.sqs.create_queue().queue_name(queue).send().await.unwrap();
    let attrs = c
        .sqs
        .get_queue_attributes()
        .queue_url(url.queue_url().unwrap())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let arn = &attrs.attributes().unwrap()[&QueueAttributeName::QueueArn];
    let filter = prefix.map(|p| {
        let rule = FilterRule::builder()
            .name(FilterRuleName::Prefix)
            .value(p)
            .build();
        NotificationConfigurationFilter::builder()
            .key(S3KeyFilter::builder().filter_rules(rule).build())
            .build()
    });
    let config = QueueConfiguration::builder()
        .set_id(id.map(str::to_owned))
        .queue_arn(arn)
        .events(Event::from(event))
        .set_filter(filter)
        .build()
        .unwrap();
    c.s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(config)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// A stack filter for EC2 describe calls.
pub fn stack_filter(stack: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{STACK_TAG}"))
        .values(stack)
        .build()
}

/// The Name tag of an EC2 resource's tags.
pub fn name_of(tags: &[aws_sdk_ec2::types::Tag]) -> String {
    tags.iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value())
        .unwrap_or_default()
        .to_owned()
}

/// How many EC2 resources carry the stack tag (NAT gateways and endpoints only while not deleted).
pub async fn tagged_ec2(c: &Clients, stack: &str) -> Vec<String> {
    let f = || Some(vec![stack_filter(stack)]);
    let ec2 = &c.ec2;
    let mut found = Vec::new();
    for v in ec2
        .describe_vpcs()
        .set_filters(f())
        .send()
        .await
        .unwrap()
        .vpcs()
    {
        found.push(format!("vpc {}", v.vpc_id().unwrap()));
    }
    for s in ec2
        .describe_subnets()
        .set_filters(f())
        .send()
        .await
        .unwrap()
        .subnets()
    {
        found.push(format!("subnet {}", name_of(s.tags())));
    }
    for g in ec2
        .describe_internet_gateways()
        .set_filters(f())
        .send()
        .await
        .unwrap()
        .internet_gateways()
    {
        found.push(format!("igw {}", g.internet_gateway_id().unwrap()));
    }
    // moto ignores tag filters on NAT gateways: check the tag here.
    for n in ec2
        .describe_nat_gateways()
        .set_filter(f())
        .send()
        .await
        .unwrap()
        .nat_gateways()
    {
        let ours = n
            .tags()
            .iter()
            .any(|t| t.key() == Some(STACK_TAG) && t.value() == Some(stack));
        if ours && !matches!(n.state().map(|s| s.as_str()), Some("deleted" | "deleting")) {
            found.push(format!("nat {}", name_of(n.tags())));
        }
    }
    for t in ec2
        .describe_route_tables()
        .set_filters(f())
        .send()
        .await
        .unwrap()
        .route_tables()
    {
        found.push(format!("route table {}", name_of(t.tags())));
    }
    for e in ec2
        .describe_vpc_endpoints()
        .set_filters(f())
        .send()
        .await
        .unwrap()
        .vpc_endpoints()
    {
        if !matches!(e.state().map(|s| s.as_str()), Some("deleted" | "deleting")) {
            found.push(format!("endpoint {}", e.vpc_endpoint_id().unwrap()));
        }
    }
    for g in ec2
        .describe_security_groups()
        .set_filters(f())
        .send()
        .await
        .unwrap()
        .security_groups()
    {
        found.push(format!("sg {}", g.group_name().unwrap()));
    }
    for a in ec2
        .describe_addresses()
        .set_filters(f())
        .send()
        .await
        .unwrap()
        .addresses()
    {
        found.push(format!("eip {}", name_of(a.tags())));
    }
    found.sort();
    found
}

/// Counts of EC2 resources WITHOUT the stack tag (moto's defaults plus anything left untagged).
pub async fn untagged_ec2(c: &Clients) -> [usize; 4] {
    let untagged =
        |tags: &[aws_sdk_ec2::types::Tag]| !tags.iter().any(|t| t.key() == Some(STACK_TAG));
    let ec2 = &c.ec2;
    [
        ec2.describe_vpcs()
            .send()
            .await
            .unwrap()
            .vpcs()
            .iter()
            .filter(|v| untagged(v.tags()))
            .count(),
        ec2.describe_subnets()
            .send()
            .await
            .unwrap()
            .subnets()
            .iter()
            .filter(|v| untagged(v.tags()))
            .count(),
        ec2.describe_addresses()
            .send()
            .await
            .unwrap()
            .addresses()
            .iter()
            .filter(|v| untagged(v.tags()))
            .count(),
        ec2.describe_security_groups()
            .send()
            .await
            .unwrap()
            .security_groups()
            .iter()
            .filter(|g| untagged(g.tags()) && g.group_name() != Some("default"))
            .count(),
    ]
}

pub use testkit::zip_with;

/// The function role's inline policy, decoded.
pub async fn function_policy(c: &Clients, spec: &Spec) -> serde_json::Value {
    let doc = c
        .iam
        .get_role_policy()
        .role_name(spec.role_name(testkit::moto::REGION))
        .policy_name(provision::iam::POLICY_NAME)
        .send()
        .await
        .unwrap();
    provision::iam::decode_policy(doc.policy_document())
}

/// `deploy/provision --stack <stack> ARGS` as an operator runs it, with the bed's AWS settings
/// (and this build's binary): (exit code, stdout, stderr).
pub fn deploy_provision(stack: &str, args: &[&str]) -> (Option<i32>, String, String) {
    deploy_provision_on(testkit::strict_aws(), stack, args)
}

/// [`deploy_provision`] against `aws` (e.g. `testkit::strict_aws::moto_translated()`).
pub fn deploy_provision_on(
    aws: &testkit::strict_aws::StrictAws,
    stack: &str,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(testkit::repo_root().join("deploy/provision"));
    cmd.args(["--stack", stack]).args(args);
    cmd.env(
        "SFTP_FORWARD_PROVISION_BIN",
        env!("CARGO_BIN_EXE_provision"),
    );
    cmd.envs(aws.env());
    let out = cmd.output().expect("run deploy/provision");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// What Lambda's event source mappings would do with S3's `s3:TestEvent` (sent to each queue when
/// a notification is configured): moto's mappings cannot invoke the function (no docker), so the
/// test consumes them as the function would (it acknowledges test events).
pub async fn consume_test_events(c: &Clients, stack: &str) {
    for url in &stack_queue_urls(c, stack).await {
        for _ in 0..10 {
            let out = c
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
            let tests: Vec<_> = out
                .messages()
                .iter()
                .filter(|m| m.body().is_some_and(|b| b.contains("s3:TestEvent")))
                .collect();
            if tests.is_empty() {
                break;
            }
            for m in tests {
                let handle = m.receipt_handle().unwrap();
                let del = c.sqs.delete_message().queue_url(url).receipt_handle(handle);
                del.send().await.unwrap();
            }
        }
    }
}

/// The URLs of the queues whose names start with `<stack>-`.
pub async fn stack_queue_urls(c: &Clients, stack: &str) -> Vec<String> {
    let listed = c
        .sqs
        .list_queues()
        .queue_name_prefix(format!("{stack}-"))
        .send()
        .await
        .unwrap();
    listed.queue_urls().to_vec()
}

/// A partner JSON for `host:port` (password login; the password is never printed).
pub fn partner_json_at(host: &str, port: u16) -> String {
    format!(
        r#"{{"Host": "{host}", "Port": {port}, "Username": "u", "Password": "not-printed",
  "TrustedHostKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]}}"#
    )
}

/// The changes of a re-apply that wrote something (all but `Unchanged`): empty when the re-apply
/// is a no-op. (moto omits a bucket's `EventBridgeConfiguration` on get; testkit's strict-AWS
/// proxy returns it, as AWS does.)
pub fn written(report: &Report) -> Vec<provision::context::Change> {
    let written =
        |c: &provision::context::Change| c.action != provision::context::Action::Unchanged;
    report.changes().into_iter().filter(written).collect()
}
