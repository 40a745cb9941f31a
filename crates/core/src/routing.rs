//! Which partner an object goes to: key prefix → partner → route.
//!
//! A stack serves one or more partners. Each has a name, a key prefix in the inbox bucket, its own
//! Secrets Manager secret (the partner JSON), and its own route template, prefix stripping and
//! overwrite policy. Prefixes never overlap, so a key belongs to at most one partner; a key that
//! belongs to none is reported and counted by the handler, never dropped silently.
//!
//! One partner may have no prefix: then it is the only one, and every key is its (a single-partner
//! stack, as built before partners had names).
//!
//! The same [`PartnerSpec`] is the function's `SFTP_FORWARD_PARTNERS` entry
//! ([`crate::env::PARTNERS`]) and what the provisioner writes there from its config, so both
//! validate with [`Routing::new`].

use forward::{Overwrite, Route};
use serde::{Deserialize, Serialize};

/// The name the single partner of a stack without `SFTP_FORWARD_PARTNERS` goes by.
pub const DEFAULT_PARTNER: &str = "default";

/// One partner as declared: `SFTP_FORWARD_PARTNERS` holds a JSON array of these.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerSpec {
    /// `[a-z0-9][a-z0-9-]*`, at most 32: names the partner in logs, metrics (`Partner`), events,
    /// the CLI's `--partner` and the provisioner's resource names.
    pub name: String,
    /// Keys starting with this go to this partner (e.g. `acme/`). Required when there is more than
    /// one partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The partner's Secrets Manager secret (name or ARN).
    pub secret_id: String,
    /// Object key → remote path (`{key}` by default); see [`forward::Route`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_path_template: Option<String>,
    /// Removed from the key before the template maps it. Default: the partner's `prefix` (its
    /// files land as if the prefix were the bucket's root); `""` keeps the whole key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// `overwrite` (default), `fail-if-exists` or `skip-if-same-size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<String>,
}

/// One partner, validated: what the handler needs to send it a record.
#[derive(Clone, Debug)]
pub struct PartnerRoute {
    /// As declared.
    pub spec: PartnerSpec,
    /// Its key → remote path mapping.
    pub route: Route,
    /// Its overwrite policy.
    pub overwrite: Overwrite,
}

impl PartnerRoute {
    /// The partner's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.spec.secret_id
    }

    /// Its key prefix, if it has one.
    pub fn prefix(&self) -> Option<&str> {
        self.spec.prefix.as_deref()
    }

    /// Whether `key` is this partner's.
    pub fn owns(&self, key: &str) -> bool {
        self.prefix().is_none_or(|p| key.starts_with(p))
    }
}

/// Every partner of a stack; at least one, prefixes disjoint.
#[derive(Clone, Debug)]
pub struct Routing {
    partners: Vec<PartnerRoute>,
}

/// A partner declaration that cannot be used; names the partner and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}{}{problem}",
    partner.as_ref().map(|p| format!("partner {p:?}: ")).unwrap_or_default(),
    field.map(|f| format!("{f}: ")).unwrap_or_default()
)]
pub struct RoutingError {
    /// The partner at fault, if one is.
    pub partner: Option<String>,
    /// Its field at fault (`remote_path_template`, `overwrite`), if the problem is one field's.
    pub field: Option<&'static str>,
    /// What is wrong and what to do.
    pub problem: String,
}

