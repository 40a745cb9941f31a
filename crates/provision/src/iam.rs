//! The function's execution role and its least-privilege inline policy.
//!
//! Every action is named (no wildcards in actions) and scoped to this stack's bucket objects,
//! secret, queue and log group. The only `"Resource": "*"` is for the three network-interface
//! actions Lambda needs to attach the function to the VPC, which AWS does not let one scope
//! (`ec2:DescribeNetworkInterfaces` only works on `*`; Lambda picks the subnets' ENIs itself).

use std::time::Duration;

use aws_sdk_iam::types::Role;
use serde_json::{json, Value};

use crate::context::{is_placeholder, Ctx, State};
use crate::error::{aws, Result};
use crate::STACK_TAG;

/// The inline policy's name on the role.
pub const POLICY_NAME: &str = "sftp-forward-function";

/// The network-interface actions that must have `"Resource": "*"`.
pub const ENI_ACTIONS: [&str; 3] = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
];

/// What the policy is scoped to.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: &'a str,
    /// The region.
    pub region: &'a str,
    /// The account id.
    pub account: &'a str,
    /// The inbox bucket.
    pub bucket: &'a str,
    /// The partners' secrets' ARNs (one for the single-partner stack).
    pub secret_arns: &'a [String],
    /// The queues' ARNs the function consumes (one per partner).
    pub queue_arns: &'a [String],
    /// The function's name (its log group is `/aws/lambda/<name>`).
    pub function: &'a str,
    /// Customer-managed KMS keys of the secret or the bucket (key ARNs), if any: the function
    /// may decrypt with them only through Secrets Manager and S3.
    pub kms_keys: &'a [String],
    /// The EventBridge bus of its delivery events (name or ARN), `None` when they are off.
    pub events_bus: Option<&'a str>,
}

