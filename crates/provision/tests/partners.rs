//! A stack with several partners on moto (through testkit's AWS proxy with no delays, which also
//! translates CloudWatch for the alarms): what each partner gets (queue + DLQ fed by a bucket
//! notification filtered on its prefix, its own event source mapping and concurrency, its port in
//! the security group, exactly its secret in the IAM policy, its entry in the function's
//! `SFTP_FORWARD_PARTNERS`, its DLQ alarm); adding and removing a partner leaves the others'
//! resources untouched; removal never loses messages; a single-partner stack is upgraded in place;
//! `deploy/provision partner add|remove|list` as an operator runs it.

mod util;

use std::collections::{BTreeMap, BTreeSet};

use provision::context::{Action, Mode};
use provision::{Clients, RawConfig, RawPartner, Spec};
use serde_json::Value;
use sftp_forward_core::routing::Routing;
use util::{run, Files};

async fn clients() -> Clients {
    let config = testkit::strict_aws::moto_translated().sdk_config().await;
    Clients::new(&config).expect("region is set")
}

/// `files` with one partner JSON per (name, host, port), written as `<name>.json`.
fn partner_files(files: &Files, partners: &[(&str, &str, u16)]) {
    for (name, host, port) in partners {
        let path = files.path().join(format!("{name}.json"));
        std::fs::write(path, util::partner_json_at(host, *port)).unwrap();
    }
}

fn partner(files: &Files, name: &str, concurrency: u32) -> RawPartner {
    RawPartner {
        name: name.into(),
        prefix: Some(format!("{name}/")),
        secret_file: Some(files.path().join(format!("{name}.json"))),
        max_concurrency: Some(concurrency),
        ..RawPartner::default()
    }
}

fn spec_with(stack: &str, files: &Files, partners: Vec<RawPartner>) -> Spec {
    util::spec(RawConfig {
        stack: Some(stack.into()),
        zip: Some(files.zip()),
        partners: Some(partners),
        ..RawConfig::default()
    })
}

/// What an operator checks in the account, per partner and for the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// Queue name → URL, of every queue of the stack.
    queues: BTreeMap<String, String>,
    /// Queue name → (mapping UUID, MaximumConcurrency).
    mappings: BTreeMap<String, (String, Option<i32>)>,
    /// The bucket's queue notifications: (id, queue name, prefix).
    notifications: BTreeSet<(String, String, Option<String>)>,
    /// The security group's egress: (port, CIDR).
    egress: BTreeSet<(i32, String)>,
    /// The role policy's secrets and queues.
    secrets: BTreeSet<String>,
    consumed: BTreeSet<String>,
    /// The function's SFTP_FORWARD_PARTNERS names (None: not set) and whether SECRET_ID is set.
    env_partners: Option<Vec<String>>,
    env_secret_id: bool,
    /// The stack's alarms on a DLQ or on permanent failures: name → dimensions (name=value).
    alarms: BTreeMap<String, BTreeSet<String>>,
}

fn resources(v: &Value) -> BTreeSet<String> {
    match v {
        Value::String(s) => [s.clone()].into(),
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(Into::into))
            .collect(),
        _ => BTreeSet::new(),
    }
}

