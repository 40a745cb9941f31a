//! The provisioner on the strict-AWS bed (moto behind `testkit::strict_aws`, replaying real AWS's
//! eventual consistency and async states): the topology `apply` builds (checked with describe
//! calls, i.e. what we sent, not what moto invents), idempotence, destroy keeping the Elastic IPs,
//! bad inputs, and the `deploy/provision` entry point end to end. Each test also asserts that the
//! bed's behaviours bit its own resources, so a removed retry or wait fails it.

mod util;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::RouteTable;
use provision::context::{Action, Ctx, Mode};
use provision::iam::{self, Scope};
use provision::{config, delivery_events, destroy, outputs, Error, RawConfig, Report, STACK_TAG};
use serde_json::Value;
use testkit::strict_aws::Behaviour as B;
use util::*;

/// The lifecycle's partner: its own port, and its Host an address (the security group's target).
const PARTNER_2222: &str = r#"{"Host": "198.51.100.7", "Port": 2222, "Username": "acme-upload",
  "Password": "not-printed", "TrustedHostKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"],
  "RemoteDirectory": "inbound"}"#;

/// plan creates nothing; apply builds exactly the topology; apply again creates nothing; destroy
/// leaves only the two EIPs; apply again comes back on the same two public IPs.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_plan_apply_reapply_destroy_reapply() {
    let c = clients().await;
    let files = Files::with_partner(PARTNER_2222);
    let stack = "lifecycle";
    // No partner_address: the security group follows the secret's Host and Port.
    let spec = spec(RawConfig {
        partner_address: None,
        ..raw(stack, &files)
    });
    // Bucket names are global: the default carries the account and region.
    assert_eq!(spec.bucket, "lifecycle-123456789012-us-east-1");

    let (_, plan) = run(&c, &spec, Mode::Plan).await.expect("plan");
    assert!(
        plan.count(Action::Create) >= 30,
        "plan: {:#?}",
        plan.changes()
    );
    assert_eq!(plan.count(Action::Update), 0);
    assert_eq!(
        tagged_ec2(&c, stack).await,
        Vec::<String>::new(),
        "plan created something"
    );
    assert!(
        !provision::inbox::bucket_exists(&c, &spec.bucket)
            .await
            .unwrap(),
        "plan created the bucket"
    );

    let (applied, first) = run(&c, &spec, Mode::Apply).await.expect("apply");
    // Every line the plan announced was created, and nothing else.
    let plan_lines: Vec<String> = plan.changes().into_iter().map(|c| c.resource).collect();
    let applied_lines: Vec<String> = first.changes().into_iter().map(|c| c.resource).collect();
    assert_eq!(plan_lines, applied_lines);
    assert_eq!(first.count(Action::Create), plan.count(Action::Create));
    assert_eq!(
        first.count(Action::Update) + first.count(Action::Unchanged),
        0,
        "{:#?}",
        first.changes()
    );

    assert_topology(&c, &spec, &applied).await;
    // Each of real AWS's delays bit this stack's first apply, and apply waited them out.
    let vpc = applied.network.vpc.as_str();
    let function = spec.function_name();
    let role = spec.role_name("us-east-1");
    assert_bit(&[
        (B::Ec2NotVisible, vpc),
        (B::NatPending, applied.network.nat_gateways[0].as_str()),
        (B::QueuePolicyNotPropagated, spec.bucket.as_str()),
        (B::RoleNotAssumable, role.as_str()),
        (B::FunctionPending, function.as_str()),
    ]);
    // The function's log group, with its retention.
    let groups = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(spec.log_group())
        .send()
        .await
        .unwrap();
    assert_eq!(
        groups
            .log_groups()
            .iter()
            .map(|g| (g.log_group_name().unwrap(), g.retention_in_days()))
            .collect::<Vec<_>>(),
        [(spec.log_group().as_str(), Some(30))]
    );

    // A code and a configuration change in one apply: the second update must wait for the
    // first (LastUpdateStatus InProgress, else 409 ResourceConflictException).
    let changed_files = Files::with_partner(PARTNER_2222);
    std::fs::write(
        changed_files.zip(),
        zip_with("bootstrap", b"#!/bin/sh\necho version 2\n"),
    )
    .unwrap();
    let changed = util::spec(RawConfig {
        partner_address: None,
        function_memory_mb: Some(2048),
        architecture: Some("arm64".into()),
        ..raw(stack, &changed_files)
    });
    // Someone else's update is still in progress when this apply starts: it must wait for it.
    c.lambda
        .update_function_configuration()
        .function_name(&function)
        .description("touched by an operator")
        .send()
        .await
        .expect("an operator's update");
    let (_, update) = run(&c, &changed, Mode::Apply)
        .await
        .expect("apply with changes");
    assert_eq!(update.count(Action::Update), 2, "{:#?}", update.changes());
    // The architecture changes with the code (moto does not record it on update, so the next
    // apply cannot check it; the adopt test checks arm64 at create).
    assert!(
        update.changes().iter().any(|c| c.action == Action::Update
            && c.resource
                == "code and architecture of function lifecycle-forward (x86_64 → arm64)"),
        "{:#?}",
        update.changes()
    );
    assert_bit(&[(B::FunctionUpdateInProgress, &function)]);
    let (_, back) = run(&c, &spec, Mode::Apply).await.expect("apply back");
    assert_eq!(back.count(Action::Update), 2, "{:#?}", back.changes());

    // A function found Failed (Lambda could not create its network interfaces) is repaired by
    // writing its configuration again, not reported unchanged.
    testkit::strict_aws().fail_function(&function);
    let (_, repair) = run(&c, &spec, Mode::Apply).await.expect("apply repairs");
    let updated: Vec<String> = repair
        .changes()
        .into_iter()
        .filter(|c| c.action == Action::Update)
        .map(|c| c.resource)
        .collect();
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert!(
        updated[0].starts_with("configuration of function"),
        "{updated:?}"
    );
    assert!(
        repair
            .notes()
            .iter()
            .any(|n| n.contains("Failed") && n.contains("EniLimitExceeded")),
        "{:?}",
        repair.notes()
    );
    assert_bit(&[(B::FunctionFailed, &function)]);
    let (_, healthy) = run(&c, &spec, Mode::Apply)
        .await
        .expect("apply after repair");
    assert_eq!(healthy.count(Action::Update), 0, "{:#?}", healthy.changes());

    let (_, second) = run(&c, &spec, Mode::Apply).await.expect("second apply");
    assert_eq!(second.count(Action::Create), 0, "{:#?}", second.changes());
    assert_eq!(second.count(Action::Update), 0, "{:#?}", second.changes());
    assert!(
        second
            .changes()
            .iter()
            .all(|c| c.action == Action::Unchanged),
        "{:#?}",
        second.changes()
    );

    let before = outputs::collect(&c, &spec).await.unwrap();
    assert_eq!(before.elastic_ips.len(), 2);
    assert_eq!(before.vpc.as_deref(), Some(applied.network.vpc.as_str()));
    assert_eq!(before.function.as_deref(), Some("lifecycle-forward"));
    assert_eq!(
        before.queue.as_deref(),
        Some(applied.inbox.partners[0].queue.url.as_str())
    );

    // The function's network interfaces (Lambda's, in its security group) before destroy.
    let function_enis: Vec<String> = c
        .ec2
        .describe_network_interfaces()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-id")
                .values(&applied.network.security_group)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .network_interfaces()
        .iter()
        .map(|n| n.network_interface_id().unwrap().to_owned())
        .collect();
    assert_eq!(function_enis.len(), 2, "one per private subnet");
    let report = Report::quiet();
    destroy::run(
        Ctx {
            clients: &c,
            spec: &spec,
            mode: Mode::Apply,
            report: &report,
        },
        false,
    )
    .await
    .expect("destroy");
    assert_eq!(report.count(Action::Keep), 2, "{:#?}", report.changes());
    assert_eq!(tagged_ec2(&c, stack).await, ["eip eip-one", "eip eip-two"]);
    // Lambda released them itself (the role was still there); none had to be deleted by us.
    assert!(
        !report
            .changes()
            .iter()
            .any(|c| c.resource.starts_with("network interface")),
        "{:#?}",
        report.changes()
    );
    // Destroy met the NAT gateways deleting and the function's network interfaces held, and
    // waited: the role stayed until Lambda released them, so none is left behind.
    assert_bit(&[
        (B::NatDeleting, applied.network.nat_gateways[0].as_str()),
        (B::EniHeld, function_enis[0].as_str()),
    ]);
    let enis = c
        .ec2
        .describe_network_interfaces()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("subnet-id")
                .set_values(Some(applied.network.private_subnets.to_vec()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(enis.network_interfaces().len(), 0, "{enis:?}");
    let groups = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(spec.log_group())
        .send()
        .await
        .unwrap();
    assert!(groups.log_groups().is_empty(), "log group left: {groups:?}");
    let gone = outputs::collect(&c, &spec).await.unwrap();
    assert_eq!(
        (
            gone.function,
            gone.role,
            gone.bucket,
            gone.queue,
            gone.dlq,
            gone.secret,
            gone.security_group
        ),
        (None, None, None, None, None, None, None)
    );
    let secret = c
        .secrets
        .describe_secret()
        .secret_id(&spec.secret)
        .send()
        .await
        .unwrap();
    assert!(
        secret.deleted_date().is_some(),
        "the stack's secret is scheduled for deletion"
    );

    let (_, third) = run(&c, &spec, Mode::Apply)
        .await
        .expect("apply after destroy");
    let after = outputs::collect(&c, &spec).await.unwrap();
    assert_eq!(
        after.elastic_ips, before.elastic_ips,
        "same partner allowlist after destroy + apply"
    );
    assert_eq!(
        after.elastic_ip_allocation_ids,
        before.elastic_ip_allocation_ids
    );
    assert!(third
        .changes()
        .iter()
        .any(|c| c.action == Action::Update && c.resource.starts_with("restore of secret")));
}

async fn assert_topology(
    c: &provision::Clients,
    spec: &provision::Spec,
    applied: &provision::apply::Applied,
) {
    let ec2 = &c.ec2;
    let stack = spec.stack.as_str();

    let vpcs = ec2
        .describe_vpcs()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let [vpc] = vpcs.vpcs() else {
        panic!("one VPC: {vpcs:?}")
    };
    assert_eq!(
        (vpc.cidr_block(), name_of(vpc.tags()).as_str()),
        (Some("10.0.0.0/25"), "Lambda VPC")
    );
    let vpc_id = vpc.vpc_id().unwrap();

    // Subnets: names, CIDRs, AZ pairing.
    let subnets = ec2
        .describe_subnets()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let by_name: BTreeMap<String, (String, String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            assert_eq!(s.vpc_id(), Some(vpc_id));
            let v = (
                s.cidr_block().unwrap().into(),
                s.availability_zone().unwrap().into(),
                s.subnet_id().unwrap().into(),
            );
            (name_of(s.tags()), v)
        })
        .collect();
    let cidrs: Vec<(&str, &str)> = by_name
        .iter()
        .map(|(n, v)| (n.as_str(), v.0.as_str()))
        .collect();
    assert_eq!(
        cidrs,
        [
            ("private-one", "10.0.0.32/28"),
            ("private-two", "10.0.0.64/28"),
            ("public-one", "10.0.0.0/28"),
            ("public-two", "10.0.0.16/28")
        ]
    );
    let az = |n: &str| by_name[n].1.clone();
    let id = |n: &str| by_name[n].2.clone();
    assert_eq!(az("public-one"), az("private-one"));
    assert_eq!(az("public-two"), az("private-two"));
    assert_ne!(az("public-one"), az("public-two"), "two distinct AZs");

    // Internet gateway, attached.
    let igws = ec2
        .describe_internet_gateways()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let [igw] = igws.internet_gateways() else {
        panic!("one IGW: {igws:?}")
    };
    assert_eq!(name_of(igw.tags()), "Lambda internet gateway");
    assert_eq!(
        igw.attachments()
            .iter()
            .filter_map(|a| a.vpc_id())
            .collect::<Vec<_>>(),
        [vpc_id]
    );
    let igw_id = igw.internet_gateway_id().unwrap();

    // Elastic IPs and NAT gateways: one EIP each, in the public subnets.
    let eips = ec2
        .describe_addresses()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let eip_by_name: BTreeMap<String, String> = eips
        .addresses()
        .iter()
        .map(|a| (name_of(a.tags()), a.allocation_id().unwrap().to_owned()))
        .collect();
    assert_eq!(eip_by_name.len(), 2);
    let nats = ec2
        .describe_nat_gateways()
        .filter(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let mut nat_ids = BTreeMap::new();
    let ours =
        |n: &&aws_sdk_ec2::types::NatGateway| n.tags().iter().any(|t| t.value() == Some(stack));
    for n in nats.nat_gateways().iter().filter(ours) {
        let name = name_of(n.tags());
        let (subnet, eip) = match name.as_str() {
            "nat-one" => ("public-one", "eip-one"),
            "nat-two" => ("public-two", "eip-two"),
            other => panic!("unexpected NAT gateway {other}"),
        };
        assert_eq!(n.subnet_id(), Some(id(subnet).as_str()), "{name} subnet");
        assert_eq!(n.connectivity_type().map(|t| t.as_str()), Some("public"));
        assert_eq!(n.state().map(|s| s.as_str()), Some("available"));
        let allocs: Vec<&str> = n
            .nat_gateway_addresses()
            .iter()
            .filter_map(|a| a.allocation_id())
            .collect();
        assert_eq!(allocs, [eip_by_name[eip].as_str()], "{name} EIP");
        nat_ids.insert(name, n.nat_gateway_id().unwrap().to_owned());
    }
    assert_eq!(nat_ids.len(), 2);
    let ips: Vec<&str> = applied
        .network
        .elastic_ips
        .iter()
        .map(|e| e.public_ip.as_str())
        .collect();
    assert!(ips.iter().all(|ip| !ip.is_empty()), "{ips:?}");

    // Route tables: every default route's target, every association.
    let tables = ec2
        .describe_route_tables()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let table = |name: &str| -> RouteTable {
        tables
            .route_tables()
            .iter()
            .find(|t| name_of(t.tags()) == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    assert_eq!(tables.route_tables().len(), 4);
    for (rt, subnet, target) in [
        ("public-one-subnet", "public-one", igw_id.to_owned()),
        ("public-two-subnet", "public-two", igw_id.to_owned()),
        (
            "private-one-subnet",
            "private-one",
            nat_ids["nat-one"].clone(),
        ),
        (
            "private-two-subnet",
            "private-two",
            nat_ids["nat-two"].clone(),
        ),
    ] {
        let t = table(rt);
        assert_eq!(t.vpc_id(), Some(vpc_id));
        let default: Vec<_> = t
            .routes()
            .iter()
            .filter(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .collect();
        assert_eq!(default.len(), 1, "{rt}: {:?}", t.routes());
        let via = default[0].gateway_id().or(default[0].nat_gateway_id());
        assert_eq!(via, Some(target.as_str()), "{rt} default route");
        let assoc: Vec<&str> = t
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id())
            .collect();
        assert_eq!(assoc, [id(subnet).as_str()], "{rt} association");
    }

    // S3 gateway endpoint on the two private route tables.
    let eps = ec2
        .describe_vpc_endpoints()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let [ep] = eps.vpc_endpoints() else {
        panic!("one endpoint: {eps:?}")
    };
    assert_eq!(ep.service_name(), Some("com.amazonaws.us-east-1.s3"));
    assert_eq!(ep.vpc_endpoint_type().map(|t| t.as_str()), Some("Gateway"));
    let rts: BTreeSet<&str> = ep.route_table_ids().iter().map(String::as_str).collect();
    let private_rts: BTreeSet<String> = ["private-one-subnet", "private-two-subnet"]
        .map(|n| table(n).route_table_id().unwrap().to_owned())
        .into();
    assert_eq!(rts, private_rts.iter().map(String::as_str).collect());

    // Security group: no ingress; egress exactly the secret's port → partner, tcp/443 → anywhere.
    let sgs = ec2
        .describe_security_groups()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let [sg] = sgs.security_groups() else {
        panic!("one SG: {sgs:?}")
    };
    assert_eq!(sg.vpc_id(), Some(vpc_id));
    assert!(
        sg.ip_permissions().is_empty(),
        "ingress: {:?}",
        sg.ip_permissions()
    );
    let egress: BTreeSet<(String, Option<i32>, Option<i32>, String)> = sg
        .ip_permissions_egress()
        .iter()
        .flat_map(|p| {
            p.ip_ranges().iter().map(|r| {
                (
                    p.ip_protocol().unwrap().to_owned(),
                    p.from_port(),
                    p.to_port(),
                    r.cidr_ip().unwrap().to_owned(),
                )
            })
        })
        .collect();
    let want: BTreeSet<_> = [
        (
            "tcp".to_owned(),
            Some(2222),
            Some(2222),
            format!("{PARTNER_IP}/32"),
        ),
        (
            "tcp".to_owned(),
            Some(443),
            Some(443),
            "0.0.0.0/0".to_owned(),
        ),
    ]
    .into();
    assert_eq!(egress, want);
    assert!(sg
        .ip_permissions_egress()
        .iter()
        .all(|p| p.ipv6_ranges().is_empty() && p.prefix_list_ids().is_empty()));

    // The partner secret, from the file.
    let secret = c
        .secrets
        .get_secret_value()
        .secret_id(&spec.secret)
        .send()
        .await
        .unwrap();
    let file = spec.secret_file.as_ref().expect("a secret file");
    assert_eq!(
        secret.secret_string(),
        Some(std::fs::read_to_string(file).unwrap().as_str())
    );
    let secret_arn = secret.arn().unwrap();

    // Queues: redrive to the DLQ, S3 may send.
    let q = &applied.inbox.partners[0].queue;
    let attrs = provision::inbox::queue_attributes(c, &q.url).await.unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let redrive: Value = serde_json::from_str(&attrs[&A::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["deadLetterTargetArn"],
        applied.inbox.partners[0].dlq.arn.as_str()
    );
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    assert_eq!(attrs[&A::VisibilityTimeout], "1800");
    let policy: Value = serde_json::from_str(&attrs[&A::Policy]).unwrap();
    assert_eq!(
        policy["Statement"][0]["Principal"]["Service"],
        "s3.amazonaws.com"
    );
    assert_eq!(
        policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        format!("arn:aws:s3:::{}", spec.bucket)
    );

    // Bucket: public access blocked, encrypted, notifying the queue.
    let s3 = &c.s3;
    let pab = s3
        .get_public_access_block()
        .bucket(&spec.bucket)
        .send()
        .await
        .unwrap();
    let p = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        [
            p.block_public_acls(),
            p.ignore_public_acls(),
            p.block_public_policy(),
            p.restrict_public_buckets()
        ],
        [Some(true); 4]
    );
    let enc = s3
        .get_bucket_encryption()
        .bucket(&spec.bucket)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let notif = s3
        .get_bucket_notification_configuration()
        .bucket(&spec.bucket)
        .send()
        .await
        .unwrap();
    let [qc] = notif.queue_configurations() else {
        panic!("one queue notification: {notif:?}")
    };
    assert_eq!(qc.queue_arn(), q.arn);
    assert_eq!(
        qc.events().iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        ["s3:ObjectCreated:*"]
    );

    // Role: Lambda may assume it; the inline policy is exactly the least-privilege one.
    let role = c
        .iam
        .get_role()
        .role_name(spec.role_name("us-east-1"))
        .send()
        .await
        .unwrap();
    let role = role.role().unwrap();
    let trust = iam::decode_policy(role.assume_role_policy_document().unwrap());
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "lambda.amazonaws.com"
    );
    let doc = util::function_policy(c, spec).await;
    let function = spec.function_name();
    let expected = iam::execution_policy(&Scope {
        partition: "aws",
        region: "us-east-1",
        account: "123456789012",
        bucket: &spec.bucket,
        secret_arns: &[secret_arn.to_owned()],
        queue_arns: std::slice::from_ref(&q.arn),
        function: &function,
        kms_keys: &[],
        events_bus: Some("default"),
    });
    assert_eq!(doc, expected);
    // Delivery events: PutEvents on the default bus only.
    let events = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["Action"] == serde_json::json!(["events:PutEvents"]))
        .expect("an events statement");
    assert_eq!(
        events["Resource"],
        "arn:aws:events:us-east-1:123456789012:event-bus/default"
    );
    assert_eq!(iam::least_privilege_violations(&doc), Vec::<String>::new());

    // Function: runtime, handler, architecture, secret id, VPC attachment as sent.
    let f = c
        .lambda
        .get_function()
        .function_name(&function)
        .send()
        .await
        .unwrap();
    let f = f.configuration().unwrap();
    assert_eq!(f.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    assert_eq!(f.handler(), Some("bootstrap"));
    assert_eq!(
        f.architectures()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        ["x86_64"]
    );
    assert_eq!(f.role(), Some(role.arn()));
    let env = f.environment().and_then(|e| e.variables()).unwrap();
    assert_eq!(
        env.get(config::SECRET_ENV).map(String::as_str),
        Some(secret_arn)
    );
    // Delivery events on the default bus; a last attempt known from the queue's maxReceiveCount.
    assert_eq!(
        env.get(delivery_events::EVENTS_ENV).map(String::as_str),
        Some("default")
    );
    assert_eq!(
        env.get(delivery_events::MAX_RECEIVE_ENV),
        Some(&spec.max_receive_count.to_string())
    );
    // The egress self-check knows the two EIPs the partner allowlists.
    assert_eq!(
        env.get(config::EXPECTED_EGRESS_ENV),
        Some(&ips.join(",")),
        "{env:?}"
    );
    let vpc_cfg = f.vpc_config().unwrap();
    let subnets: BTreeSet<&str> = vpc_cfg.subnet_ids().iter().map(String::as_str).collect();
    assert_eq!(
        subnets,
        [id("private-one"), id("private-two")]
            .iter()
            .map(String::as_str)
            .collect()
    );
    assert_eq!(vpc_cfg.security_group_ids(), [sg.group_id().unwrap()]);

    // Event source mapping: the queue, partial batch responses, bounded concurrency.
    let maps = c
        .lambda
        .list_event_source_mappings()
        .function_name(&function)
        .send()
        .await
        .unwrap();
    let [m] = maps.event_source_mappings() else {
        panic!("one mapping: {maps:?}")
    };
    assert_eq!(m.event_source_arn(), Some(q.arn.as_str()));
    assert_eq!(
        m.function_response_types()
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>(),
        ["ReportBatchItemFailures"]
    );
    assert_eq!(
        m.scaling_config().and_then(|s| s.maximum_concurrency()),
        Some(3)
    );
    assert_eq!(m.batch_size(), Some(10));

    // Everything carries the stack tag (EC2 via the filter above; the others here).
    let tags = c
        .lambda
        .list_tags()
        .resource(f.function_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags.tags()
            .and_then(|t| t.get(STACK_TAG))
            .map(String::as_str),
        Some(stack)
    );
    assert_eq!(
        provision::inbox::bucket_stack_tag(c, &spec.bucket)
            .await
            .unwrap()
            .as_deref(),
        Some(stack)
    );
}

/// Bad input fails with an error naming the field, before anything is created.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_creates_nothing() {
    let c = clients().await;
    let files = Files::new();
    let untagged_before = untagged_ec2(&c).await;

    // Caught while reading the config.
    let same_az = RawConfig {
        availability_zones: Some(vec!["us-east-1a".into(); 2]),
        ..raw("bad-az", &files)
    };
    let err = provision::Spec::from_raw(same_az, files.zip()).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "availability_zones"),
        "{err}"
    );
    let bad_partner = RawConfig {
        partner_address: Some("sftp partner!".into()),
        ..raw("bad-partner", &files)
    };
    let err = provision::Spec::from_raw(bad_partner, files.zip()).unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "partner_address"),
        "{err}"
    );

    // Another account owns this bucket name; another stack owns this role name.
    testkit::strict_aws().claim_bucket("taken-by-another-account");
    create_tagged_role(&c, "foreign-role-forward-us-east-1", "someone-else").await;

    // Caught by apply's checks against AWS and the file system.
    let cases: Vec<(&str, RawConfig, &str)> = vec![
        (
            "bad-az",
            RawConfig {
                availability_zones: Some(vec!["us-east-1a".into(), "us-east-1z".into()]),
                ..raw("bad-az", &files)
            },
            "us-east-1z",
        ),
        (
            // us-east-1e is zone use1-az3, where Lambda cannot run a function in a VPC.
            "lambda-az",
            RawConfig {
                availability_zones: Some(vec!["us-east-1a".into(), "us-east-1e".into()]),
                ..raw("lambda-az", &files)
            },
            "use1-az3",
        ),
        (
            "taken-bucket",
            RawConfig {
                bucket: Some("taken-by-another-account".into()),
                ..raw("taken-bucket", &files)
            },
            "taken by another account",
        ),
        (
            "foreign-role",
            raw("foreign-role", &files),
            "belongs to stack \"someone-else\"",
        ),
        (
            "bad-secret",
            RawConfig {
                secret_file: Some(files.path().join("missing.json")),
                ..raw("bad-secret", &files)
            },
            "missing.json",
        ),
        (
            "bad-zip",
            RawConfig {
                zip: Some(files.path().join("nope.zip")),
                ..raw("bad-zip", &files)
            },
            "nope.zip",
        ),
        (
            "bad-eips",
            RawConfig {
                eip_allocation_ids: Some(vec![
                    "eipalloc-00000001".into(),
                    "eipalloc-00000002".into(),
                ]),
                ..raw("bad-eips", &files)
            },
            "eip_allocation_ids",
        ),
    ];
    for (stack, raw, mention) in cases {
        let spec = spec(raw);
        let err = run(&c, &spec, Mode::Apply)
            .await
            .err()
            .unwrap_or_else(|| panic!("{stack}: apply succeeded"));
        let msg = err.to_string();
        assert!(msg.contains(mention), "{stack}: {msg}");
        assert!(
            !msg.contains("acme-upload"),
            "{stack}: the secret leaked: {msg}"
        );
        assert_eq!(
            tagged_ec2(&c, stack).await,
            Vec::<String>::new(),
            "{stack} created something"
        );
        assert!(
            !matches!(
                provision::inbox::bucket_exists(&c, &spec.bucket).await,
                Ok(true)
            ),
            "{stack}: bucket created"
        );
    }
    // No secret given and none exists: says how to create it.
    let no_secret = spec(RawConfig {
        secret_file: None,
        ..raw("no-secret", &files)
    });
    let msg = run(&c, &no_secret, Mode::Apply)
        .await
        .expect_err("fails")
        .to_string();
    assert!(
        msg.contains("--secret-file") && msg.contains("sftp-forward/no-secret/partner"),
        "{msg}"
    );
    // The bucket already sends its ObjectCreated events elsewhere: S3 would refuse ours as an
    // overlap after the NAT gateways were up, so apply says so first.
    let overlap = spec(raw("overlap", &files));
    operator_notification(
        &c,
        &overlap.bucket,
        "overlap-operator",
        None,
        "s3:ObjectCreated:Put",
        None,
    )
    .await;
    let msg = run(&c, &overlap, Mode::Apply)
        .await
        .expect_err("overlapping notification")
        .to_string();
    assert!(msg.contains("already sends ObjectCreated events"), "{msg}");
    assert_eq!(tagged_ec2(&c, "overlap").await, Vec::<String>::new());

    assert_eq!(
        untagged_ec2(&c).await,
        untagged_before,
        "something was created untagged"
    );
}

