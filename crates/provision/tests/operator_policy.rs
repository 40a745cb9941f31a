//! `deploy/operator-policy.json` (the operator's own IAM permissions, issue 13 point 10) allows
//! every AWS operation the provisioner calls: each `.<client>.<operation>()` in `src/` is mapped to
//! its IAM action and looked up in the file, so a new call without a permission fails here.

use std::collections::BTreeSet;

/// S3 operations whose IAM action has another name.
const S3_ACTIONS: &[(&str, &str)] = &[
    ("HeadBucket", "ListBucket"),
    ("ListObjectsV2", "ListBucket"),
    (
        "GetBucketNotificationConfiguration",
        "GetBucketNotification",
    ),
    (
        "PutBucketNotificationConfiguration",
        "PutBucketNotification",
    ),
    ("GetPublicAccessBlock", "GetBucketPublicAccessBlock"),
    ("PutPublicAccessBlock", "PutBucketPublicAccessBlock"),
    ("GetBucketEncryption", "GetEncryptionConfiguration"),
    ("PutBucketEncryption", "PutEncryptionConfiguration"),
];

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn operator_policy_allows_every_call() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    let mut sources = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            sources.push(path);
        }
    }
    let mut calls = BTreeSet::new();
    for path in sources {
        let text = std::fs::read_to_string(path).unwrap();
        let squeezed: String = text.split_whitespace().collect();
        for client in [
            "ec2",
            "lambda",
            "iam",
            "s3",
            "sqs",
            "secrets",
            "logs",
            "sts",
            "cloudwatch",
            "sns",
            "scheduler",
            "events",
        ] {
            let needle = format!(".{client}.");
            for (i, _) in squeezed.match_indices(&needle) {
                let rest = &squeezed[i + needle.len()..];
                let Some(op) = rest.split("()").next() else {
                    continue;
                };
                if op
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                    && !op.starts_with("wait_until")
                    && rest.starts_with(&format!("{op}()"))
                {
                    calls.insert((client, op.to_owned()));
                }
            }
        }
    }
    assert!(calls.len() > 60, "the scan found too few calls: {calls:?}");

    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(testkit::repo_root().join("deploy/operator-policy.json")).unwrap(),
    )
    .unwrap();
    let allowed: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|st| st["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let mut missing = Vec::new();
    for (client, op) in &calls {
        let op = camel(op);
        let action = match *client {
            "sts" => continue, // GetCallerIdentity needs no permission
            "secrets" => format!("secretsmanager:{op}"),
            "s3" => {
                let name = S3_ACTIONS
                    .iter()
                    .find(|(api, _)| *api == op)
                    .map_or(op.as_str(), |(_, iam)| iam);
                format!("s3:{name}")
            }
            other => format!("{other}:{op}"),
        };
        if !allowed.contains(&action) {
            missing.push(action);
        }
    }
    // Tagging at creation and handing the role to Lambda need their own permissions.
    for needed in [
        "iam:PassRole",
        "iam:TagRole",
        "lambda:TagResource",
        "ec2:CreateTags",
        "sns:TagResource",
        "cloudwatch:TagResource",
        "events:TagResource",
    ] {
        if !allowed.contains(needed) {
            missing.push(needed.to_owned());
        }
    }
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "deploy/operator-policy.json lacks these"
    );
}