async fn seen(c: &Clients, spec: &Spec) -> Seen {
    let stack = &spec.stack;
    let queues: BTreeMap<String, String> = util::stack_queue_urls(c, stack)
        .await
        .iter()
        .map(|u| (u.rsplit('/').next().unwrap().to_owned(), u.clone()))
        .collect();
    let name_of = |arn: &str| arn.rsplit(':').next().unwrap().to_owned();
    let maps = c
        .lambda
        .list_event_source_mappings()
        .function_name(spec.function_name())
        .send()
        .await
        .unwrap();
    let mappings = maps
        .event_source_mappings()
        .iter()
        .map(|m| {
            let conc = m.scaling_config().and_then(|s| s.maximum_concurrency());
            let queue = name_of(m.event_source_arn().unwrap());
            (queue, (m.uuid().unwrap().to_owned(), conc))
        })
        .collect();
    let n =
        c.s3.get_bucket_notification_configuration()
            .bucket(&spec.bucket)
            .send()
            .await
            .unwrap();
    let notifications = n
        .queue_configurations()
        .iter()
        .map(|q| {
            let prefix = q
                .filter()
                .and_then(|f| f.key())
                .and_then(|k| k.filter_rules().first())
                .and_then(|r| r.value().map(str::to_owned));
            let id = q.id().unwrap_or_default().to_owned();
            (id, name_of(q.queue_arn()), prefix)
        })
        .collect();
    let sg = provision::network::find_security_group(c, stack, &spec.security_group_name())
        .await
        .unwrap()
        .expect("security group");
    let egress = sg
        .ip_permissions_egress()
        .iter()
        .flat_map(|p| {
            let port = p.from_port().unwrap_or(-1);
            p.ip_ranges()
                .iter()
                .map(move |r| (port, r.cidr_ip().unwrap().to_owned()))
        })
        .collect();
    let doc = util::function_policy(c, spec).await;
    let statement = |sid: &str| {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .map(|s| resources(&s["Resource"]))
            .unwrap_or_default()
    };
    let f = provision::function::find_function(c, &spec.function_name())
        .await
        .unwrap()
        .expect("function");
    let vars = f.environment().and_then(|e| e.variables()).unwrap();
    let env_partners = vars.get(sftp_forward_core::env::PARTNERS).map(|json| {
        let routing = Routing::from_json(json).expect("the function's routing is valid");
        routing
            .partners()
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    });
    let alarms = c
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(format!("{stack}-"))
        .send()
        .await
        .unwrap()
        .metric_alarms()
        .iter()
        .filter_map(|a| {
            let name = a.alarm_name()?.to_owned();
            let dims = a
                .dimensions()
                .iter()
                .map(|d| format!("{}={}", d.name().unwrap(), d.value().unwrap()))
                .collect();
            let watched = name.contains("-dlq-not-empty") || name.contains("-delivery-failures");
            watched.then_some((name, dims))
        })
        .collect();
    let consumed: BTreeSet<String> = statement("ConsumeInboxQueue");
    assert!(consumed.iter().all(|a| queues.contains_key(&name_of(a))));
    Seen {
        queues,
        mappings,
        notifications,
        egress,
        secrets: statement("ReadPartnerSecret"),
        consumed: consumed.iter().map(|a| name_of(a)).collect(),
        env_partners,
        env_secret_id: vars.contains_key(sftp_forward_core::env::SECRET_ID),
        alarms,
    }
}

