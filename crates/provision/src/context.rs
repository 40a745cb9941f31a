//! What every step needs: the AWS clients, the mode (plan or apply), the spec, and the report of
//! what was (or would be) created, updated, kept or deleted.

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::config::Spec;
use crate::error::{Error, Result};

/// The AWS clients, built once from the standard AWS config.
#[derive(Clone, Debug)]
pub struct Clients {
    /// EC2: network.
    pub ec2: aws_sdk_ec2::Client,
    /// IAM: the function's role.
    pub iam: aws_sdk_iam::Client,
    /// Lambda: function and event source mapping.
    pub lambda: aws_sdk_lambda::Client,
    /// S3: the inbox bucket.
    pub s3: aws_sdk_s3::Client,
    /// SQS: the queue and dead-letter queue.
    pub sqs: aws_sdk_sqs::Client,
    /// Secrets Manager: the partner secret.
    pub secrets: aws_sdk_secretsmanager::Client,
    /// STS: who the credentials are.
    pub sts: aws_sdk_sts::Client,
    /// CloudWatch Logs: the function's log group.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// CloudWatch: the alarms.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// SNS: the alarms' topic.
    pub sns: aws_sdk_sns::Client,
    /// EventBridge Scheduler: the scheduled self-check.
    pub scheduler: aws_sdk_scheduler::Client,
    /// EventBridge: the rule that catches keys under no partner's prefix.
    pub events: aws_sdk_eventbridge::Client,
    /// The region every client talks to.
    pub region: String,
    /// A custom endpoint (`AWS_ENDPOINT_URL`, an emulator), if any.
    pub endpoint: Option<String>,
}

/// The account and principal the credentials belong to (STS `GetCallerIdentity`).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The 12-digit account id.
    pub account: String,
    /// The caller's ARN.
    pub arn: String,
}

impl Clients {
    /// Clients for `config`. With a custom endpoint (`AWS_ENDPOINT_URL`, e.g. an emulator) S3 is
    /// addressed path-style, since such endpoints rarely resolve `<bucket>.<host>` names.
    pub fn new(config: &SdkConfig) -> Result<Self> {
        let region = config
            .region()
            .ok_or_else(|| {
                Error::invalid(
                    "region",
                    "none configured: set AWS_REGION, a profile region or --region",
                )
            })?
            .to_string();
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Ok(Clients {
            ec2: aws_sdk_ec2::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            lambda: aws_sdk_lambda::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            scheduler: aws_sdk_scheduler::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            region,
            endpoint: config.endpoint_url().map(str::to_owned),
        })
    }

    /// Who these credentials are: the account every resource will be created in.
    pub async fn identity(&self) -> Result<Identity> {
        let out = self.sts.get_caller_identity().send().await;
        let out = out.map_err(crate::error::aws(
            "GetCallerIdentity",
            format!("the AWS credentials in {}", self.region),
        ))?;
        Ok(Identity {
            account: out.account().unwrap_or_default().to_owned(),
            arn: out.arn().unwrap_or_default().to_owned(),
        })
    }

    /// `account 123456789012 (arn:…), region eu-west-1, endpoint …`: printed before any change.
    pub fn whereabouts(&self, who: &Identity) -> String {
        let endpoint = self
            .endpoint
            .as_deref()
            .unwrap_or("AWS (default endpoints)");
        format!(
            "account {} ({}), region {}, endpoint {endpoint}",
            who.account, who.arn, self.region
        )
    }
}

/// Resolves what depends on the account and on earlier runs: the default bucket name (global, so
/// it includes the account and region), and the bucket and secret `apply` recorded on the stack's
/// queue when the operator does not name them again.
pub async fn resolve(clients: &Clients, spec: Spec) -> Result<(Spec, Identity)> {
    let who = clients.identity().await?;
    let mut spec = spec.for_account(&who.account, &clients.region)?;
    let (bucket, secret) = crate::inbox::recorded_names(clients, &spec).await?;
    spec.bucket = bucket;
    spec.secret = secret;
    Ok((spec, who))
}

/// How a setting compares with what is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Absent.
    Missing,
    /// Present but different.
    Differs,
    /// As wanted.
    Same,
}

impl State {
    /// `Missing` when absent, else `Same` or `Differs` by `same`.
    pub(crate) fn of(present: bool, same: bool) -> Self {
        match (present, same) {
            (false, _) => State::Missing,
            (true, true) => State::Same,
            (true, false) => State::Differs,
        }
    }
}

/// Plan shows what would change; apply changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read only.
    Plan,
    /// Create and update.
    Apply,
}

/// What happened (or would happen) to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Created (apply) or to be created (plan).
    Create,
    /// Changed in place.
    Update,
    /// Exists as wanted.
    Unchanged,
    /// Deleted (destroy).
    Delete,
    /// Left in place on purpose (destroy): the EIPs, a secret this stack did not create.
    Keep,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub action: Action,
    /// The resource, e.g. `subnet private-one 10.0.0.32/28 in us-east-1a`.
    pub resource: String,
    /// Its id, when known.
    pub id: Option<String>,
}

/// The changes of one run, printed as they happen unless quiet.
#[derive(Debug, Default)]
pub struct Report {
    changes: Mutex<Vec<Change>>,
    notes: Mutex<Vec<String>>,
    quiet: bool,
}

impl Report {
    /// A report that prints each change to stdout as it is recorded.
    pub fn printing() -> Self {
        Report::default()
    }

    /// A report that only records.
    pub fn quiet() -> Self {
        Report {
            quiet: true,
            ..Report::default()
        }
    }