impl Routing {
    /// Validates `specs`: names well formed and unique, a prefix on every partner when there are
    /// several, no prefix another one starts with, templates and overwrite policies valid.
    pub fn new(specs: Vec<PartnerSpec>) -> Result<Routing, RoutingError> {
        let whole = |problem: String| RoutingError {
            partner: None,
            field: None,
            problem,
        };
        if specs.is_empty() {
            return Err(whole("no partner is declared: declare at least one".into()));
        }
        let mut partners: Vec<PartnerRoute> = Vec::with_capacity(specs.len());
        for spec in specs {
            let at = |problem: String| RoutingError {
                partner: Some(spec.name.clone()),
                field: None,
                problem,
            };
            let in_field = |field, problem: String| RoutingError {
                field: Some(field),
                ..at(problem)
            };
            if !valid_name(&spec.name) {
                return Err(at(
                    "the name must be 1 to 32 of a-z, 0-9 and '-', starting with a letter or digit"
                        .into(),
                ));
            }
            if partners.iter().any(|p| p.name() == spec.name) {
                return Err(at("is declared twice: partner names must be unique".into()));
            }
            if spec.secret_id.trim().is_empty() {
                return Err(at(
                    "secret_id is empty: give the name or ARN of its secret".into()
                ));
            }
            if let Some(prefix) = &spec.prefix {
                if prefix.is_empty() || prefix.starts_with('/') || prefix.len() > 1024 {
                    return Err(at(format!(
                        "prefix {prefix:?} is not a key prefix: give 1 to 1024 characters not starting with '/', e.g. \"acme/\""
                    )));
                }
            }
            let strip = match (&spec.strip_prefix, &spec.prefix) {
                (Some(s), _) if s.is_empty() => None,
                (Some(s), _) => Some(s.as_str()),
                (None, prefix) => prefix.as_deref(),
            };
            let template = spec.remote_path_template.as_deref().unwrap_or("{key}");
            let route = Route::new(template, strip)
                .map_err(|e| in_field("remote_path_template", e.to_string()))?;
            let overwrite = match &spec.overwrite {
                None => Overwrite::default(),
                Some(v) => v.parse().map_err(|e| in_field("overwrite", e))?,
            };
            partners.push(PartnerRoute {
                spec,
                route,
                overwrite,
            });
        }
        if partners.len() > 1 {
            if let Some(p) = partners.iter().find(|p| p.prefix().is_none()) {
                return Err(RoutingError {
                    partner: Some(p.name().to_owned()),
                    field: None,
                    problem: "has no prefix, but a stack with several partners routes by key prefix: give every partner its own prefix (e.g. \"acme/\")".into(),
                });
            }
        }
        for (i, a) in partners.iter().enumerate() {
            for b in &partners[i + 1..] {
                let (pa, pb) = (a.prefix().unwrap_or(""), b.prefix().unwrap_or(""));
                if pa.starts_with(pb) || pb.starts_with(pa) {
                    return Err(whole(format!(
                        "partners {:?} (prefix {pa:?}) and {:?} (prefix {pb:?}) overlap: a key could belong to both; give them prefixes neither of which starts with the other",
                        a.name(),
                        b.name()
                    )));
                }
            }
        }
        Ok(Routing { partners })
    }

    /// A stack's single partner without a prefix (every key is its), named [`DEFAULT_PARTNER`].
    pub fn single(
        secret_id: &str,
        template: Option<&str>,
        strip_prefix: Option<&str>,
        overwrite: Option<&str>,
    ) -> Result<Routing, RoutingError> {
        Routing::new(vec![PartnerSpec {
            name: DEFAULT_PARTNER.into(),
            prefix: None,
            secret_id: secret_id.into(),
            remote_path_template: template.map(str::to_owned),
            strip_prefix: Some(strip_prefix.unwrap_or("").to_owned()),
            overwrite: overwrite.map(str::to_owned),
        }])
    }

    /// Parses and validates `SFTP_FORWARD_PARTNERS`' JSON.
    pub fn from_json(text: &str) -> Result<Routing, RoutingError> {
        let specs: Vec<PartnerSpec> = serde_json::from_str(text).map_err(|e| RoutingError {
            partner: None,
            field: None,
            problem: format!(
                "is not a JSON array of partners ({{\"name\", \"prefix\", \"secret_id\", ...}}): {e}"
            ),
        })?;
        Routing::new(specs)
    }

    /// The JSON for `SFTP_FORWARD_PARTNERS` (compact: Lambda's environment holds 4 KB in all).
    pub fn to_json(&self) -> String {
        let specs: Vec<&PartnerSpec> = self.partners.iter().map(|p| &p.spec).collect();
        serde_json::to_string(&specs).expect("serialisable")
    }

    /// Every partner, in declaration order.
    pub fn partners(&self) -> &[PartnerRoute] {
        &self.partners
    }

    /// The index (in [`Routing::partners`]) of the partner whose prefix `key` starts with.
    pub fn partner_for(&self, key: &str) -> Option<usize> {
        self.partners.iter().position(|p| p.owns(key))
    }

    /// The partner called `name`.
    pub fn by_name(&self, name: &str) -> Option<&PartnerRoute> {
        self.partners.iter().find(|p| p.name() == name)
    }