async fn secret_arn(c: &Clients, id: &str) -> String {
    provision::inbox::find_secret(c, id)
        .await
        .unwrap()
        .and_then(|d| d.arn().map(str::to_owned))
        .expect("secret exists")
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn send_to(c: &Clients, queue_url: &str) {
    c.sqs
        .send_message()
        .queue_url(queue_url)
        .message_body("{}")
        .send()
        .await
        .unwrap();
}

/// Two partners, then a third, then one removed: each partner's resources, the others' ids
/// unchanged, re-apply a no-op, a removal that would lose messages refused, destroy.
#[tokio::test(flavor = "multi_thread")]
async fn partners_are_added_and_removed_leaving_the_others_untouched() {
    let c = clients().await;
    let files = Files::new();
    let stack = "multi";
    partner_files(
        &files,
        &[
            ("bank", "198.51.100.7", 2222),
            ("shop", "198.51.100.8", 22),
            ("audit", "198.51.100.9", 2022),
        ],
    );
    let two = spec_with(
        stack,
        &files,
        vec![partner(&files, "bank", 3), partner(&files, "shop", 5)],
    );
    // A plan of the new stack creates nothing and lists each partner.
    let (planned, plan) = run(&c, &two, Mode::Plan).await.expect("plan two partners");
    assert!(plan.count(Action::Create) >= 30, "{:#?}", plan.changes());
    assert_eq!(
        util::stack_queue_urls(&c, stack).await,
        Vec::<String>::new()
    );
    let listed: Vec<_> = planned
        .partners
        .iter()
        .map(|p| (p.name.as_str(), p.port, p.max_concurrency))
        .collect();
    assert_eq!(
        listed,
        [("bank", Some(2222), Some(3)), ("shop", Some(22), Some(5))]
    );
    let (_, report) = run(&c, &two, Mode::Apply)
        .await
        .expect("apply two partners");
    assert_eq!(report.count(Action::Update), 0, "{:#?}", report.changes());
    let first = seen(&c, &two).await;
    let q = |n: &str| format!("{stack}-partner-{n}");
    let dlq = |n: &str| format!("{stack}-partner-{n}-dlq");
    assert_eq!(
        first.queues.keys().cloned().collect::<BTreeSet<_>>(),
        set([
            q("bank").as_str(),
            &dlq("bank"),
            &q("shop"),
            &dlq("shop"),
            "multi-unrouted"
        ]),
        "no single-partner queue, one queue and DLQ per partner, the unrouted keys' queue"
    );
    assert_eq!(
        first.notifications,
        [
            ("sftp-forward-bank".into(), q("bank"), Some("bank/".into())),
            ("sftp-forward-shop".into(), q("shop"), Some("shop/".into())),
        ]
        .into()
    );
    let conc = |s: &Seen, n: &str| s.mappings.get(&q(n)).map(|m| m.1);
    assert_eq!(first.mappings.len(), 2, "{:?}", first.mappings);
    assert_eq!(conc(&first, "bank"), Some(Some(3)));
    assert_eq!(conc(&first, "shop"), Some(Some(5)));
    assert_eq!(
        first.egress,
        [
            (2222, "198.51.100.7/32".into()),
            (22, "198.51.100.8/32".into()),
            (443, "0.0.0.0/0".into())
        ]
        .into()
    );
    let bank_secret = secret_arn(&c, "sftp-forward/multi/bank").await;
    let shop_secret = secret_arn(&c, "sftp-forward/multi/shop").await;
    assert_eq!(
        first.secrets,
        set([&bank_secret, &shop_secret].map(String::as_str))
    );
    assert_eq!(
        first.consumed,
        set([&q("bank"), &q("shop")].map(String::as_str))
    );
    assert_eq!(
        first.env_partners.as_deref(),
        Some(&["bank".to_owned(), "shop".to_owned()][..])
    );
    assert!(!first.env_secret_id);
    assert_eq!(
        first.alarms.keys().cloned().collect::<BTreeSet<_>>(),
        set([
            "multi-delivery-failures",
            "multi-delivery-failures-bank",
            "multi-delivery-failures-shop",
            "multi-dlq-not-empty-bank",
            "multi-dlq-not-empty-shop",
        ])
    );
    assert_eq!(
        first.alarms["multi-delivery-failures-bank"],
        set(["FunctionName=multi-forward", "Partner=bank"])
    );
    assert_eq!(
        first.alarms["multi-dlq-not-empty-shop"],
        set(["QueueName=multi-partner-shop-dlq"])
    );

    // Re-apply: nothing to create or update.
    let (_, again) = run(&c, &two, Mode::Apply).await.expect("re-apply");
    assert_eq!(util::written(&again), vec![], "re-apply changed something");
    assert_eq!(seen(&c, &two).await, first);

    // A third partner: its own resources; bank's and shop's ids unchanged.
    let three = spec_with(
        stack,
        &files,
        vec![
            partner(&files, "bank", 3),
            partner(&files, "shop", 5),
            partner(&files, "audit", 2),
        ],
    );
    run(&c, &three, Mode::Apply).await.expect("add audit");
    let added = seen(&c, &three).await;
    for n in ["bank", "shop"] {
        assert_eq!(added.queues[&q(n)], first.queues[&q(n)]);
        assert_eq!(added.queues[&dlq(n)], first.queues[&dlq(n)]);
        assert_eq!(
            added.mappings[&q(n)],
            first.mappings[&q(n)],
            "{n}'s mapping"
        );
    }
    assert!(added.notifications.is_superset(&first.notifications));
    assert!(added.notifications.contains(&(
        "sftp-forward-audit".into(),
        q("audit"),
        Some("audit/".into())
    )));
    assert_eq!(conc(&added, "audit"), Some(Some(2)));
    assert!(added.egress.contains(&(2022, "198.51.100.9/32".into())));
    assert_eq!(added.secrets.len(), 3);
    assert_eq!(added.alarms.len(), 7, "{:?}", added.alarms.keys());

    util::consume_test_events(&c, stack).await;
    // Removing shop: exactly its resources go, its own secret is scheduled for deletion.
    let without_shop = spec_with(
        stack,
        &files,
        vec![partner(&files, "bank", 3), partner(&files, "audit", 2)],
    );
    let (_, removal) = run(&c, &without_shop, Mode::Apply)
        .await
        .expect("remove shop");
    let after = seen(&c, &without_shop).await;
    assert!(!after.queues.contains_key(&q("shop")) && !after.queues.contains_key(&dlq("shop")));
    assert!(!after.mappings.contains_key(&q("shop")));
    for n in ["bank", "audit"] {
        assert_eq!(after.queues[&q(n)], added.queues[&q(n)]);
        assert_eq!(
            after.mappings[&q(n)],
            added.mappings[&q(n)],
            "{n}'s mapping"
        );
    }
    assert_eq!(
        after
            .notifications
            .iter()
            .map(|n| n.0.as_str())
            .collect::<Vec<_>>(),
        ["sftp-forward-audit", "sftp-forward-bank"]
    );
    assert!(!after
        .egress
        .iter()
        .any(|(_, cidr)| cidr == "198.51.100.8/32"));
    assert!(!after.secrets.contains(&shop_secret) && after.secrets.contains(&bank_secret));
    assert!(!after.alarms.contains_key("multi-dlq-not-empty-shop"));
    assert!(!after.alarms.contains_key("multi-delivery-failures-shop"));
    assert!(after.alarms.contains_key("multi-delivery-failures-audit"));
    assert_eq!(
        after.env_partners.as_deref(),
        Some(&["bank".to_owned(), "audit".to_owned()][..])
    );
    let shop = provision::inbox::find_secret(&c, &shop_secret)
        .await
        .unwrap();
    assert!(
        shop.is_some_and(|d| d.deleted_date().is_some()),
        "shop's own secret is scheduled for deletion"
    );
    assert!(
        removal
            .changes()
            .iter()
            .any(|ch| ch.action == Action::Delete && ch.resource.contains("no longer declared")),
        "{:#?}",
        removal.changes()
    );

    // A partner whose dead-letter queue holds a message is not removed: refused, nothing changed.
    util::consume_test_events(&c, stack).await;
    send_to(&c, &after.queues[&dlq("audit")]).await;
    let only_bank = spec_with(stack, &files, vec![partner(&files, "bank", 3)]);
    let err = run(&c, &only_bank, Mode::Apply)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("partner \"audit\"")
            && err.contains(&dlq("audit"))
            && err.contains("1 message"),
        "{err}"
    );
    assert_eq!(
        seen(&c, &without_shop).await,
        after,
        "a refused removal changed something"
    );

    // destroy removes every partner's queues.
    let report = provision::Report::quiet();
    let ctx = provision::context::Ctx {
        clients: &c,
        spec: &without_shop,
        mode: Mode::Apply,
        report: &report,
    };
    provision::destroy::run(ctx, true).await.expect("destroy");
    assert_eq!(
        util::stack_queue_urls(&c, stack).await,
        Vec::<String>::new()
    );
}

