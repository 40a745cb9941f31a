//! `deploy/provision failover|failback` on the strict-AWS bed (moto behind `testkit::strict_aws`),
//! run as an operator runs them: the route tables are checked with describe calls (what EC2
//! holds), the report and `outputs` with what the operator reads.

mod util;

use serde_json::Value;
use util::*;

use util::deploy_provision as provision;

/// Runs `args` and asserts exit 0; returns stdout.
fn ok(stack: &str, args: &[&str]) -> String {
    let (code, out, err) = provision(stack, args);
    assert_eq!(code, Some(0), "{args:?}:\n{out}\n{err}");
    out
}

fn outputs(stack: &str) -> Value {
    serde_json::from_str(&ok(stack, &["outputs"])).expect("outputs is JSON")
}

/// What EC2 holds: the NAT gateway id that route table `name`'s 0.0.0.0/0 route targets.
async fn default_target(c: &provision::Clients, stack: &str, name: &str) -> String {
    let out = c
        .ec2
        .describe_route_tables()
        .filters(stack_filter(stack))
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:Name")
                .values(name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let [table] = out.route_tables() else {
        panic!("one route table {name}: {out:?}")
    };
    let route = table
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
        .unwrap_or_else(|| panic!("{name} has no default route: {table:?}"));
    route.nat_gateway_id().unwrap_or_default().to_owned()
}

/// failover → the route targets NAT two → apply keeps it and says so → failback restores it →
/// a missing NAT is refused → destroy still removes everything.
#[tokio::test(flavor = "multi_thread")]
async fn failover_survives_apply_until_failback_and_destroy_removes_everything() {
    let c = clients().await;
    let stack = "failover";
    let files = Files::new();
    let (zip, secret) = (files.zip(), files.secret_file());
    let inputs = [
        "--zip",
        zip.to_str().unwrap(),
        "--secret-file",
        secret.to_str().unwrap(),
        "--partner-address",
        PARTNER_IP,
    ];
    let with = |cmd: &'static str| [&[cmd][..], &inputs].concat();

    // No stack yet: refused, naming what to do.
    let (code, out, err) = provision(stack, &["failover", "--az", "one"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("no route table private-one-subnet")
            && err.contains("deploy/provision apply first"),
        "{err}"
    );
    let (code, _, err) = provision(stack, &["failover", "--az", "three"]);
    assert_eq!(code, Some(2), "{err}");

    ok(stack, &with("apply"));
    let json = outputs(stack);
    let nat = |name: &str| json["nat_gateways"][name].as_str().unwrap().to_owned();
    let (nat_one, nat_two) = (nat("nat-one"), nat("nat-two"));
    assert_eq!(
        default_target(&c, stack, "private-one-subnet").await,
        nat_one
    );
    assert_eq!(json["private_routes"]["private-one"]["via"], "nat-one");
    assert_eq!(json["private_routes"]["private-one"]["failed_over"], false);

    // Failover: private subnet one's default route now targets NAT two; subnet two untouched.
    let out = ok(stack, &["failover", "--az", "one"]);
    assert!(
        out.contains("~ updated       route private-one-subnet: 0.0.0.0/0 → nat-two")
            && out.contains("private subnet one routes through NAT two (failed over)")
            && out.contains("Failover complete: 1 route(s) replaced, 0 already in place"),
        "{out}"
    );
    assert_eq!(
        default_target(&c, stack, "private-one-subnet").await,
        nat_two
    );
    assert_eq!(
        default_target(&c, stack, "private-two-subnet").await,
        nat_two
    );
    // Idempotent.
    let out = ok(stack, &["failover", "--az", "one"]);
    assert!(
        out.contains("Failover complete: 0 route(s) replaced, 1 already in place"),
        "{out}"
    );

    // apply keeps the failover and says so; so does plan; outputs shows it.
    let out = ok(stack, &with("apply"));
    assert!(
        out.contains(
            "! private subnet one routes through NAT two (failed over); run `deploy/provision \
             failback` when NAT one is healthy"
        ) && out.contains("= unchanged     route private-one-subnet: 0.0.0.0/0 → nat-two")
            && out.contains("Apply complete: 0 created, 0 updated"),
        "{out}"
    );
    assert_eq!(
        default_target(&c, stack, "private-one-subnet").await,
        nat_two,
        "apply reverted the failover"
    );
    let out = ok(stack, &with("plan"));
    assert!(
        out.contains("private subnet one routes through NAT two (failed over)")
            && out.contains("Plan: 0 to create, 0 to update"),
        "{out}"
    );
    let json = outputs(stack);
    let routes = &json["private_routes"];
    assert_eq!(routes["private-one"]["via"], "nat-two", "{json}");
    assert_eq!(routes["private-one"]["failed_over"], true, "{json}");
    assert_eq!(routes["private-two"]["via"], "nat-two", "{json}");
    assert_eq!(routes["private-two"]["failed_over"], false, "{json}");

    // failback of the other AZ changes nothing; failback (both) restores subnet one.
    let out = ok(stack, &["failback", "--az", "two"]);
    assert!(
        out.contains("0 route(s) replaced, 1 already in place"),
        "{out}"
    );
    assert_eq!(
        default_target(&c, stack, "private-one-subnet").await,
        nat_two
    );
    let out = ok(stack, &["failback"]);
    assert!(
        out.contains("~ updated       route private-one-subnet: 0.0.0.0/0 → nat-one")
            && out.contains("Failback complete: 1 route(s) replaced, 1 already in place"),
        "{out}"
    );
    assert_eq!(
        default_target(&c, stack, "private-one-subnet").await,
        nat_one
    );
    assert_eq!(
        outputs(stack)["private_routes"]["private-one"]["failed_over"],
        false
    );

    // NAT two going away: failing over to it is refused and changes nothing.
    c.ec2
        .delete_nat_gateway()
        .nat_gateway_id(&nat_two)
        .send()
        .await
        .unwrap();
    let (code, out, err) = provision(stack, &["failover", "--az", "one"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("NAT gateway nat-two: failover --az one would route through it, but it")
            && err.contains("nothing was changed")
            && (err.contains("is deleting, not available") || err.contains("does not exist")),
        "{err}"
    );
    assert_eq!(
        default_target(&c, stack, "private-one-subnet").await,
        nat_one
    );

    let out = ok(stack, &["destroy", "--release-eips"]);
    assert!(out.contains("Destroy complete"), "{out}");
    assert_eq!(tagged_ec2(&c, stack).await, Vec::<String>::new());
}
