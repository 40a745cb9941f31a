//! Keys under no partner's prefix on a stack with `partners` (moto, through testkit's AWS proxy
//! that translates CloudWatch): the bucket delivers to EventBridge, the rule `<stack>-unrouted`
//! takes exactly those keys into the queue `<stack>-unrouted`, which an alarm watches; re-apply
//! writes nothing; going back to one partner removes the rule and (once read and purged) the
//! queue; `destroy` removes them too.

mod util;

use provision::context::{Action, Mode};
use provision::{Clients, RawConfig, RawPartner, Spec};
use serde_json::{json, Value};
use util::{run, Files};

async fn clients() -> Clients {
    let config = testkit::strict_aws::moto_translated().sdk_config().await;
    Clients::new(&config).expect("region is set")
}

fn partner(files: &Files, name: &str) -> RawPartner {
    let path = files.path().join(format!("{name}.json"));
    std::fs::write(&path, util::partner_json_at("198.51.100.7", 22)).unwrap();
    RawPartner {
        name: name.into(),
        prefix: Some(format!("{name}/")),
        secret_file: Some(path),
        ..RawPartner::default()
    }
}

fn spec_with(stack: &str, files: &Files, partners: Option<Vec<RawPartner>>) -> Spec {
    match partners {
        Some(partners) => util::spec(RawConfig {
            stack: Some(stack.into()),
            zip: Some(files.zip()),
            partners: Some(partners),
            ..RawConfig::default()
        }),
        None => util::spec(util::raw(stack, files)),
    }
}