/// Bad partner lists are refused before any AWS call: overlapping prefixes, a concurrency Lambda
/// does not accept, a single-partner field next to `partners`.
#[test]
fn bad_partners_are_refused_before_any_aws_call() {
    let files = Files::new();
    let bad = |partners: Vec<RawPartner>, secret: Option<&str>| {
        Spec::from_raw(
            RawConfig {
                stack: Some("bad".into()),
                secret: secret.map(str::to_owned),
                partners: Some(partners),
                ..RawConfig::default()
            },
            files.zip(),
        )
        .unwrap_err()
        .to_string()
    };
    let mut eu = partner(&files, "acme-eu", 2);
    eu.prefix = Some("acme/eu/".into());
    let e = bad(vec![partner(&files, "acme", 2), eu], None);
    assert!(
        e.contains("\"acme\"") && e.contains("\"acme-eu\"") && e.contains("overlap"),
        "{e}"
    );
    let e = bad(vec![partner(&files, "acme", 1001)], None);
    assert!(
        e.contains("max_concurrency") && e.contains("2..=1000"),
        "{e}"
    );
    let e = bad(vec![partner(&files, "acme", 2)], Some("x"));
    assert!(e.starts_with("invalid secret:"), "{e}");
}

/// A stack built with the single-partner config is upgraded in place: network, bucket, role and
/// function keep their ids; the old queue is kept while its DLQ holds a message, removed once
/// empty; the next apply is a no-op.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_partner_stack_is_upgraded_in_place() {
    let c = clients().await;
    let files = Files::with_partner(&util::partner_json_at("198.51.100.7", 22));
    let stack = "upgrade";
    let old = util::spec(util::raw(stack, &files));
    let (before, _) = run(&c, &old, Mode::Apply)
        .await
        .expect("single-partner apply");
    let legacy = seen(&c, &old).await;
    assert!(legacy.env_secret_id && legacy.env_partners.is_none());
    let old_dlq = legacy.queues[&old.dlq_name()].clone();
    send_to(&c, &old_dlq).await;

    partner_files(&files, &[("shop", "198.51.100.8", 2222)]);
    // The old secret goes to the first partner.
    let bank = RawPartner {
        secret: Some(old.secret.clone()),
        secret_file: None,
        ..partner(&files, "bank", 2)
    };
    let new = spec_with(
        stack,
        &files,
        vec![bank.clone(), partner(&files, "shop", 4)],
    );
    util::consume_test_events(&c, stack).await;
    let (after, report) = run(&c, &new, Mode::Apply).await.expect("upgrade");
    assert_eq!(after.network.vpc, before.network.vpc);
    assert_eq!(after.network.nat_gateways, before.network.nat_gateways);
    assert_eq!(after.network.allowlist(), before.network.allowlist());
    assert_eq!(after.network.security_group, before.network.security_group);
    assert_eq!(after.function.arn, before.function.arn);
    let upgraded = seen(&c, &new).await;
    assert!(!upgraded.env_secret_id);
    assert_eq!(
        upgraded.env_partners.as_deref(),
        Some(&["bank".to_owned(), "shop".to_owned()][..])
    );
    // The old queue holds a message (in its DLQ): kept, with its mapping and permission.
    let kept = report
        .changes()
        .into_iter()
        .find(|ch| ch.action == Action::Keep)
        .expect("the old queue is kept");
    assert!(kept.resource.contains("1 message"), "{kept:?}");
    assert!(upgraded.queues.contains_key(&old.queue_name()));
    assert_eq!(
        upgraded.mappings[&old.queue_name()],
        legacy.mappings[&old.queue_name()]
    );
    assert!(upgraded.consumed.contains(&old.queue_name()));
    assert_eq!(
        upgraded
            .notifications
            .iter()
            .map(|n| n.0.as_str())
            .collect::<Vec<_>>(),
        ["sftp-forward-bank", "sftp-forward-shop"],
        "the unfiltered notification is replaced by the partners'"
    );

    // Drained: the next apply removes the old queues, mapping and permission.
    c.sqs
        .purge_queue()
        .queue_url(&old_dlq)
        .send()
        .await
        .unwrap();
    util::consume_test_events(&c, stack).await;
    run(&c, &new, Mode::Apply).await.expect("apply after drain");
    let drained = seen(&c, &new).await;
    assert!(!drained.queues.contains_key(&old.queue_name()));
    assert!(!drained.queues.contains_key(&old.dlq_name()));
    assert!(!drained.mappings.contains_key(&old.queue_name()));
    assert_eq!(
        drained.consumed,
        set(["upgrade-partner-bank", "upgrade-partner-shop"])
    );
    let (_, again) = run(&c, &new, Mode::Apply).await.expect("re-apply");
    assert_eq!(util::written(&again), vec![], "re-apply changed something");
}