    /// The partners' names, comma-separated (for "no partner is called X; there are: ...").
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.partners.iter().map(|p| p.name()).collect();
        names.join(", ")
    }
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, prefix: Option<&str>) -> PartnerSpec {
        PartnerSpec {
            name: name.into(),
            prefix: prefix.map(str::to_owned),
            secret_id: format!("sftp-forward/test/{name}"),
            ..PartnerSpec::default()
        }
    }

    #[test]
    fn a_key_goes_to_the_partner_whose_prefix_it_starts_with() {
        let r = Routing::new(vec![
            spec("acme", Some("acme/")),
            spec("bank", Some("bank/")),
        ])
        .unwrap();
        assert_eq!(r.partner_for("acme/a.csv"), Some(0));
        assert_eq!(r.partner_for("bank/x/y.csv"), Some(1));
        assert_eq!(r.partner_for("other/a.csv"), None);
        assert_eq!(r.partner_for("acme"), None);
        // The prefix is stripped by default: the partner sees its files from its own root.
        let acme = &r.partners()[0];
        assert_eq!(
            acme.route.map("acme/in/a.csv").unwrap().as_str(),
            "in/a.csv"
        );
    }

    #[test]
    fn a_single_partner_without_prefix_takes_every_key() {
        let r = Routing::single("s", None, None, None).unwrap();
        assert_eq!(r.partner_for("any/key"), Some(0));
        assert_eq!(r.partners()[0].name(), DEFAULT_PARTNER);
        assert_eq!(
            r.partners()[0].route.map("any/key").unwrap().as_str(),
            "any/key"
        );
        let stripped =
            Routing::single("s", Some("{basename}"), Some("in/"), Some("fail-if-exists")).unwrap();
        assert_eq!(stripped.partners()[0].overwrite, Overwrite::FailIfExists);
    }

    #[test]
    fn overlapping_or_missing_prefixes_are_refused_naming_the_partners() {
        let e = Routing::new(vec![
            spec("acme", Some("acme/")),
            spec("acme-eu", Some("acme/eu/")),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"acme\"") && e.contains("\"acme-eu\"") && e.contains("overlap"),
            "{e}"
        );
        let e = Routing::new(vec![spec("a", Some("x/")), spec("b", Some("x/"))]).unwrap_err();
        assert!(e.problem.contains("overlap"), "{e}");
        let e = Routing::new(vec![spec("acme", Some("acme/")), spec("all", None)]).unwrap_err();
        assert_eq!(e.partner.as_deref(), Some("all"));
        let e = Routing::new(vec![spec("acme", Some("a/")), spec("acme", Some("b/"))]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = Routing::new(vec![spec("Acme!", Some("a/"))]).unwrap_err();
        assert!(e.to_string().contains("a-z"), "{e}");
        assert!(Routing::new(vec![]).is_err());
        let e = Routing::new(vec![spec("acme", Some("/acme"))]).unwrap_err();
        assert!(e.to_string().contains("prefix"), "{e}");
    }

    #[test]
    fn bad_templates_and_policies_name_the_partner() {
        let mut s = spec("acme", Some("acme/"));
        s.remote_path_template = Some("{nope}".into());
        let e = Routing::new(vec![s]).unwrap_err().to_string();
        assert!(
            e.starts_with("partner \"acme\": remote_path_template"),
            "{e}"
        );
        let mut s = spec("acme", Some("acme/"));
        s.overwrite = Some("sometimes".into());
        let e = Routing::new(vec![s]).unwrap_err().to_string();
        assert!(e.contains("overwrite"), "{e}");
    }

    #[test]
    fn the_environment_json_round_trips_and_refuses_unknown_fields() {
        let mut a = spec("acme", Some("acme/"));
        a.remote_path_template = Some("in/{basename}".into());
        a.strip_prefix = Some(String::new());
        let r = Routing::new(vec![a.clone(), spec("bank", Some("bank/"))]).unwrap();
        let json = r.to_json();
        let back = Routing::from_json(&json).unwrap();
        assert_eq!(back.partners()[0].spec, a);
        assert_eq!(back.names(), "acme, bank");
        let e = Routing::from_json(r#"[{"name":"a","secret_id":"s","prefixx":"a/"}]"#).unwrap_err();
        assert!(e.to_string().contains("prefixx"), "{e}");
    }
}
