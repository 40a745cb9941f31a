//! The alarms, their SNS topic and the scheduled self-check on the strict-AWS bed (moto behind
//! `testkit::strict_aws`): what `apply` creates (read back with describe calls), re-apply changing
//! nothing, a changed threshold converging, the schedule off removing its role and check alarms,
//! `outputs`, `destroy` leaving none of them, and `plan`'s cost lines through `deploy/provision`.
//!
//! moto 5.2 answers every call used here (SNS topics, email subscriptions, tags; CloudWatch
//! PutMetricAlarm/DescribeAlarms (names, ActionPrefix)/DeleteAlarms over rpc-v2-cbor; Scheduler
//! Create/Get/Update/DeleteSchedule). It confirms email subscriptions at once and never fires an
//! alarm or a schedule: alarms going off, mail delivery and Scheduler invoking the function are
//! exercised on real AWS only (docs/OPERATIONS.md).

mod util;

use std::collections::BTreeMap;

use provision::alarms::{RawAlarm, RawAlarms};
use provision::context::{Action, Ctx, Mode};
use provision::{destroy, outputs, schedule, RawConfig, Report, Spec};
use serde_json::{json, Value};
use testkit::strict_aws::Behaviour as B;
use util::*;

/// Each alarm that notifies the stack's topic: name → (metric, dimensions, statistic, threshold,
/// period, TreatMissingData).
type Alarms = BTreeMap<String, (String, Vec<(String, String)>, String, f64, i32, String)>;

