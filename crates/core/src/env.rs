//! Every environment variable the function reads, by name: the function ([`crate::Settings`]),
//! the provisioner that sets them, and the tools that start a function locally all use these
//! constants, never the literal names.

/// The partners of a stack with more than one (or one with a key prefix): a JSON array of
/// [`crate::routing::PartnerSpec`]. Excludes [`SECRET_ID`], [`REMOTE_PATH_TEMPLATE`],
/// [`STRIP_PREFIX`] and [`OVERWRITE`], which describe the single partner of a stack without it.
pub const PARTNERS: &str = "SFTP_FORWARD_PARTNERS";
/// The single partner's secret (name or ARN).
pub const SECRET_ID: &str = "SFTP_FORWARD_SECRET_ID";
/// The single partner's remote path template (`{key}` by default).
pub const REMOTE_PATH_TEMPLATE: &str = "SFTP_FORWARD_REMOTE_PATH_TEMPLATE";
/// A prefix removed from the single partner's keys before the template maps them.
pub const STRIP_PREFIX: &str = "SFTP_FORWARD_STRIP_PREFIX";
/// The single partner's overwrite policy: overwrite, fail-if-exists, skip-if-same-size.
pub const OVERWRITE: &str = "SFTP_FORWARD_OVERWRITE";
/// How long a fetched secret is trusted, in seconds.
pub const SECRET_TTL_SECS: &str = "SFTP_FORWARD_SECRET_TTL_SECS";
/// Records are not started with less invocation time left than this, in seconds.
pub const MIN_TIME_LEFT_SECS: &str = "SFTP_FORWARD_MIN_TIME_LEFT_SECS";
/// The time kept before the invocation's deadline to stop a record and answer, in seconds.
pub const DEADLINE_MARGIN_SECS: &str = "SFTP_FORWARD_DEADLINE_MARGIN_SECS";
/// The SSH connect timeout, in seconds.
pub const CONNECT_TIMEOUT_SECS: &str = "SFTP_FORWARD_CONNECT_TIMEOUT_SECS";
/// The timeout of one SFTP request, in seconds.
pub const REQUEST_TIMEOUT_SECS: &str = "SFTP_FORWARD_REQUEST_TIMEOUT_SECS";
/// SFTP channels per large file.
pub const PARALLELISM: &str = "SFTP_FORWARD_PARALLELISM";
/// The public IPs every partner allowlists, comma-separated.
pub const EXPECTED_EGRESS_IPS: &str = "SFTP_FORWARD_EXPECTED_EGRESS_IPS";
/// The IP-echo service the egress self-check asks.
pub const EGRESS_ECHO_URL: &str = "SFTP_FORWARD_EGRESS_ECHO_URL";
/// Where delivery events go: `default`, a bus name or ARN, or `off`.
pub const EVENTS: &str = "SFTP_FORWARD_EVENTS";
/// The queues' `maxReceiveCount`, for "gave up" events.
pub const MAX_RECEIVE_COUNT: &str = "SFTP_FORWARD_MAX_RECEIVE_COUNT";
/// The function's egress paths per AZ, for the self-check's placement.
pub const CHECK_PATHS: &str = "SFTP_FORWARD_CHECK_PATHS";

/// Every name above.
pub const ALL: [&str; 16] = [
    PARTNERS,
    SECRET_ID,
    REMOTE_PATH_TEMPLATE,
    STRIP_PREFIX,
    OVERWRITE,
    SECRET_TTL_SECS,
    MIN_TIME_LEFT_SECS,
    DEADLINE_MARGIN_SECS,
    CONNECT_TIMEOUT_SECS,
    REQUEST_TIMEOUT_SECS,
    PARALLELISM,
    EXPECTED_EGRESS_IPS,
    EGRESS_ECHO_URL,
    EVENTS,
    MAX_RECEIVE_COUNT,
    CHECK_PATHS,
];