/// `deploy/provision` as an operator runs it: plan, apply, outputs, destroy --release-eips, exit codes.
#[test]
fn deploy_provision_end_to_end() {
    let strict = testkit::strict_aws();
    let files = Files::new();
    let provision = |args: &[&str]| deploy_provision("cli", args);
    let zip = files.zip().display().to_string();
    let secret = files.secret_file().display().to_string();
    // A custom bucket and secret: outputs and destroy must find them without being told again.
    let inputs = [
        "--zip",
        &zip,
        "--secret-file",
        &secret,
        "--partner-address",
        PARTNER_IP,
        "--bucket",
        "cli-custom-inbox",
        "--secret",
        "custom/cli/partner",
    ];

    let (code, out, err) = provision(&[&["plan"][..], &inputs].concat());
    assert_eq!(code, Some(0), "plan: {out}\n{err}");
    assert!(
        out.contains("+ would create") && out.contains("NAT gateway nat-one"),
        "{out}"
    );
    assert!(
        out.contains("$73.00") && out.contains("EXCLUDING NAT data processing"),
        "{out}"
    );
    assert!(
        !out.contains("acme-upload") && !err.contains("acme-upload"),
        "the secret was printed"
    );

    let (code, out, err) = provision(&[&["apply"][..], &inputs].concat());
    assert_eq!(code, Some(0), "apply: {out}\n{err}");
    // The fixture's Host is not PARTNER_IP: said, and the security group follows --partner-address.
    assert!(
        out.contains(
            "partner_address 198.51.100.7 differs from the secret's Host sftp.partner.example"
        ),
        "{out}"
    );
    // Where it is, before any change.
    assert!(
        out.contains("Using account 123456789012")
            && out.contains("region us-east-1")
            && out.contains(&strict.endpoint),
        "{out}"
    );
    assert!(
        out.contains("Apply complete:") && out.contains("0 updated, 0 unchanged"),
        "{out}"
    );
    let (code, out, _) = provision(&[&["apply"][..], &inputs].concat());
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Apply complete: 0 created, 0 updated"),
        "{out}"
    );

    let (code, out, err) = provision(&["outputs"]);
    assert_eq!(code, Some(0), "outputs: {err}");
    let json: Value = serde_json::from_str(&out).expect("outputs is JSON");
    assert_eq!(
        json["elastic_ips"].as_array().map(Vec::len),
        Some(2),
        "{json}"
    );
    for key in ["vpc", "function", "bucket", "queue", "dlq", "secret"] {
        assert!(json[key].is_string(), "{key} missing: {json}");
    }
    assert_eq!(json["bucket"], "cli-custom-inbox", "{json}");
    assert!(
        json["secret"]
            .as_str()
            .unwrap()
            .contains("custom/cli/partner"),
        "{json}"
    );
    assert!(
        json["subnets"]["private-two"].is_string() && json["nat_gateways"]["nat-one"].is_string(),
        "{json}"
    );

    // A file still in the custom bucket: destroy keeps the bucket (exit 1, says why) and the
    // queue that names it; once emptied, destroy run again (no --bucket) finds and removes it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = rt.block_on(clients()).s3;
    rt.block_on(
        s3.put_object()
            .bucket("cli-custom-inbox")
            .key("left.txt")
            .body(b"x".to_vec().into())
            .send(),
    )
    .unwrap();
    let (code, out, err) = provision(&["destroy"]);
    assert_eq!(code, Some(1), "destroy: {out}\n{err}");
    assert!(
        err.contains("bucket cli-custom-inbox is not empty")
            && out.contains("kept          queue cli-inbox")
            && out.contains("deleted       secret arn:")
            && out.contains("custom/cli/partner"),
        "{out}\n{err}"
    );
    rt.block_on(
        s3.delete_object()
            .bucket("cli-custom-inbox")
            .key("left.txt")
            .send(),
    )
    .unwrap();
    let (code, out, err) = provision(&["destroy", "--release-eips"]);
    assert_eq!(code, Some(0), "destroy: {out}\n{err}");
    assert!(
        out.contains("deleted") && out.contains("bucket cli-custom-inbox"),
        "destroy found the custom bucket: {out}"
    );
    let (_, out, _) = provision(&["outputs"]);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["elastic_ips"],
        Value::Array(vec![]),
        "EIPs released: {json}"
    );
    assert_eq!(json["vpc"], Value::Null);

    let (code, _, err) = provision(&[
        "apply",
        "--zip",
        &zip,
        "--partner-address",
        "not an address!",
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid partner_address"), "{err}");
    let (code, _, _) = provision(&["apply", "--no-such-flag"]);
    assert_eq!(code, Some(2));
}

/// Elastic IPs the operator passes are used for the NAT gateways and adopted by tag.
#[tokio::test(flavor = "multi_thread")]
async fn operator_eips_are_adopted() {
    use aws_sdk_ec2::types::{DomainType, ResourceType, Tag, TagSpecification};
    let c = clients().await;
    let files = Files::new();
    let stack = "adopt";
    // Tagged for this stack (with another Name) so that the concurrent "nothing left untagged"
    // check of bad_input_creates_nothing does not count them.
    let mut given = Vec::new();
    for _ in 0..2 {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::ElasticIp)
            .tags(Tag::builder().key(STACK_TAG).value(stack).build())
            .tags(Tag::builder().key("Name").value("operator-eip").build())
            .build();
        let out = c
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tags)
            .send()
            .await
            .unwrap();
        given.push(out.allocation_id().unwrap().to_owned());
    }
    // This stack also runs on arm64 (Graviton).
    let arm64 = |raw: RawConfig| RawConfig {
        architecture: Some("arm64".into()),
        ..raw
    };
    let spec = spec(arm64(RawConfig {
        eip_allocation_ids: Some(given.clone()),
        ..raw(stack, &files)
    }));
    // A role left by an earlier, interrupted run moments ago: Lambda may not assume it yet
    // although this run did not create it (new by its CreateDate).
    let role = spec.role_name("us-east-1");
    create_tagged_role(&c, &role, stack).await;
    // The bucket exists with a notification an operator configured: it must survive apply.
    operator_notification(
        &c,
        &spec.bucket,
        "adopt-operator-audit",
        Some("operator-audit"),
        "s3:ObjectRemoved:*",
        Some("audit/"),
    )
    .await;

    let (applied, report) = run(&c, &spec, Mode::Apply).await.expect("apply");
    assert_bit(&[(B::RoleNotAssumable, &role)]);
    let notify =
        c.s3.get_bucket_notification_configuration()
            .bucket(&spec.bucket)
            .send()
            .await
            .unwrap();
    let ids: BTreeSet<&str> = notify
        .queue_configurations()
        .iter()
        .filter_map(|q| q.id())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["operator-audit", "sftp-forward"]),
        "{notify:?}"
    );
    let adopted = report
        .changes()
        .into_iter()
        .filter(|c| c.action == Action::Update && c.resource.starts_with("adoption of Elastic IP"))
        .count();
    assert_eq!(adopted, 2, "{:#?}", report.changes());
    let used: Vec<&str> = applied
        .network
        .elastic_ips
        .iter()
        .map(|e| e.allocation_id.as_str())
        .collect();
    assert_eq!(used, given);
    let out = outputs::collect(&c, &spec).await.unwrap();
    assert_eq!(out.elastic_ip_allocation_ids, given);
    let function = c
        .lambda
        .get_function()
        .function_name(spec.function_name())
        .send()
        .await
        .unwrap();
    let arch = function.configuration().unwrap().architectures();
    assert_eq!(
        arch.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        ["arm64"]
    );
    // Now they are the stack's: a second apply finds them by tag (and the arm64 function as it is).
    let (_, again) = run(&c, &spec, Mode::Apply).await.expect("second apply");
    assert_eq!(
        again.count(Action::Create) + again.count(Action::Update),
        0,
        "{:#?}",
        again.changes()
    );
    // A destroy that gives up (here: too short a wait for the NAT gateways to be deleted) says
    // what is still billed; run again, it finishes.
    let impatient = util::spec(arm64(RawConfig {
        eip_allocation_ids: Some(given.clone()),
        nat_wait_seconds: Some(0),
        ..raw(stack, &files)
    }));
    let report = Report::quiet();
    let ctx = |spec| Ctx {
        clients: &c,
        spec,
        mode: Mode::Apply,
        report: &report,
    };
    let err = destroy::run(ctx(&impatient), false)
        .await
        .expect_err("gives up on the NAT gateways")
        .to_string();
    // (Whether the NAT gateways are listed too depends on whether AWS still shows them deleting.)
    assert!(
        err.starts_with("destroy stopped: NAT gateways")
            && err.contains("did not become deleted")
            && err.contains("still billed: ")
            && err.contains("Elastic IP eip-one")
            && err.contains("kept on purpose unless --release-eips"),
        "{err}"
    );
    destroy::run(ctx(&spec), false)
        .await
        .expect("destroy again");
    assert_eq!(
        tagged_ec2(&c, stack).await,
        ["eip eip-one", "eip eip-two"],
        "only the (adopted) EIPs stay"
    );
}