/// The keys of the S3 events waiting in `queue_url` (each received once, then deleted); bounded.
async fn keys_in(c: &Clients, queue_url: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for _ in 0..5 {
        let out = c
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let event: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            assert_eq!(event["source"], "aws.s3", "{event}");
            assert_eq!(event["detail-type"], "Object Created", "{event}");
            keys.push(
                event["detail"]["object"]["key"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            let handle = m.receipt_handle().unwrap();
            let del = c
                .sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(handle);
            del.send().await.unwrap();
        }
    }
    keys.sort();
    keys
}

async fn put(c: &Clients, bucket: &str, key: &str) {
    let body = aws_sdk_s3::primitives::ByteStream::from_static(b"a,b\n");
    c.s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .send()
        .await
        .unwrap();
}

async fn alarm_dimensions(c: &Clients, name: &str) -> Option<Vec<String>> {
    let out = c.cloudwatch.describe_alarms().alarm_names(name).send();
    let out = out.await.unwrap();
    out.metric_alarms().first().map(|a| {
        a.dimensions()
            .iter()
            .map(|d| format!("{}={}", d.name().unwrap(), d.value().unwrap()))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_under_no_partner_prefix_reach_the_unrouted_queue() {
    let c = clients().await;
    let files = Files::new();
    let stack = "unrouted";
    let spec = spec_with(
        stack,
        &files,
        Some(vec![partner(&files, "acme"), partner(&files, "beta")]),
    );
    run(&c, &spec, Mode::Apply)
        .await
        .expect("apply two partners");

    // The rule: this bucket's created objects whose key is under neither prefix, to the queue.
    let rule = c.events.describe_rule().name("unrouted-unrouted").send();
    let rule = rule.await.expect("the rule exists");
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(
        pattern,
        json!({
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": [spec.bucket]},
                "object": {"key": [{"anything-but": {"prefix": ["acme/", "beta/"]}}]}
            }
        })
    );
    let queue_url = provision::inbox::find_queue_url(&c, "unrouted-unrouted")
        .await
        .unwrap()
        .expect("the unrouted queue exists");
    let attrs = provision::inbox::queue_attributes(&c, &queue_url)
        .await
        .unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    assert_eq!(attrs[&A::MessageRetentionPeriod], "1209600", "14 days");
    let policy: Value = serde_json::from_str(&attrs[&A::Policy]).unwrap();
    assert_eq!(
        policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        rule.arn().unwrap(),
        "the queue admits exactly the rule"
    );
    let targets = c
        .events
        .list_targets_by_rule()
        .rule("unrouted-unrouted")
        .send()
        .await
        .unwrap();
    let arns: Vec<&str> = targets.targets().iter().map(|t| t.arn()).collect();
    assert_eq!(arns, [attrs[&A::QueueArn].as_str()]);
    assert_eq!(
        alarm_dimensions(&c, "unrouted-unrouted").await,
        Some(vec!["QueueName=unrouted-unrouted".to_owned()])
    );
    let n =
        c.s3.get_bucket_notification_configuration()
            .bucket(&spec.bucket);
    let n = n.send().await.unwrap();
    // (moto does not return EventBridgeConfiguration; testkit's proxy does, as AWS does.) That
    // it is on also shows below, in the events it delivers.
    assert!(n.event_bridge_configuration().is_some(), "{n:?}");
    assert_eq!(n.queue_configurations().len(), 2, "{n:?}");

    // Re-apply: nothing written.
    let (_, again) = run(&c, &spec, Mode::Apply).await.expect("re-apply");
    assert_eq!(util::written(&again), vec![], "re-apply changed something");

    // A third partner: the rule's pattern follows (updated in place), and back.
    let three = spec_with(
        stack,
        &files,
        Some(vec![
            partner(&files, "acme"),
            partner(&files, "beta"),
            partner(&files, "gamma"),
        ]),
    );
    let (_, added) = run(&c, &three, Mode::Apply).await.expect("add gamma");
    assert!(
        added.changes().iter().any(|ch| ch.action == Action::Update
            && ch
                .resource
                .starts_with("EventBridge rule unrouted-unrouted")),
        "{:#?}",
        added.changes()
    );
    let key_filter = |found: Option<provision::unrouted::Found>| {
        let pattern: Value = serde_json::from_str(&found.unwrap().pattern.unwrap()).unwrap();
        pattern["detail"]["object"]["key"].clone()
    };
    let found = provision::unrouted::find(&c, stack).await.unwrap();
    assert_eq!(
        key_filter(found),
        json!([{"anything-but": {"prefix": ["acme/", "beta/", "gamma/"]}}])
    );
    util::consume_test_events(&c, stack).await;
    run(&c, &spec, Mode::Apply).await.expect("remove gamma");
    let found = provision::unrouted::find(&c, stack).await.unwrap();
    assert_eq!(
        key_filter(found),
        json!([{"anything-but": {"prefix": ["acme/", "beta/"]}}])
    );

    // moto delivers S3 → EventBridge → SQS: only the key under no prefix arrives.
    util::consume_test_events(&c, stack).await;
    for key in ["other/x.csv", "acme/in.csv", "beta/b.csv", "root.csv"] {
        put(&c, &spec.bucket, key).await;
    }
    assert_eq!(keys_in(&c, &queue_url).await, ["other/x.csv", "root.csv"]);

    // outputs show it.
    let outputs = provision::outputs::collect(&c, &spec).await.unwrap();
    let found = outputs
        .unrouted
        .expect("outputs list the unrouted rule and queue");
    assert_eq!(found.rule.as_deref(), rule.arn());
    assert_eq!(found.queue.as_deref(), Some(queue_url.as_str()));
    assert_eq!(found.messages, Some(0));

    // Back to one partner: the rule and its alarm go; the queue stays while it holds events.
    put(&c, &spec.bucket, "late/y.csv").await;
    let single = spec_with(stack, &files, None);
    // The partners' queues hold their files' events (moto's mappings invoke nothing): drained,
    // so that their removal is allowed.
    for name in ["acme", "beta"] {
        let queue = format!("{stack}-partner-{name}");
        let url = provision::inbox::find_queue_url(&c, &queue).await.unwrap();
        let url = url.expect("partner queue");
        c.sqs.purge_queue().queue_url(url).send().await.unwrap();
    }
    util::consume_test_events(&c, stack).await;
    let (_, back) = run(&c, &single, Mode::Apply).await.expect("back to one");
    let left = provision::unrouted::find(&c, stack).await.unwrap();
    let left = left.expect("the queue is kept");
    assert_eq!(left.rule, None, "the rule is removed");
    assert_eq!(left.messages, Some(1));
    assert_eq!(alarm_dimensions(&c, "unrouted-unrouted").await, None);
    assert!(
        back.changes().iter().any(|ch| ch.action == Action::Keep
            && ch.resource.contains("queue unrouted-unrouted")
            && ch.resource.contains("1 message")),
        "{:#?}",
        back.changes()
    );
    assert_eq!(keys_in(&c, &queue_url).await, ["late/y.csv"]);
    run(&c, &single, Mode::Apply)
        .await
        .expect("apply once read");
    let left = provision::unrouted::find(&c, stack).await.unwrap();
    assert_eq!(left, None, "the read queue is deleted");

    // With partners again, then destroy: nothing of it is left.
    util::consume_test_events(&c, stack).await;
    run(&c, &spec, Mode::Apply).await.expect("partners again");
    let again = provision::unrouted::find(&c, stack).await.unwrap();
    assert!(again.is_some_and(|f| f.rule.is_some() && f.queue.is_some()));
    let report = provision::Report::quiet();
    let ctx = provision::context::Ctx {
        clients: &c,
        spec: &spec,
        mode: Mode::Apply,
        report: &report,
    };
    for key in [
        "other/x.csv",
        "acme/in.csv",
        "beta/b.csv",
        "root.csv",
        "late/y.csv",
    ] {
        let del = c.s3.delete_object().bucket(&spec.bucket).key(key);
        del.send().await.unwrap();
    }
    provision::destroy::run(ctx, true).await.expect("destroy");
    let left = provision::unrouted::find(&c, stack).await.unwrap();
    assert_eq!(left, None, "destroy removes the rule and the queue");
}