async fn alarms_of(c: &provision::Clients, topic: &str) -> Alarms {
    let found = provision::alarms::cloudwatch::find_by_topic(c, topic)
        .await
        .unwrap();
    found
        .iter()
        .map(|a| {
            assert_eq!(a.alarm_actions(), [topic], "{a:?}");
            assert_eq!(a.ok_actions(), [topic], "{a:?}");
            let dims = a
                .dimensions()
                .iter()
                .map(|d| (d.name().unwrap().to_owned(), d.value().unwrap().to_owned()))
                .collect();
            (
                a.alarm_name().unwrap().to_owned(),
                (
                    a.metric_name().unwrap().to_owned(),
                    dims,
                    a.statistic().unwrap().as_str().to_owned(),
                    a.threshold().unwrap(),
                    a.period().unwrap(),
                    a.treat_missing_data().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// Every alarm in the account whose name starts with `prefix`.
async fn alarm_names(c: &provision::Clients, prefix: &str) -> Vec<String> {
    let out = c
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(prefix)
        .send()
        .await
        .unwrap();
    out.metric_alarms()
        .iter()
        .map(|a| a.alarm_name().unwrap().to_owned())
        .collect()
}

/// The topics in the account named `<stack>-alarms`.
async fn topics(c: &provision::Clients, stack: &str) -> Vec<String> {
    let out = c.sns.list_topics().send().await.unwrap();
    out.topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .filter(|a| a.ends_with(&format!(":{stack}-alarms")))
        .map(str::to_owned)
        .collect()
}

fn config(stack: &str, files: &Files, dlq_threshold: f64, schedule: &str) -> Spec {
    spec(RawConfig {
        alarm_email: Some("oncall@example.com".into()),
        alarms: Some(RawAlarms {
            dlq_not_empty: Some(RawAlarm {
                name: Some(format!("{stack} DLQ has messages")),
                threshold: Some(dlq_threshold),
            }),
            ..RawAlarms::default()
        }),
        self_check_schedule: Some(schedule.into()),
        ..raw(stack, files)
    })
}

/// `destroy` with the Elastic IPs released: the test leaves nothing behind.
async fn destroy_stack(c: &provision::Clients, spec: &Spec) {
    let report = Report::quiet();
    let ctx = Ctx {
        clients: c,
        spec,
        mode: Mode::Apply,
        report: &report,
    };
    destroy::run(ctx, true).await.expect("destroy");
}

fn not_unchanged(report: &Report) -> Vec<String> {
    report
        .changes()
        .into_iter()
        .filter(|c| c.action != Action::Unchanged)
        .map(|c| format!("{:?} {}", c.action, c.resource))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn alarms_topic_and_schedule_converge_and_destroy_removes_them() {
    let c = clients().await;
    let files = Files::new();
    let stack = "alerting";
    let spec = config(stack, &files, 3.0, "rate(10 minutes)");

    // plan: says what it would create, creates none of it.
    let (_, plan) = run(&c, &spec, Mode::Plan).await.expect("plan");
    let planned: Vec<String> = plan.changes().into_iter().map(|c| c.resource).collect();
    for line in [
        "SNS topic alerting-alarms (alarm notifications)",
        "IAM role alerting-check-schedule-us-east-1 (Scheduler may invoke alerting-forward only)",
        "schedule alerting-self-check (rate(10 minutes), {\"check\": true} → alerting-forward)",
    ] {
        assert!(
            planned.iter().any(|p| p == line),
            "{line} not in {planned:#?}"
        );
    }
    assert!(
        planned.iter().any(|p| p
            == "email subscription oncall@example.com to alerting-alarms (pending until \
                oncall@example.com clicks the link in AWS's confirmation mail)"),
        "{planned:#?}"
    );
    assert_eq!(
        planned.iter().filter(|p| p.starts_with("alarm ")).count(),
        9,
        "{planned:#?}"
    );
    assert_eq!(
        topics(&c, stack).await,
        Vec::<String>::new(),
        "plan created a topic"
    );

    // apply: the topic, its subscription, the alarms, the schedule and its role.
    let (applied, first) = run(&c, &spec, Mode::Apply).await.expect("apply");
    let applied_lines: Vec<String> = first.changes().into_iter().map(|c| c.resource).collect();
    assert_eq!(planned, applied_lines, "apply did what the plan said");
    let topic = applied.alarm_topic.clone();
    assert_eq!(topics(&c, stack).await, std::slice::from_ref(&topic));
    let subs = provision::alarms::topic::subscriptions(&c, &topic)
        .await
        .unwrap();
    assert_eq!(
        subs.iter()
            .map(|s| (s.protocol().unwrap(), s.endpoint().unwrap()))
            .collect::<Vec<_>>(),
        [("email", "oncall@example.com")]
    );
    let alarms = alarms_of(&c, &topic).await;
    let fun = ("FunctionName".to_owned(), "alerting-forward".to_owned());
    let [az_one, az_two] = applied.network.azs.clone();
    let az = |a: &str| ("AvailabilityZone".to_owned(), a.to_owned());
    let expected: Alarms = [
        (
            "alerting DLQ has messages",
            (
                "ApproximateNumberOfMessagesVisible",
                vec![("QueueName".to_owned(), spec.dlq_name())],
                "Maximum",
                3.0,
                300,
                "notBreaching",
            ),
        ),
        (
            "alerting-function-errors",
            ("Errors", vec![fun.clone()], "Sum", 1.0, 300, "notBreaching"),
        ),
        (
            "alerting-function-throttles",
            (
                "Throttles",
                vec![fun.clone()],
                "Sum",
                1.0,
                300,
                "notBreaching",
            ),
        ),
        (
            "alerting-delivery-failures",
            (
                "FailuresPermanent",
                vec![fun.clone()],
                "Sum",
                1.0,
                300,
                "notBreaching",
            ),
        ),
        (
            "alerting-host-key-untrusted",
            (
                "HostKeyUntrusted",
                vec![fun.clone()],
                "Sum",
                1.0,
                300,
                "notBreaching",
            ),
        ),
        // Two 10-minute intervals are less than an hour: the check window is an hour.
        (
            "alerting-check-failing-one",
            (
                "CheckFailed",
                vec![fun.clone(), az(&az_one)],
                "Sum",
                1.0,
                3600,
                "notBreaching",
            ),
        ),
        (
            "alerting-check-failing-two",
            (
                "CheckFailed",
                vec![fun.clone(), az(&az_two)],
                "Sum",
                1.0,
                3600,
                "notBreaching",
            ),
        ),
        (
            "alerting-check-failing-unknown-az",
            (
                "CheckFailed",
                vec![fun.clone(), az("unknown")],
                "Sum",
                1.0,
                3600,
                "notBreaching",
            ),
        ),
        (
            "alerting-check-not-running",
            (
                "CheckFailed",
                vec![fun.clone()],
                "SampleCount",
                1.0,
                3600,
                "breaching",
            ),
        ),
    ]
    .into_iter()
    .map(|(n, (m, d, s, t, p, miss))| {
        (
            n.to_owned(),
            (m.to_owned(), d, s.to_owned(), t, p, miss.to_owned()),
        )
    })
    .collect();
    assert_eq!(alarms, expected);

    let found = schedule::find(&c, stack)
        .await
        .unwrap()
        .expect("the schedule");
    let role_name = schedule::role_name(stack, "us-east-1");
    let role = provision::iam::find_role(&c, &role_name)
        .await
        .unwrap()
        .expect("its role");
    assert_eq!(
        found,
        schedule::Found {
            expression: "rate(10 minutes)".into(),
            state: "ENABLED".into(),
            window: "OFF".into(),
            target: applied.function.arn.clone(),
            role: role.arn().to_owned(),
            input: Some(json!({"check": true})),
            retry: Some((2, 300)),
        }
    );
    // The role: Scheduler of this account may assume it, and it may only invoke this function.
    let trust = provision::iam::decode_policy(role.assume_role_policy_document().unwrap());
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"], "scheduler.amazonaws.com",
        "{trust}"
    );
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"],
        ACCOUNT
    );
    let policy = c
        .iam
        .get_role_policy()
        .role_name(&role_name)
        .policy_name(schedule::POLICY_NAME)
        .send()
        .await
        .unwrap();
    assert_eq!(
        provision::iam::decode_policy(policy.policy_document()),
        schedule::invoke_policy(&applied.function.arn)
    );
    // Scheduler refused the role created moments before, and apply waited that out; SNS showed
    // the subscription pending (so a re-apply below must not subscribe the address again).
    assert_bit(&[
        (B::SchedulerRoleNotAssumable, role_name.as_str()),
        (B::SubscriptionPending, "oncall@example.com"),
    ]);

    // The function knows its subnets, AZs and Elastic IPs for the check's placement.
    let f = provision::function::find_function(&c, &spec.function_name())
        .await
        .unwrap()
        .unwrap();
    let env = f.environment().unwrap().variables().unwrap();
    let paths: Value = serde_json::from_str(&env[schedule::CHECK_PATHS_ENV]).unwrap();
    assert_eq!(
        paths,
        json!([
            {"az": az_one, "subnet": "private-one", "cidr": "10.0.0.32/28",
             "egress_ip": applied.network.elastic_ips[0].public_ip},
            {"az": az_two, "subnet": "private-two", "cidr": "10.0.0.64/28",
             "egress_ip": applied.network.elastic_ips[1].public_ip},
        ])
    );

    // Again: nothing changes.
    let (_, again) = run(&c, &spec, Mode::Apply).await.expect("re-apply");
    assert_eq!(not_unchanged(&again), Vec::<String>::new());

    // A threshold and a schedule changed in the config: those two converge, nothing else.
    let changed = config(stack, &files, 5.0, "rate(30 minutes)");
    let (_, update) = run(&c, &changed, Mode::Apply).await.expect("apply changes");
    assert_eq!(
        not_unchanged(&update),
        [
            "Update schedule alerting-self-check (rate(30 minutes), {\"check\": true} → alerting-forward)",
            "Update alarm alerting DLQ has messages (ApproximateNumberOfMessagesVisible Maximum ≥ 5 per 300 s, missing data notBreaching)",
        ]
    );
    let alarms = alarms_of(&c, &topic).await;
    assert_eq!(alarms["alerting DLQ has messages"].3, 5.0);
    assert_eq!(
        schedule::find(&c, stack).await.unwrap().unwrap().expression,
        "rate(30 minutes)"
    );

    // outputs: topic, subscription, alarms, schedule.
    let out = outputs::collect(&c, &changed).await.unwrap();
    let json = serde_json::to_value(&out.alerting).unwrap();
    assert_eq!(json["topic"], topic.as_str(), "{json}");
    assert_eq!(
        json["subscriptions"],
        serde_json::json!([{"protocol": "email", "endpoint": "oncall@example.com", "pending": true}])
    );
    assert_eq!(json["alarms"].as_array().unwrap().len(), 9, "{json}");
    assert_eq!(json["schedule"]["expression"], "rate(30 minutes)");

    // The schedule off: the schedule, its role and the four check alarms go.
    let off = config(stack, &files, 5.0, "off");
    let (_, removed) = run(&c, &off, Mode::Apply)
        .await
        .expect("apply with schedule off");
    let mut deleted = not_unchanged(&removed);
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "Delete IAM role alerting-check-schedule-us-east-1",
            "Delete alarm alerting-check-failing-one (no longer wanted)",
            "Delete alarm alerting-check-failing-two (no longer wanted)",
            "Delete alarm alerting-check-failing-unknown-az (no longer wanted)",
            "Delete alarm alerting-check-not-running (no longer wanted)",
            "Delete schedule alerting-self-check",
        ]
    );
    assert_eq!(schedule::find(&c, stack).await.unwrap(), None);
    assert!(provision::iam::find_role(&c, &role_name)
        .await
        .unwrap()
        .is_none());
    assert_eq!(alarms_of(&c, &topic).await.len(), 5);
    let (_, steady) = run(&c, &off, Mode::Apply).await.expect("apply again, off");
    assert_eq!(not_unchanged(&steady), Vec::<String>::new());

    // Back on, then destroy: no topic, subscription, alarm, schedule or role is left.
    run(&c, &spec, Mode::Apply)
        .await
        .expect("apply with the schedule again");
    destroy_stack(&c, &spec).await;
    assert_eq!(topics(&c, stack).await, Vec::<String>::new());
    let subscriptions = c.sns.list_subscriptions().send().await.unwrap();
    assert!(
        !subscriptions
            .subscriptions()
            .iter()
            .any(|s| s.topic_arn() == Some(topic.as_str())),
        "{subscriptions:?}"
    );
    assert_eq!(alarm_names(&c, stack).await, Vec::<String>::new());
    assert_eq!(schedule::find(&c, stack).await.unwrap(), None);
    assert!(provision::iam::find_role(&c, &role_name)
        .await
        .unwrap()
        .is_none());
}

/// `deploy/provision plan` prints the alarms' and the schedule's monthly cost under the fixed cost.
#[test]
fn plan_prints_the_alarm_and_schedule_cost() {
    let files = Files::new();
    let zip = files.zip().display().to_string();
    let secret = files.secret_file().display().to_string();
    let plan = |extra: &[&str]| {
        let args = [
            &["plan", "--zip", &zip, "--secret-file", &secret][..],
            &["--partner-address", PARTNER_IP],
            extra,
        ]
        .concat();
        let (code, out, err) = deploy_provision("alarm-plan", &args);
        assert_eq!(code, Some(0), "plan: {out}\n{err}");
        out
    };
    let out = plan(&["--alarm-email", "oncall@example.com"]);
    for line in [
        "+ would create  SNS topic alarm-plan-alarms (alarm notifications)",
        "+ would create  alarm alarm-plan-dlq-not-empty (ApproximateNumberOfMessagesVisible Maximum ≥ 1 per 300 s, missing data notBreaching)",
        "9 CloudWatch alarms × $0.1/alarm-month = $0.90",
        "self-check schedule rate(15 minutes): 2920 invocations/month",
        "email notifications: first 1,000/month free",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    // Off: no schedule, five alarms.
    let out = plan(&["--self-check-schedule", "off"]);
    assert!(
        out.contains("5 CloudWatch alarms × $0.1/alarm-month = $0.50")
            && out.contains("self-check schedule: off")
            && !out.contains("alarm-plan-self-check"),
        "{out}"
    );
}
