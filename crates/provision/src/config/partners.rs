//! The `partners` of a stack with several (or one named) partner: each its own key prefix,
//! secret, route, overwrite policy, connection limit and, optionally, address.
//!
//! A config without `partners` is the single-partner stack (`secret`, `secret_file`,
//! `partner_address`, `max_concurrency` at the top level) as it always was. With `partners`, those
//! top-level partner fields are refused (each partner has its own), except `max_concurrency`,
//! which is then the default of every partner's.
//!
//! Validation goes through [`Routing::new`], exactly as the function validates its
//! `SFTP_FORWARD_PARTNERS`: names, uniqueness, a prefix on every partner when there are several,
//! prefixes that do not overlap, templates and overwrite policies. All of it runs before any AWS
//! call.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sftp_forward_core::routing::{PartnerSpec, Routing};

use super::{in_range, parse_partner, Partner};
use crate::error::{Error, Result};

/// One partner as the config file declares it (`partners: [...]`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    /// `[a-z0-9][a-z0-9-]*`, at most 32: names its queue, its alarms, its metrics' `Partner`.
    pub name: String,
    /// Its key prefix in the inbox bucket, e.g. `acme/`; required when there are several partners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Its secret's name or ARN; default `sftp-forward/<stack>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A file with its partner JSON, to create (or update) the secret from; never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Its SFTP server's IPv4 address or hostname for the security group, when the partner JSON's
    /// `Host` is not what the function's egress should be limited to; default: the JSON's `Host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Object key → remote path (`{key}` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_path_template: Option<String>,
    /// Removed from the key before the template; default: the prefix; `""` keeps the whole key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// `overwrite` (default), `fail-if-exists` or `skip-if-same-size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<String>,
    /// Connections to this partner at once: its event source mapping's `MaximumConcurrency`
    /// (2..=1000); default the top-level `max_concurrency`, else 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// One partner, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerConfig {
    /// What goes into the function's `SFTP_FORWARD_PARTNERS` (its `secret_id` is the configured
    /// secret name or ARN).
    pub spec: PartnerSpec,
    /// Whether the operator named the secret (else the stack's default name).
    pub secret_given: bool,
    /// The file to create or update its secret from.
    pub secret_file: Option<PathBuf>,
    /// Where the security group lets the function reach it, if the operator said.
    pub address: Option<Partner>,
    /// Its event source mapping's `MaximumConcurrency`.
    pub max_concurrency: u32,
    /// How errors and the report name it.
    pub fields: Fields,
}

/// How errors and the report name a partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// `partners["bank"].secret`.
    pub secret: String,
    /// `partner bank`.
    pub whose: String,
}

/// The prefix of every partner queue's name: `<stack>-partner-`.
pub fn queue_prefix(stack: &str) -> String {
    format!("{stack}-partner-")
}

impl PartnerConfig {
    /// The partner's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// Its secret's name or ARN.
    pub fn secret(&self) -> &str {
        &self.spec.secret_id
    }
    /// Its queue: `<stack>-partner-<name>` (at most 32 + 9 + 32 = 73 of SQS's 80 characters).
    pub fn queue_name(&self, stack: &str) -> String {
        format!("{}{}", queue_prefix(stack), self.name())
    }
    /// Its dead-letter queue: `<stack>-partner-<name>-dlq` (at most 77 characters).
    pub fn dlq_name(&self, stack: &str) -> String {
        format!("{}-dlq", self.queue_name(stack))
    }
    /// Its notification's id on the bucket.
    pub fn notification_id(&self) -> String {
        notification_id(self.name())
    }
}

/// The bucket notification id of partner `name`: `sftp-forward-<name>`.
pub fn notification_id(name: &str) -> String {
    format!("{}-{name}", crate::inbox::bucket::NOTIFICATION_ID)
}

/// The default secret of partner `name`.
pub fn default_secret(stack: &str, name: &str) -> String {
    format!("sftp-forward/{stack}/{name}")
}

/// Checks `partners` (see the module doc); `default_concurrency` is the top-level
/// `max_concurrency`, if given.
pub fn validate(
    stack: &str,
    raw: Vec<RawPartner>,
    default_concurrency: Option<u32>,
) -> Result<Vec<PartnerConfig>> {
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let field = |f: &str| format!("partners[{:?}].{f}", p.name);
        let address = p
            .address
            .as_deref()
            .map(|a| {
                parse_partner(a).map_err(|e| match e {
                    Error::Invalid { reason, .. } => Error::invalid(field("address"), reason),
                    other => other,
                })
            })
            .transpose()?;
        let max_concurrency = in_range(
            &field("max_concurrency"),
            p.max_concurrency.or(default_concurrency),
            2,
            2,
            1000,
        )
        .map_err(|e| match e {
            Error::Invalid { field, reason } => Error::invalid(
                field,
                format!("{reason} (Lambda's MaximumConcurrency of an SQS event source mapping)"),
            ),
            other => other,
        })?;
        if p.name.ends_with("-dlq") {
            return Err(Error::invalid(
                field("name"),
                "must not end in \"-dlq\": its queue would take another partner's dead-letter \
                 queue name",
            ));
        }
        out.push(PartnerConfig {
            fields: Fields {
                secret: field("secret"),
                whose: format!("partner {}", p.name),
            },
            secret_given: p.secret.is_some(),
            spec: PartnerSpec {
                secret_id: p.secret.unwrap_or_else(|| default_secret(stack, &p.name)),
                name: p.name,
                prefix: p.prefix,
                remote_path_template: p.remote_path_template,
                strip_prefix: p.strip_prefix,
                overwrite: p.overwrite,
            },
            secret_file: p.secret_file,
            address,
            max_concurrency,
        });
    }
    routing(&out)?;
    Ok(out)
}

