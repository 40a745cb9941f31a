//! What every command builds first: the AWS configuration, the partner secret's source and the
//! forwarder's settings ([`Target`]), from the flags or from the stack's function ([`stack`]).
//! Standard AWS configuration only (no endpoint or region flags).

use std::path::PathBuf;

use anyhow::Context;
use sftp_forward_core::routing::{PartnerRoute, PartnerSpec, Routing, DEFAULT_PARTNER};
use sftp_forward_core::secret::{SecretError, SecretSource, SecretsManager};
use sftp_forward_core::source::{ObjectStore, S3Store};
use sftp_forward_core::{Forwarder, Settings};

use crate::args::{RouteArgs, SecretArgs, StackArgs};
use crate::exit::{Exit, Failed};
use crate::stack;

/// The AWS configuration from the environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, ...).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The partner secret: Secrets Manager (as the Lambda reads it) or a local file.
#[derive(Clone)]
pub enum Secrets {
    Manager(SecretsManager),
    File,
}

impl Secrets {
    /// Secrets Manager, as the Lambda reads it.
    pub fn manager(config: &aws_config::SdkConfig) -> Secrets {
        Secrets::Manager(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
            config,
        )))
    }
}

impl SecretSource for Secrets {
    async fn fetch(&self, id: &str) -> Result<String, SecretError> {
        match self {
            Secrets::Manager(m) => m.fetch(id).await,
            Secrets::File => tokio::fs::read_to_string(PathBuf::from(id))
                .await
                // The I/O error names the problem (not found, permission), never the content.
                .map_err(|e| SecretError::Unusable {
                    id: id.to_owned(),
                    problem: format!("cannot be read: {e}"),
                }),
        }
    }
}

/// Who a command sends to: the partner's secret (where it is read from, and its id there) and the
/// settings of that one partner alone, as the function would run them.
pub struct Target {
    pub secrets: Secrets,
    /// One partner: with `--partner`, the keys under its prefix only (another key fails,
    /// `NO_PARTNER`); with `--secret-id/--secret-file`, every key. Its `secret_id` is what
    /// `secrets` fetches (a file's path for `--secret-file`).
    pub settings: Settings,
}

impl Target {
    /// The partner (route, overwrite policy, secret id).
    pub fn partner(&self) -> &PartnerRoute {
        &self.settings.routing.partners()[0]
    }

    /// The partner JSON text (never printed).
    pub async fn partner_text(&self) -> anyhow::Result<String> {
        self.secrets
            .fetch(self.partner().secret_id())
            .await
            .context("reading the partner connection")
    }

    /// A forwarder over S3 (or a wrapper of it) to this partner, like the Lambda's.
    pub fn forwarder<S: ObjectStore>(&self, store: S) -> Forwarder<S, Secrets> {
        Forwarder::new(store, self.secrets.clone(), self.settings.clone())
    }
}

/// The target the flags name: `--secret-id`/`--secret-file` with the route flags, or `--partner`
/// of the stack's function with its own route (the route flags given override it).
pub async fn target(
    secret: &SecretArgs,
    stack: &StackArgs,
    route: Option<&RouteArgs>,
    config: &aws_config::SdkConfig,
) -> anyhow::Result<Target> {
    let (secrets, mut spec, settings) =
        match (&secret.partner, &secret.secret_id, &secret.secret_file) {
            (Some(name), _, _) => {
                let settings = stack::settings(stack, config).await?;
                let spec = stack::partner(&settings, name)?.spec.clone();
                (Secrets::manager(config), spec, Some(settings))
            }
            (None, Some(id), _) => (Secrets::manager(config), single(id), None),
            (None, None, Some(file)) => (Secrets::File, single(&file.display().to_string()), None),
            // clap's argument group requires one of the three.
            (None, None, None) => {
                unreachable!("--secret-id, --secret-file or --partner is required")
            }
        };
    if let Some(route) = route {
        if let Some(t) = &route.template {
            spec.remote_path_template = Some(t.clone());
        }
        if let Some(p) = &route.strip_prefix {
            spec.strip_prefix = Some(p.clone());
        }
        if let Some(o) = &route.overwrite {
            spec.overwrite = Some(o.clone());
        }
    }
    let routing = Routing::new(vec![spec]).map_err(|e| {
        anyhow::Error::new(e)
            .context("the route")
            .context(Failed(Exit::Config))
    })?;
    // (A `--partner`'s prefix stays: a key outside it fails as the function would fail it,
    // `NO_PARTNER`, instead of reaching a partner it does not belong to.)
    let settings = match settings {
        // The stack's function's timeouts and limits, for this partner alone.
        Some(s) => Settings { routing, ..s },
        None => Settings::new(routing),
    };
    Ok(Target { secrets, settings })
}

/// The partner of `--secret-id`/`--secret-file`: no prefix, nothing stripped, `{key}`, overwrite.
fn single(secret_id: &str) -> PartnerSpec {
    PartnerSpec {
        name: DEFAULT_PARTNER.into(),
        secret_id: secret_id.into(),
        strip_prefix: Some(String::new()),
        ..PartnerSpec::default()
    }
}

/// The S3 client (path-style when `AWS_ENDPOINT_URL` is set, as emulators need).
pub fn s3(config: &aws_config::SdkConfig) -> S3Store {
    S3Store::new(S3Store::client(config))
}