/// Lets Lambda assume the role.
pub fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The function's permissions: read the inbox objects and tag them (delivery receipts), read the
/// one secret, consume the queue, attach to the VPC, write its logs.
pub fn execution_policy(s: &Scope<'_>) -> Value {
    let Scope {
        partition: p,
        region: r,
        account: a,
        ..
    } = s;
    let log_group = format!("arn:{p}:logs:{r}:{a}:log-group:/aws/lambda/{}", s.function);
    let mut statements = vec![
        json!({
            // The version actions: events carry a versionId when the bucket is versioned, and
            // the function reads and tags exactly that version.
            "Sid": "ReadAndTagInboxObjects",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:GetObjectTagging",
                "s3:GetObjectVersionTagging",
                "s3:PutObjectTagging",
                "s3:PutObjectVersionTagging"
            ],
            "Resource": format!("arn:{p}:s3:::{}/*", s.bucket)
        }),
        json!({
            // Without it S3 answers 403 for an object deleted before its event was handled,
            // where the function needs the 404 that says "gone, nothing to deliver".
            "Sid": "ListInbox",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": format!("arn:{p}:s3:::{}", s.bucket)
        }),
        json!({
            "Sid": "ReadPartnerSecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": one_or_many(s.secret_arns)
        }),
        json!({
            // GetQueueAttributes: the event source mapping checks the queue with the role.
            "Sid": "ConsumeInboxQueue",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": one_or_many(s.queue_arns)
        }),
        json!({
            "Sid": "AttachToVpc",
            "Effect": "Allow",
            "Action": ENI_ACTIONS,
            "Resource": "*"
        }),
        json!({
            "Sid": "ManageVpcInterfaceAddresses",
            "Effect": "Allow",
            "Action": ["ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
            "Resource": format!("arn:{p}:ec2:{r}:{a}:network-interface/*")
        }),
        json!({
            // The log group is created by apply (with its retention), not by the function.
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [log_group.clone(), format!("{log_group}:*")]
        }),
    ];
    if let Some(bus) = s.events_bus {
        let arn = crate::delivery_events::bus_arn(bus, p, r, a);
        statements.push(crate::delivery_events::statement(&arn));
    }
    if !s.kms_keys.is_empty() {
        statements.push(json!({
            "Sid": "DecryptSecretAndObjects",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": s.kms_keys,
            "Condition": {"StringEquals": {"kms:ViaService": [
                format!("secretsmanager.{r}.amazonaws.com"),
                format!("s3.{r}.amazonaws.com")
            ]}}
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// One resource as a string (the policy a single-partner stack always had), several as a list.
fn one_or_many(arns: &[String]) -> Value {
    match arns {
        [one] => json!(one),
        many => json!(many),
    }
}

/// The ARN of a KMS key given as an ARN, a key id or an alias (`alias/…`), or `None` for the AWS
/// managed keys (`alias/aws/…`), which need no grant in the role.
pub fn kms_key_arn(key: &str, partition: &str, region: &str, account: &str) -> Option<String> {
    if key.is_empty() || key.starts_with("alias/aws/") || key.contains(":alias/aws/") {
        return None;
    }
    if key.starts_with("arn:") && !key.contains(":alias/") {
        return Some(key.to_owned());
    }
    // A grant on an alias (name or ARN) does not cover the key behind it: an alias gets the
    // account's keys, still only through Secrets Manager and S3 (the kms:ViaService condition).
    if key.contains(":alias/") {
        return Some(format!("arn:{partition}:kms:{region}:{account}:key/*"));
    }
    let id = if key.starts_with("alias/") { "*" } else { key };
    Some(format!("arn:{partition}:kms:{region}:{account}:key/{id}"))
}

/// `(partition, account)` from an ARN such as a role's.
pub fn partition_and_account(arn: &str) -> (&str, &str) {
    let mut parts = arn.split(':');
    let partition = parts.nth(1).unwrap_or("aws");
    (partition, parts.nth(2).unwrap_or_default())
}

/// How long after its creation a role may still be unknown to Lambda (IAM is eventually
/// consistent: "changes may take time to propagate").
pub const ROLE_PROPAGATION: Duration = Duration::from_secs(120);

/// The role, if it exists.
pub async fn find_role(c: &crate::Clients, name: &str) -> Result<Option<Role>> {
    match c.iam.get_role().role_name(name).send().await {
        Ok(out) => Ok(out.role().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(aws("GetRole", format!("IAM role {name}"))(e)),
    }
}

/// The value of the role's [`STACK_TAG`], if any.
pub fn role_stack(role: &Role) -> Option<&str> {
    role.tags()
        .iter()
        .find(|t| t.key() == STACK_TAG)
        .map(|t| t.value())
}

/// Whether the role was created recently enough that Lambda may not be able to assume it yet.
pub fn is_fresh(role: &Role) -> bool {
    let created = role.create_date().secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(i64::MAX);
    now.saturating_sub(created) < ROLE_PROPAGATION.as_secs() as i64
}

/// Before anything is created: a role of this stack's name that another stack (or someone else)
/// owns is refused.
pub async fn check_role(ctx: Ctx<'_>) -> Result<()> {
    let name = ctx.spec.role_name(&ctx.clients.region);
    match find_role(ctx.clients, &name).await? {
        Some(role) => crate::role::check_ours(ctx, &role, &name),
        None => Ok(()),
    }
}

/// Finds or creates the role and brings its inline policy to [`execution_policy`]. Returns the
/// role's ARN and whether it is fresh (created by this run, or recently by its `CreateDate`):
/// Lambda may refuse to assume a fresh role for a while. A role of the same name that is not
/// this stack's is refused, never adopted.
pub async fn ensure_role(
    ctx: Ctx<'_>,
    secret_arns: &[String],
    queue_arns: &[String],
    kms_keys: &[String],
) -> Result<(String, bool)> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let name = spec.role_name(&c.region);
    let what = format!("IAM role {name}");
    let wanted_role = crate::role::Wanted {
        name: &name,
        what: &what,
        trust: trust_policy(),
        description: format!(
            "sftp-forward function of stack {} in {}",
            spec.stack, c.region
        ),
    };
    let (arn, fresh, created) = crate::role::ensure(ctx, &wanted_role).await?;

    let policy_what = format!("inline policy {POLICY_NAME} of {what}");
    if std::iter::once(&arn)
        .chain(secret_arns)
        .chain(queue_arns)
        .any(|id| is_placeholder(id))
    {
        ctx.converge(&policy_what, State::Missing, || async { Ok(()) })
            .await?;
        return Ok((arn, fresh));
    }
    let (partition, account) = partition_and_account(&arn);
    let function = spec.function_name();
    let wanted = execution_policy(&Scope {
        partition,
        region: &c.region,
        account,
        bucket: &spec.bucket,
        secret_arns,
        queue_arns,
        function: &function,
        kms_keys,
        events_bus: crate::delivery_events::bus(spec),
    });
    crate::role::converge_policy(ctx, (&name, POLICY_NAME, &policy_what), &wanted, created).await?;
    Ok((arn, fresh))
}

/// IAM returns policy documents URL-encoded; emulators may not.
pub fn decode_policy(doc: &str) -> Value {
    serde_json::from_str(doc).unwrap_or_else(|_| {
        let decoded = percent_encoding::percent_decode_str(doc).decode_utf8_lossy();
        serde_json::from_str(&decoded).unwrap_or(Value::Null)
    })
}

/// Checks a policy document for least privilege: no wildcard in any action, and `"*"` resources
/// only on [`ENI_ACTIONS`]. Returns the violations (empty when the policy is fine).
pub fn least_privilege_violations(policy: &Value) -> Vec<String> {
    let as_list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut bad = Vec::new();
    for st in policy["Statement"].as_array().into_iter().flatten() {
        let sid = st["Sid"].as_str().unwrap_or("?");
        let actions = as_list(&st["Action"]);
        let resources = as_list(&st["Resource"]);
        if st.get("NotAction").is_some() || st.get("NotResource").is_some() {
            bad.push(format!("{sid}: NotAction/NotResource"));
        }
        if actions.is_empty() || resources.is_empty() {
            bad.push(format!("{sid}: no actions or no resources"));
        }
        bad.extend(
            actions
                .iter()
                .filter(|a| a.contains('*'))
                .map(|a| format!("{sid}: wildcard action {a}")),
        );
        if resources.iter().any(|r| r == "*")
            && !actions.iter().all(|a| ENI_ACTIONS.contains(&a.as_str()))
        {
            bad.push(format!("{sid}: Resource \"*\" on {actions:?}"));
        }
    }
    bad
}

/// The role name of stacks built before the region was part of it.
fn legacy_role_name(stack: &str) -> String {
    format!("{stack}-forward-role")
}

/// Deletes the function's role, if it is this stack's (IAM names are global: a role of the same
/// name tagged for another stack, or not at all, is left alone and reported), and the role an
/// older version named `<stack>-forward-role`, if tagged for this stack.
pub(crate) async fn delete_role(ctx: Ctx<'_>) -> Result<()> {
    let (c, spec) = (ctx.clients, ctx.spec);
    crate::role::delete(ctx, &spec.role_name(&c.region), POLICY_NAME, true).await?;
    crate::role::delete(ctx, &legacy_role_name(&spec.stack), POLICY_NAME, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope<'static> {
        static SECRETS: std::sync::LazyLock<[String; 1]> = std::sync::LazyLock::new(|| {
            ["arn:aws:secretsmanager:us-east-1:123456789012:secret:sftp-forward/acme/partner-AbCdEf".to_owned()]
        });
        static QUEUES: std::sync::LazyLock<[String; 1]> = std::sync::LazyLock::new(|| {
            ["arn:aws:sqs:us-east-1:123456789012:acme-inbox".to_owned()]
        });
        Scope {
            partition: "aws",
            region: "us-east-1",
            account: "123456789012",
            bucket: "acme-inbox",
            secret_arns: &*SECRETS,
            queue_arns: &*QUEUES,
            function: "acme-forward",
            kms_keys: &[],
            events_bus: Some("default"),
        }
    }

    /// Guards issue 8's check: no wildcard actions, every resource scoped to this stack.
    #[test]
    fn execution_policy_is_least_privilege() {
        let s = scope();
        let policy = execution_policy(&s);
        assert_eq!(least_privilege_violations(&policy), Vec::<String>::new());
        let statements = policy["Statement"].as_array().unwrap();
        for st in statements {
            let resources: Vec<&str> = match &st["Resource"] {
                Value::String(r) => vec![r],
                Value::Array(a) => a.iter().map(|r| r.as_str().unwrap()).collect(),
                other => panic!("resource {other}"),
            };
            for r in resources {
                let scoped = r == "*"
                    || r == "arn:aws:s3:::acme-inbox/*"
                    || r == "arn:aws:s3:::acme-inbox"
                    || r == s.secret_arns[0]
                    || r == s.queue_arns[0]
                    || r == "arn:aws:ec2:us-east-1:123456789012:network-interface/*"
                    || r == "arn:aws:events:us-east-1:123456789012:event-bus/default"
                    || r.starts_with(
                        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/acme-forward",
                    );
                assert!(scoped, "{} has unscoped resource {r}", st["Sid"]);
            }
        }
        let actions: Vec<&str> = statements
            .iter()
            .flat_map(|st| {
                st["Action"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
            })
            .collect();
        for needed in [
            "s3:GetObject",
            "s3:GetObjectTagging",
            "s3:PutObjectTagging",
            "s3:ListBucket",
            "s3:GetObjectVersion",
            "secretsmanager:GetSecretValue",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "ec2:CreateNetworkInterface",
            "logs:PutLogEvents",
            "events:PutEvents",
        ] {
            assert!(actions.contains(&needed), "{needed} missing");
        }
        assert!(
            !actions
                .iter()
                .any(|a| a.starts_with("s3:Put") && !a.ends_with("Tagging")),
            "{actions:?}"
        );
    }

    #[test]
    fn the_checker_catches_wildcards() {
        let bad = json!({"Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
            {"Sid": "B", "Effect": "Allow", "Action": ["sqs:ReceiveMessage"], "Resource": "*"}
        ]});
        assert_eq!(least_privilege_violations(&bad).len(), 2);
    }

    /// Guards issue 13 point 8: a customer-managed key is granted only through Secrets Manager and
    /// S3; AWS managed keys need no grant.
    #[test]
    fn customer_managed_keys_are_decryptable_only_via_the_services() {
        let keys = [kms_key_arn("1234abcd-12ab", "aws", "us-east-1", "123456789012").unwrap()];
        assert_eq!(
            keys[0],
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab"
        );
        assert_eq!(
            kms_key_arn("alias/aws/secretsmanager", "aws", "us-east-1", "1"),
            None
        );
        assert_eq!(
            kms_key_arn(
                "arn:aws:kms:us-east-1:1:alias/partner",
                "aws",
                "us-east-1",
                "1"
            )
            .as_deref(),
            Some("arn:aws:kms:us-east-1:1:key/*")
        );
        let policy = execution_policy(&Scope {
            kms_keys: &keys,
            ..scope()
        });
        assert_eq!(least_privilege_violations(&policy), Vec::<String>::new());
        let kms = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["Sid"] == "DecryptSecretAndObjects")
            .expect("a kms statement");
        assert_eq!(kms["Resource"], json!(keys));
        assert_eq!(
            kms["Condition"]["StringEquals"]["kms:ViaService"],
            json!([
                "secretsmanager.us-east-1.amazonaws.com",
                "s3.us-east-1.amazonaws.com"
            ])
        );
        assert!(execution_policy(&scope())["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .all(|st| st["Sid"] != "DecryptSecretAndObjects"));
    }

    #[test]
    fn url_encoded_documents_decode() {
        let doc =
            percent_encoding::utf8_percent_encode(r#"{"a":1}"#, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(decode_policy(&doc), json!({"a": 1}));
    }

    #[test]
    fn partition_and_account_come_from_the_role_arn() {
        assert_eq!(
            partition_and_account("arn:aws-cn:iam::123456789012:role/x"),
            ("aws-cn", "123456789012")
        );
    }
}
