//! `deploy/provision partner add|remove|list` as an operator runs them, on moto (through
//! testkit's AWS proxy with no delays): the config file is edited and applied, adding the same
//! partner twice changes nothing, removing an absent one says so (exit 0), bad partners are refused
//! before the file is written, `partner list`, `plan` and `outputs` show each partner's prefix,
//! queues, port and concurrency.

mod util;

use serde_json::Value;
use util::Files;

const STACK: &str = "cli-partners";

fn provision(args: &[&str]) -> (Option<i32>, String, String) {
    util::deploy_provision_on(testkit::strict_aws::moto_translated(), STACK, args)
}

/// The table line of `partner`, split on whitespace.
fn row(out: &str, partner: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(partner))
        .unwrap_or_else(|| panic!("no line for {partner} in:\n{out}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn partner_add_remove_list_as_an_operator_runs_them() {
    let files = Files::new();
    let dir = files.path();
    std::fs::write(
        dir.join("bank.json"),
        util::partner_json_at("198.51.100.7", 2222),
    )
    .unwrap();
    std::fs::write(
        dir.join("shop.json"),
        util::partner_json_at("198.51.100.8", 22),
    )
    .unwrap();
    let config = dir.join("stack.json");
    let zip = files.zip().display().to_string();
    std::fs::write(&config, format!(r#"{{"zip": "{zip}", "batch_size": 5}}"#)).unwrap();
    let config = config.display().to_string();
    let cfg = ["--config", config.as_str()];
    let run = |args: &[&str]| provision(&[&cfg[..], args].concat());
    let bank = dir.join("bank.json").display().to_string();
    let shop = dir.join("shop.json").display().to_string();
    let add_bank = [
        "partner",
        "add",
        "bank",
        "--prefix",
        "bank/",
        "--secret-file",
        &bank,
        "--max-concurrency",
        "3",
    ];

    let (code, out, err) = run(&add_bank);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("partner bank added to the config file"),
        "{out}"
    );
    assert!(out.contains("Apply complete:"), "{out}");
    assert!(!out.contains("not-printed") && !err.contains("not-printed"));
    assert_eq!(row(&out, "bank")[1..4], ["bank/", "2222", "3"]);

    // The same partner again: the file and the stack are unchanged.
    let before = std::fs::read_to_string(dir.join("stack.json")).unwrap();
    let (code, out, err) = run(&add_bank);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("partner bank is already declared as given"),
        "{out}"
    );
    assert!(
        out.contains("Apply complete: 0 created, 0 updated"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("stack.json")).unwrap(),
        before
    );

    let (code, out, err) = run(&[
        "partner",
        "add",
        "shop",
        "--prefix",
        "shop/",
        "--secret-file",
        &shop,
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("partner shop added"), "{out}");

    // Refused before the file is written (or AWS called): an overlap, a concurrency Lambda refuses.
    let before = std::fs::read_to_string(dir.join("stack.json")).unwrap();
    let (code, out, err) = run(&[
        "partner",
        "add",
        "bank-eu",
        "--prefix",
        "bank/eu/",
        "--secret-file",
        &bank,
    ]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("\"bank\"") && err.contains("\"bank-eu\"") && err.contains("overlap"),
        "{err}"
    );
    let (code, _, err) = run(&[
        "partner",
        "add",
        "big",
        "--prefix",
        "big/",
        "--max-concurrency",
        "1001",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("max_concurrency") && err.contains("2..=1000"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("stack.json")).unwrap(),
        before
    );
    let kept: Value = serde_json::from_str(&before).unwrap();
    assert_eq!(kept["batch_size"], 5, "other fields are kept");

    let (code, out, err) = run(&["partner", "list"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(
        row(&out, "bank")[1..],
        [
            "bank/",
            "2222",
            "3",
            "cli-partners-partner-bank",
            "cli-partners-partner-bank-dlq"
        ]
    );
    assert_eq!(row(&out, "shop")[1..4], ["shop/", "22", "2"]);

    let (code, out, _) = run(&["plan"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Plan: 0 to create, 0 to update"), "{out}");
    assert_eq!(row(&out, "shop")[1..4], ["shop/", "22", "2"]);

    // What the function does with S3's test events (moto cannot invoke it): acknowledge them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = testkit::strict_aws::moto_translated().sdk_config().await;
        let c = provision::Clients::new(&config).unwrap();
        util::consume_test_events(&c, STACK).await;
    });
    let (code, out, err) = run(&["partner", "remove", "shop"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("partner shop removed from the config file"),
        "{out}"
    );
    assert!(
        out.contains("- deleted") && out.contains("cli-partners-partner-shop"),
        "{out}"
    );
    // The apply deleted the mapping, both queues, the secret and the alarms; created nothing.
    assert!(
        out.contains("Apply complete: 0 created,") && out.contains(" deleted, 0 kept)"),
        "{out}"
    );
    let (code, out, _) = run(&["partner", "remove", "shop"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("partner shop is not declared: nothing to remove"),
        "{out}"
    );

    let (code, out, err) = run(&["outputs"]);
    assert_eq!(code, Some(0), "{err}");
    let outputs: Value = serde_json::from_str(&out).unwrap();
    let partners = outputs["partners"].as_array().unwrap();
    assert_eq!(partners.len(), 1, "{out}");
    assert_eq!(partners[0]["name"], "bank");
    assert_eq!(partners[0]["prefix"], "bank/");
    assert_eq!(partners[0]["port"], 2222);
    assert_eq!(partners[0]["max_concurrency"], 3);
    assert_eq!(partners[0]["dlq"], "cli-partners-partner-bank-dlq");

    // The last partner cannot be removed this way; without --config nothing is edited.
    let (code, _, err) = run(&["partner", "remove", "bank"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("last partner"), "{err}");
    let (code, _, err) = provision(&["partner", "remove", "bank"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("pass --config FILE"), "{err}");
}