/// The function's routing of `partners` (validated as the function validates it).
pub fn routing(partners: &[PartnerConfig]) -> Result<Routing> {
    Routing::new(partners.iter().map(|p| p.spec.clone()).collect())
        .map_err(|e| Error::invalid("partners", e.to_string()))
}

/// Lambda's limit on a function's whole environment (names and values): 4 KB.
pub const LAMBDA_ENV_LIMIT: usize = 4096;

/// The size Lambda counts of an environment: names and values.
pub fn env_size<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    env.into_iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Room kept in the 4 KB check made before any AWS call for what apply adds besides the partners
/// and the operator's `environment` (the EIPs, the self-check's paths, the events settings: about
/// 300 bytes); `apply` checks the exact environment again before writing it.
pub const RESERVED_ENV: usize = 400;

/// Before any AWS call: the function's environment with `partners` and the operator's
/// `environment` (and [`RESERVED_ENV`] for the rest) fits Lambda's 4 KB.
pub fn check_fits(
    partners: &[PartnerConfig],
    environment: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let mut env = environment.clone();
    env.insert(
        sftp_forward_core::env::PARTNERS.into(),
        routing(partners)?.to_json(),
    );
    env.insert(String::new(), "x".repeat(RESERVED_ENV));
    check_env_size(&env)
}

/// Refuses an environment over [`LAMBDA_ENV_LIMIT`], saying what takes the room.
pub fn check_env_size<'a>(
    env: impl IntoIterator<Item = (&'a String, &'a String)> + Clone,
) -> Result<()> {
    let size = env_size(env.clone());
    if size <= LAMBDA_ENV_LIMIT {
        return Ok(());
    }
    let partners = env
        .into_iter()
        .find(|(k, _)| k.as_str() == sftp_forward_core::env::PARTNERS)
        .map_or(0, |(k, v)| k.len() + v.len());
    Err(Error::invalid(
        "partners",
        format!(
            "the function's environment would be {size} bytes, over Lambda's limit of \
             {LAMBDA_ENV_LIMIT} (of which {} is SFTP_FORWARD_PARTNERS): shorten prefixes, \
             templates and secret names (a secret name is shorter than its ARN), or split the \
             partners over two stacks",
            partners
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, prefix: Option<&str>) -> RawPartner {
        RawPartner {
            name: name.into(),
            prefix: prefix.map(str::to_owned),
            ..RawPartner::default()
        }
    }

    #[test]
    fn partners_get_default_secrets_queues_and_concurrency() {
        let p = validate("acme", vec![raw("bank", Some("bank/"))], Some(5)).unwrap();
        assert_eq!(p[0].secret(), "sftp-forward/acme/bank");
        assert!(!p[0].secret_given);
        assert_eq!(p[0].queue_name("acme"), "acme-partner-bank");
        assert_eq!(p[0].dlq_name("acme"), "acme-partner-bank-dlq");
        assert_eq!(p[0].max_concurrency, 5);
        assert_eq!(p[0].notification_id(), "sftp-forward-bank");
        let long = "a".repeat(32);
        assert!(
            validate(&long, vec![raw(&long, None)], None).unwrap()[0]
                .dlq_name(&long)
                .len()
                <= 80
        );
    }

    #[test]
    fn bad_partners_are_refused_naming_them() {
        let e = validate(
            "s",
            vec![raw("acme", Some("acme/")), raw("acme-eu", Some("acme/eu/"))],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("overlap") && e.contains("acme-eu"), "{e}");
        let mut p = raw("acme", Some("acme/"));
        p.max_concurrency = Some(1);
        let e = validate("s", vec![p], None).unwrap_err().to_string();
        assert!(
            e.contains("partners[\"acme\"].max_concurrency") && e.contains("2..=1000"),
            "{e}"
        );
        let e = validate("s", vec![raw("acme", Some("acme/"))], Some(1001))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1001"), "{e}");
        let mut p = raw("acme", Some("acme/"));
        p.address = Some("::1".into());
        let e = validate("s", vec![p], None).unwrap_err().to_string();
        assert!(e.contains("partners[\"acme\"].address"), "{e}");
        let e = validate("s", vec![raw("acme", None), raw("bank", Some("b/"))], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"acme\"") && e.contains("prefix"), "{e}");
    }

    /// How many partners of a typical shape fit: 8-letter names, their prefix, default secrets.
    #[test]
    fn about_forty_partners_fit_in_the_environment() {
        let stack = "acme";
        let partners = |n: usize| {
            let raw = (0..n)
                .map(|i| raw(&format!("partn{i:03}"), Some(&format!("partn{i:03}/"))))
                .collect();
            validate(stack, raw, None).unwrap()
        };
        let env = std::collections::BTreeMap::new();
        let fit = (1..200)
            .take_while(|n| check_fits(&partners(*n), &env).is_ok())
            .last()
            .unwrap();
        assert!((35..=50).contains(&fit), "{fit} partners fit");
        let e = check_fits(&partners(fit + 1), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("over Lambda's limit of 4096"), "{e}");
    }

    #[test]
    fn an_environment_over_4_kb_is_refused() {
        let small = [(sftp_forward_core::env::PARTNERS.to_owned(), "x".repeat(100))];
        assert!(check_env_size(small.iter().map(|(k, v)| (k, v))).is_ok());
        let big = [(
            sftp_forward_core::env::PARTNERS.to_owned(),
            "x".repeat(4100),
        )];
        let e = check_env_size(big.iter().map(|(k, v)| (k, v)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("4096") && e.contains("SFTP_FORWARD_PARTNERS"),
            "{e}"
        );
    }
}
