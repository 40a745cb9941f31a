//! What every command builds first: the AWS configuration, the partner secret's source and the
//! forwarder's settings. Standard AWS configuration only (no endpoint or region flags).

use std::path::PathBuf;

use anyhow::Context;
use sftp_forward_core::secret::{SecretError, SecretSource, SecretsManager};
use sftp_forward_core::source::S3Store;
use sftp_forward_core::{Forwarder, Settings};

use crate::args::{RouteArgs, SecretArgs};

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
    /// The source and the id to fetch from it (the secret id, or the file's path).
    pub fn from_args(args: &SecretArgs, config: &aws_config::SdkConfig) -> (Secrets, String) {
        match (&args.secret_id, &args.secret_file) {
            (Some(id), _) => (
                Secrets::Manager(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
                    config,
                ))),
                id.clone(),
            ),
            (None, Some(file)) => (Secrets::File, file.display().to_string()),
            // clap's argument group requires one of the two.
            (None, None) => unreachable!("--secret-id or --secret-file is required"),
        }
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

/// The partner JSON text (never printed).
pub async fn partner_text(args: &SecretArgs) -> anyhow::Result<String> {
    let config = aws_config().await;
    let (secrets, id) = Secrets::from_args(args, &config);
    secrets
        .fetch(&id)
        .await
        .context("reading the partner connection")
}

/// The forwarder's settings for this secret and route, as the Lambda would build them from its
/// environment.
pub fn settings(secret_id: &str, route: &RouteArgs) -> anyhow::Result<Settings> {
    let overwrite = match route.overwrite {
        forward::Overwrite::Overwrite => "overwrite",
        forward::Overwrite::FailIfExists => "fail-if-exists",
        forward::Overwrite::SkipIfSameSize => "skip-if-same-size",
    };
    let vars = [
        ("SFTP_FORWARD_SECRET_ID", Some(secret_id)),
        (
            "SFTP_FORWARD_REMOTE_PATH_TEMPLATE",
            Some(route.template.as_str()),
        ),
        ("SFTP_FORWARD_STRIP_PREFIX", route.strip_prefix.as_deref()),
        ("SFTP_FORWARD_OVERWRITE", Some(overwrite)),
    ];
    Settings::from_env(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .and_then(|(_, v)| v.map(str::to_owned))
    })
    .map_err(|e| anyhow::anyhow!("{e}").context(crate::exit::Failed(crate::exit::Exit::Config)))
}

/// A forwarder over S3 (or a wrapper of it) and the partner secret, like the Lambda's.
pub fn forwarder<S: sftp_forward_core::source::ObjectStore>(
    store: S,
    secret: &SecretArgs,
    route: &RouteArgs,
    config: &aws_config::SdkConfig,
) -> anyhow::Result<Forwarder<S, Secrets>> {
    let (secrets, id) = Secrets::from_args(secret, config);
    Ok(Forwarder::new(store, secrets, settings(&id, route)?))
}

/// The S3 client (path-style when `AWS_ENDPOINT_URL` is set, as emulators need).
pub fn s3(config: &aws_config::SdkConfig) -> S3Store {
    S3Store::new(S3Store::client(config))
}
