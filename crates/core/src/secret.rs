//! The partner secret: read from Secrets Manager, cached across warm invocations for a TTL, and
//! re-read once when the partner refuses our login (so a rotated password works without a redeploy).

use std::future::Future;

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What can go wrong fetching the secret. Never carries the secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No such secret, or it has no string value.
    #[error("secret {id:?} {problem}")]
    Unusable { id: String, problem: String },
    /// The Secrets Manager call failed.
    #[error("reading secret {id:?} failed: {message}")]
    Failed {
        id: String,
        message: String,
        transient: bool,
    },
}

impl SecretError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SecretError::Failed {
                transient: true,
                ..
            }
        )
    }
}

/// Where secret text comes from.
pub trait SecretSource: Send + Sync {
    /// The current `SecretString` of `id` (a name or an ARN).
    fn fetch(&self, id: &str) -> impl Future<Output = Result<String, SecretError>> + Send;
}

/// AWS Secrets Manager.
#[derive(Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// Wrap a client built once per process.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManager { client }
    }
}

impl SecretSource for SecretsManager {
    async fn fetch(&self, id: &str) -> Result<String, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|err| {
                let code = err
                    .as_service_error()
                    .and_then(|e| e.code())
                    .map(str::to_owned);
                match code.as_deref() {
                    Some("ResourceNotFoundException") => SecretError::Unusable {
                        id: id.to_owned(),
                        problem: format!(
                            "does not exist: check the partner's secret_id ({} or {})",
                            crate::env::SECRET_ID,
                            crate::env::PARTNERS
                        ),
                    },
                    _ => SecretError::Failed {
                        id: id.to_owned(),
                        transient: !matches!(
                            code.as_deref(),
                            Some(
                                "AccessDeniedException"
                                    | "DecryptionFailure"
                                    | "InvalidParameterException"
                            )
                        ) || matches!(
                            err,
                            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)
                        ),
                        message: DisplayErrorContext(&err).to_string(),
                    },
                }
            })?;
        out.secret_string().map(str::to_owned).ok_or_else(|| SecretError::Unusable {
            id: id.to_owned(),
            problem: "has no SecretString (binary secrets are not supported): store the partner JSON as text".into(),
        })
    }
}
