//! Exit codes, one per failure class (listed in `--help`, see `args::EXIT_CODES`).

use forward::ErrorClass;
use sftp_forward_core::check::{Problem, ProblemKind};
use sftp_forward_core::secret::SecretError;
use sftp_forward_core::source::StoreError;

/// How the process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    Unexpected = 1,
    Config = 3,
    Transient = 4,
    Permanent = 5,
    UntrustedHostKey = 6,
    LoginRejected = 7,
    NotWritable = 8,
    EgressMismatch = 9,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit code for a failure of this class.
    pub fn of_class(class: ErrorClass) -> Exit {
        match class {
            ErrorClass::Transient => Exit::Transient,
            ErrorClass::Permanent => Exit::Permanent,
        }
    }

    /// The code for an error, from the first typed error in its chain.
    pub fn of_error(err: &anyhow::Error) -> Exit {
        if let Some(Failed(exit)) = err.downcast_ref::<Failed>() {
            return *exit;
        }
        for cause in err.chain() {
            if let Some(e) = cause.downcast_ref::<forward::Error>() {
                return Exit::of_forward(e);
            }
            if cause.is::<forward::RouteError>() {
                return Exit::Permanent;
            }
            if cause.is::<forward::ConfigError>() {
                return Exit::Config;
            }
            if let Some(e) = cause.downcast_ref::<SecretError>() {
                return if e.is_transient() {
                    Exit::Transient
                } else {
                    Exit::Config
                };
            }
            if let Some(e) = cause.downcast_ref::<StoreError>() {
                return if e.is_transient() {
                    Exit::Transient
                } else {
                    Exit::Permanent
                };
            }
        }
        Exit::Unexpected
    }

    /// The code for a problem the partner or egress check found.
    pub fn of_problem(p: &Problem) -> Exit {
        match p.kind {
            _ if p.transient => Exit::Transient,
            ProblemKind::EgressMismatch => Exit::EgressMismatch,
            ProblemKind::UntrustedHostKey => Exit::UntrustedHostKey,
            ProblemKind::LoginRejected => Exit::LoginRejected,
            ProblemKind::NotWritable => Exit::NotWritable,
            ProblemKind::EgressUnknown
            | ProblemKind::PartnerUnreachable
            | ProblemKind::LoginFailed => Exit::Permanent,
        }
    }

    /// The code for a publisher error.
    pub fn of_forward(e: &forward::Error) -> Exit {
        match e {
            forward::Error::Config(_) => Exit::Config,
            forward::Error::UntrustedHostKey { .. } => Exit::UntrustedHostKey,
            forward::Error::AuthRejected { .. } | forward::Error::AuthPrompt { .. } => {
                Exit::LoginRejected
            }
            _ => Exit::of_class(e.class()),
        }
    }
}

/// The exit code of an error that has no typed cause to classify (an AWS call made by the CLI
/// itself), attached with `.context(Failed(..))`.
#[derive(Debug)]
pub struct Failed(pub Exit);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Exit::Transient => f.write_str("transient failure (retrying later may work)"),
            Exit::Permanent => f.write_str("permanent failure"),
            Exit::Config => f.write_str("configuration error"),
            other => write!(f, "exit {}", other.code()),
        }
    }
}

impl std::error::Error for Failed {}

/// An AWS SDK error as an `anyhow` error with its exit code: refusals that will not change by
/// themselves (no such bucket or queue, access denied, bad input) are permanent, the rest transient.
pub fn aws<E, R>(
    err: aws_sdk_s3::error::SdkError<E, R>,
    doing: impl std::fmt::Display,
) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let permanent = err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| {
            matches!(
                code,
                "NoSuchBucket"
                    | "AccessDenied"
                    | "AccessDeniedException"
                    | "InvalidBucketName"
                    | "InvalidArgument"
                    | "AWS.SimpleQueueService.NonExistentQueue"
                    | "QueueDoesNotExist"
                    | "InvalidAddress"
                    | "InvalidParameterValue"
            )
        });
    let exit = if permanent {
        Exit::Permanent
    } else {
        Exit::Transient
    };
    anyhow::anyhow!("{doing}: {}", aws_sdk_s3::error::DisplayErrorContext(&err))
        .context(Failed(exit))
}