/// A stack built by an earlier version (bucket `<stack>-inbox`, role `<stack>-forward-role`, no
/// names recorded on the queue) keeps its bucket after the upgrade (found by the bucket its queue
/// policy admits), and destroy removes its old role too.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_stack_keeps_its_bucket_and_loses_its_old_role() {
    let c = clients().await;
    let files = Files::new();
    let stack = "older";
    let queue = c
        .sqs
        .create_queue()
        .queue_name("older-inbox")
        .tags(STACK_TAG, stack)
        .send()
        .await
        .unwrap();
    let url = queue.queue_url().unwrap();
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": "arn:aws:sqs:us-east-1:123456789012:older-inbox",
        "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::older-inbox"}}
    }]});
    c.sqs
        .set_queue_attributes()
        .queue_url(url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::Policy,
            policy.to_string(),
        )
        .send()
        .await
        .unwrap();
    create_tagged_role(&c, "older-forward-role", stack).await;

    let (spec, _) = provision::context::resolve(&c, spec(raw(stack, &files)))
        .await
        .expect("resolve");
    assert_eq!(
        spec.bucket, "older-inbox",
        "the old stack's bucket, not a new one"
    );

    let report = Report::quiet();
    let ctx = Ctx {
        clients: &c,
        spec: &spec,
        mode: Mode::Apply,
        report: &report,
    };
    destroy::run(ctx, false).await.expect("destroy");
    let deleted: Vec<String> = report
        .changes()
        .into_iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.resource)
        .collect();
    assert!(
        deleted.contains(&"IAM role older-forward-role".to_owned())
            && deleted.contains(&"queue older-inbox".to_owned()),
        "{deleted:?}"
    );
}
