//! One error type for the provisioner. Every variant names the resource and the operator's next
//! step; AWS errors are classified by their error code, never by their message text.

use std::path::PathBuf;
use std::time::Duration;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The provisioner's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, with the resource it concerns and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input (config file field or flag) is invalid; nothing was created.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The config field or flag.
        field: String,
        /// Why it is invalid, and what would be valid.
        reason: String,
    },
    /// A local file could not be read; nothing was created.
    #[error("cannot read the {what} {}: {source}; next: check the path", path.display())]
    File {
        /// What the file is for (`secret file`, `function zip`, `config file`).
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An AWS API call failed.
    #[error("{operation} {resource} failed ({code}); next: {next}")]
    Aws {
        /// The API operation, e.g. `CreateNatGateway`.
        operation: &'static str,
        /// The resource it was for, e.g. `NAT gateway nat-one`.
        resource: String,
        /// The AWS error code, or `no error code` for network and timeout failures.
        code: String,
        /// What the operator should do.
        next: String,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// A resource exists but does not match this stack's configuration.
    #[error("{resource}: {problem}; next: {next}")]
    Conflict {
        /// The resource.
        resource: String,
        /// How it differs.
        problem: String,
        /// What the operator should do.
        next: String,
    },
    /// A resource did not reach a state within the bounded wait.
    #[error("{resource} did not become {state} within {waited:?}; next: {next}")]
    Timeout {
        /// The resource.
        resource: String,
        /// The state waited for.
        state: &'static str,
        /// How long we waited.
        waited: Duration,
        /// What the operator should do.
        next: String,
    },
    /// `destroy` stopped on an error; what it lists is still there and billed.
    #[error("destroy stopped: {cause}; still billed: {}", if billed.is_empty() { "nothing found".to_owned() } else { billed.join(", ") })]
    GaveUp {
        /// Why it stopped.
        cause: Box<Error>,
        /// What still costs money, with its rate.
        billed: Vec<String>,
    },
    /// `destroy` removed what it could but had to keep some resources.
    #[error("destroy incomplete: {}; next: {next}", kept.join(", "))]
    Incomplete {
        /// The resources left behind, with the reason.
        kept: Vec<String>,
        /// What the operator should do.
        next: String,
    },
}

impl Error {
    /// The AWS error code, for [`Error::Aws`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Maps an SDK error of `operation` on `resource` to [`Error::Aws`], with the next step chosen by
/// the error code.
pub(crate) fn aws<E>(
    operation: &'static str,
    resource: impl Into<String>,
) -> impl FnOnce(E) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let resource = resource.into();
    move |err| {
        let code = err.code().map(str::to_owned);
        Error::Aws {
            operation,
            next: next_step(code.as_deref(), operation),
            code: code.unwrap_or_else(|| "no error code".into()),
            resource,
            source: Box::new(err),
        }
    }
}

/// The operator's next step for an AWS error code.
fn next_step(code: Option<&str>, operation: &str) -> String {
    const RESUME: &str = "then run the command again (apply resumes where it stopped)";
    match code {
        None => format!(
            "check the AWS endpoint, region and network access (no response from AWS), {RESUME}"
        ),
        Some(
            "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" | "AuthFailure"
            | "InvalidClientTokenId" | "UnrecognizedClientException" | "SignatureDoesNotMatch"
            | "ExpiredToken" | "ExpiredTokenException" | "InvalidAccessKeyId",
        ) => format!(
            "check the AWS profile/credentials and that they allow {operation}, {RESUME}"
        ),
        Some(
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException"
            | "SlowDown",
        ) => format!("wait a minute, {RESUME}"),
        Some(c) if c.ends_with("LimitExceeded") || c.ends_with("LimitExceededException") => {
            format!("raise the account quota (Service Quotas) or free unused resources, {RESUME}")
        }
        Some("DependencyViolation") => format!(
            "something outside this stack still uses it (see the AWS console), remove that, {RESUME}"
        ),
        Some(_) => format!("fix the cause named by the error code, {RESUME}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_step_is_chosen_by_code() {
        assert!(next_step(Some("UnauthorizedOperation"), "CreateVpc").contains("allow CreateVpc"));
        assert!(next_step(Some("AddressLimitExceeded"), "AllocateAddress").contains("quota"));
        assert!(next_step(None, "CreateVpc").contains("endpoint"));
    }
}