    pub(crate) fn record(
        &self,
        mode: Mode,
        action: Action,
        resource: impl Into<String>,
        id: Option<&str>,
    ) {
        let change = Change {
            action,
            resource: resource.into(),
            id: id.map(str::to_owned),
        };
        if !self.quiet {
            println!("{}", Line(mode, &change));
        }
        self.changes.lock().expect("report lock").push(change);
    }

    /// Prints a note (a warning or a hint) in the report.
    pub(crate) fn note(&self, text: impl fmt::Display) {
        let text = text.to_string();
        if !self.quiet {
            println!("  ! {text}");
        }
        self.notes.lock().expect("report lock").push(text);
    }

    /// Every note (warning or hint) so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().expect("report lock").clone()
    }

    /// Every change so far.
    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().expect("report lock").clone()
    }

    /// How many changes had `action`.
    pub fn count(&self, action: Action) -> usize {
        self.changes
            .lock()
            .expect("report lock")
            .iter()
            .filter(|c| c.action == action)
            .count()
    }

    /// `N created, M updated, K unchanged` (or the plan's wording).
    pub fn summary(&self, mode: Mode) -> String {
        let [c, u, n, d, k] = [
            Action::Create,
            Action::Update,
            Action::Unchanged,
            Action::Delete,
            Action::Keep,
        ]
        .map(|a| self.count(a));
        // An apply may delete (a removed partner) or keep (a queue still holding messages).
        let removed = match (d, k) {
            (0, 0) => String::new(),
            _ => format!(" ({d} deleted, {k} kept)"),
        };
        match mode {
            Mode::Plan => format!("Plan: {c} to create, {u} to update, {n} unchanged{removed}."),
            Mode::Apply if c + u + n == 0 && d + k > 0 => {
                format!("Destroy complete: {d} deleted, {k} kept.")
            }
            Mode::Apply => {
                format!("Apply complete: {c} created, {u} updated, {n} unchanged{removed}.")
            }
        }
    }
}

struct Line<'a>(Mode, &'a Change);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Line(mode, c) = self;
        let verb = match (mode, c.action) {
            (Mode::Plan, Action::Create) => "+ would create",
            (Mode::Plan, Action::Update) => "~ would update",
            (Mode::Plan, Action::Delete) => "- would delete",
            (_, Action::Create) => "+ created",
            (_, Action::Update) => "~ updated",
            (_, Action::Unchanged) => "= unchanged",
            (_, Action::Delete) => "- deleted",
            (_, Action::Keep) => "· kept",
        };
        write!(f, "  {verb:<15} {}", c.resource)?;
        match &c.id {
            Some(id) => write!(f, " ({id})"),
            None => Ok(()),
        }
    }
}

/// Everything a step needs.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The clients.
    pub clients: &'a Clients,
    /// The validated config.
    pub spec: &'a Spec,
    /// Plan or apply.
    pub mode: Mode,
    /// Where changes are recorded.
    pub report: &'a Report,
}

impl Ctx<'_> {
    /// Returns the id of a resource that `found` already, or creates it with `create` (apply) or
    /// records that it would be created and returns a placeholder (plan).
    pub(crate) async fn ensure<F, Fut>(
        &self,
        what: impl Into<String>,
        found: Option<String>,
        create: F,
    ) -> Result<String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        let what = what.into();
        match found {
            Some(id) => {
                self.report
                    .record(self.mode, Action::Unchanged, what, Some(&id));
                Ok(id)
            }
            None if self.mode == Mode::Plan => {
                self.report.record(self.mode, Action::Create, &what, None);
                Ok(placeholder(&what))
            }
            None => {
                let id = create().await?;
                self.report
                    .record(self.mode, Action::Create, what, Some(&id));
                Ok(id)
            }
        }
    }

    /// Brings a setting or sub-resource (a route, an association, a rule set) to what is wanted:
    /// records it as created (`Missing`), updated (`Differs`) or unchanged (`Same`), and runs
    /// `change` for the first two when applying.
    pub(crate) async fn converge<F, Fut>(
        &self,
        what: impl Into<String>,
        state: State,
        change: F,
    ) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let action = match state {
            State::Same => Action::Unchanged,
            State::Missing => Action::Create,
            State::Differs => Action::Update,
        };
        if action != Action::Unchanged && self.mode == Mode::Apply {
            change().await?;
        }
        self.report.record(self.mode, action, what, None);
        Ok(())
    }

    /// Records a deletion or a kept resource (destroy).
    pub(crate) fn record(&self, action: Action, what: impl Into<String>, id: &str) {
        self.report.record(self.mode, action, what, Some(id));
    }

    /// Whether this run may change anything.
    pub(crate) fn applying(&self) -> bool {
        self.mode == Mode::Apply
    }
}

/// Stands in for the id of a resource that `plan` would create.
pub fn placeholder(what: &str) -> String {
    format!("<new {what}>")
}

/// Whether `id` is a [`placeholder`].
pub fn is_placeholder(id: &str) -> bool {
    id.starts_with("<new ")
}

/// Maps a waiter's error: running out of time becomes [`Error::Timeout`], anything else an
/// [`Error::Aws`] of `operation`.
pub(crate) fn waiter_error<O, E>(
    operation: &'static str,
    resource: String,
    state: &'static str,
    waited: Duration,
) -> impl FnOnce(aws_smithy_runtime_api::client::waiters::error::WaiterError<O, E>) -> Error
where
    O: fmt::Debug + Send + Sync + 'static,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    use aws_smithy_runtime_api::client::waiters::error::WaiterError;
    move |err| match err {
        WaiterError::ExceededMaxWait(_) => Error::Timeout {
            next: format!(
                "check {resource} in the AWS console, then run the command again (it resumes)"
            ),
            resource,
            state,
            waited,
        },
        other => crate::error::aws(operation, resource)(other),
    }
}
