//! A "strict AWS" in front of moto: an HTTP proxy on 127.0.0.1 that forwards every request to
//! [`crate::moto()`] and refuses or rewrites answers the way real AWS behaves right after a change
//! (eventual consistency, asynchronous states), with short [`Timings`] so that tests stay fast.
//!
//! Each behaviour replays something AWS documents (moto does none of it):
//!
//! - [`Behaviour::RoleNotAssumable`]: a new IAM role is not assumable by Lambda at once (IAM User Guide, "Changes that I make are not always immediately visible"; Lambda `CreateFunction` `InvalidParameterValueException`).
//! - [`Behaviour::QueuePolicyNotPropagated`]: S3 cannot validate a queue whose policy just changed (S3 User Guide, "Unable to validate the following destination configurations", `InvalidArgument`).
//! - [`Behaviour::Ec2NotVisible`]: a new VPC, subnet or Elastic IP is unknown to dependent calls for a moment (EC2 API Reference, "Eventual consistency in the Amazon EC2 API", `Invalid*ID.NotFound`).
//! - [`Behaviour::NatPending`]: a new NAT gateway is `pending` before `available` (VPC User Guide, "NAT gateway basics", `DescribeNatGateways` state).
//! - [`Behaviour::NatDeleting`]: a deleted NAT gateway is `deleting` before `deleted` (same pages).
//! - [`Behaviour::NatDependency`]: meanwhile its subnet, its Elastic IP and the VPC's internet gateway are still in use (VPC User Guide, "Delete a NAT gateway"; `DependencyViolation` "has some mapped public address(es)", `InvalidIPAddress.InUse`).
//! - [`Behaviour::FunctionPending`]: a new function is `Pending` (`StateReasonCode` `Creating`) before `Active` (Lambda Developer Guide, "Lambda function states").
//! - [`Behaviour::FunctionUpdateInProgress`]: after an update `LastUpdateStatus` is `InProgress` before `Successful` (same page).
//! - [`Behaviour::FunctionConflict`]: an update while `Pending` or `InProgress` gets 409 `ResourceConflictException` (Lambda API Reference, `UpdateFunctionCode`/`UpdateFunctionConfiguration` errors).
//! - [`Behaviour::EniHeld`]: a function in a VPC holds Hyperplane ENIs in its subnets and security groups until well after it is deleted, and they stay for good if its role is deleted first (Lambda Developer Guide, "Giving Lambda functions access to resources in an Amazon VPC", ENI lifecycle).
//! - [`Behaviour::FunctionFailed`]: a function can end `State=Failed` (e.g. `EniLimitExceeded`, Lambda Developer Guide, "Lambda function states"); an update of its configuration starts it over. Set by the test with [`StrictAws::fail_function`].
//! - [`Behaviour::SchedulerRoleNotAssumable`]: EventBridge Scheduler checks a schedule's role when it is given, and a new role is not assumable at once (same IAM page; terraform-provider-aws retries `CreateSchedule` on this `ValidationException`, "...must allow AWS EventBridge Scheduler to assume the role").
//! - [`Behaviour::SubscriptionPending`]: an email subscription is pending until its confirmation link is clicked, and SNS lists it as `PendingConfirmation` instead of an ARN (SNS API Reference, `ListSubscriptionsByTopic`, `Subscribe`); nobody clicks here.
//! - [`Behaviour::ForeignBucket`]: bucket names are global, a name another account owns is taken (S3 User Guide, "Bucket naming rules"; `HeadBucket` 403, `CreateBucket` `BucketAlreadyExists`).
//!
//! Each behaviour is deterministic: the first qualifying call after its trigger is always refused
//! (or its answer rewritten), whenever it comes, and so is every further one until the window of
//! [`Timings`] has passed since the trigger. Every injection is recorded ([`StrictAws::injections`],
//! [`StrictAws::count`]) and logged to stderr as `strict-aws: ...`; an injection means a client
//! met the behaviour (the create and update answers that already show `pending`, `Pending` or
//! `InProgress`, as AWS's do, are not recorded). So a client must poll: even a `GetFunction` long
//! after the create says `Pending` once.
//!
//! Rules are scoped so that tests running in parallel against one proxy do not trip over each
//! other: the queue-policy rule only refuses configurations that name that queue; a deleting NAT
//! gateway only blocks `DetachInternetGateway` of its own VPC and `DisassociateAddress` of its own
//! association (moto reports both). Lambda ENIs are real ones in moto, one per subnet
//! (`AWS Lambda VPC ENI-<function>-<n>`), created by the proxy after a successful create (or an
//! update with a new `VpcConfig`); after `DeleteFunction` and `eni_release` the proxy deletes them
//! in moto, unless the function's role was deleted before: then they stay (`available`, still
//! blocking their subnet and group) until a client deletes them.
//!
//! Requests are told apart by the SigV4 credential scope (service) and the protocol's action:
//! `Action=` of query protocols (EC2, IAM), `X-Amz-Target` of JSON ones (SQS), the REST paths of
//! Lambda and path-style S3. The proxy runs on std threads (one per client connection, HTTP/1.1
//! keep-alive) which end with the process.

mod behaviours;
mod cbor;
pub(crate) mod http;
mod xml;

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Duration;

use behaviours::{Eni, EniJob, Nat, State};
use http::{Request, Response};
use xml::first_text;

use crate::moto::{ACCESS_KEY_ID, REGION};

/// How long each documented delay lasts after its trigger.
#[derive(Clone, Debug)]
pub struct Timings {
    /// `CreateRole` → Lambda can assume it.
    pub role_propagation: Duration,
    /// SQS `SetQueueAttributes` with a `Policy` → S3 can validate the queue.
    pub queue_policy: Duration,
    /// `CreateVpc`/`CreateSubnet`/`AllocateAddress` → other EC2 calls see the id.
    pub ec2_visibility: Duration,
    /// `CreateNatGateway` → `available`.
    pub nat_pending: Duration,
    /// `DeleteNatGateway` → `deleted`, its subnet and address free.
    pub nat_deleting: Duration,
    /// `CreateFunction` → `Active`.
    pub function_pending: Duration,
    /// `UpdateFunctionCode`/`UpdateFunctionConfiguration` → `LastUpdateStatus` `Successful`.
    pub function_updating: Duration,
    /// `DeleteFunction` (or a new `VpcConfig`) → Lambda releases the function's ENIs.
    pub eni_release: Duration,
}

impl Timings {
    /// No windows: a delay triggered by a call (a new role, a new queue policy, ...) refuses
    /// only the first call after it, once, which the provisioner retries.
    pub fn none() -> Timings {
        let none = Duration::ZERO;
        Timings {
            role_propagation: none,
            queue_policy: none,
            ec2_visibility: none,
            nat_pending: none,
            nat_deleting: none,
            function_pending: none,
            function_updating: none,
            eni_release: none,
        }
    }
}

impl Default for Timings {
    /// Seconds instead of AWS's minutes: long enough that a client that does not wait fails,
    /// short enough for tests.
    fn default() -> Self {
        let s = Duration::from_secs;
        Timings {
            role_propagation: s(3),
            queue_policy: s(2),
            ec2_visibility: s(1),
            nat_pending: s(3),
            nat_deleting: s(3),
            function_pending: s(2),
            function_updating: s(2),
            eni_release: s(4),
        }
    }
}

/// Prints what the proxy does (each injection, each release of an ENI) to stderr when
/// `SFTP_FORWARD_STRICT_AWS_TRACE` is set; tests read [`StrictAws::injections`] instead.
fn trace(what: std::fmt::Arguments<'_>) {
    if std::env::var_os("SFTP_FORWARD_STRICT_AWS_TRACE").is_some() {
        eprintln!("strict-aws: {what}");
    }
}

/// What the proxy did to a call (see the module doc for each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `CreateFunction`/`UpdateFunctionConfiguration` with a new role: 400 `InvalidParameterValueException`.
    RoleNotAssumable,
    /// `PutBucketNotificationConfiguration` to a queue whose policy just changed: 400 `InvalidArgument`.
    QueuePolicyNotPropagated,
    /// A non-`Describe` EC2 call naming a new VPC, subnet or allocation: 400 `Invalid*ID.NotFound`.
    Ec2NotVisible,
    /// `DescribeNatGateways` shows the new NAT gateway `pending`.
    NatPending,
    /// `DescribeNatGateways` shows the deleted NAT gateway `deleting`.
    NatDeleting,
    /// Detaching the gateway, deleting the subnet, freeing the address of a deleting NAT gateway:
    /// 400 `DependencyViolation` or `InvalidIPAddress.InUse`.
    NatDependency,
    /// `GetFunction`/`GetFunctionConfiguration` show the new function `Pending`.
    FunctionPending,
    /// `GetFunction`/`GetFunctionConfiguration` show `LastUpdateStatus` `InProgress` after an update.
    FunctionUpdateInProgress,
    /// An update while `Pending` or `InProgress`: 409 `ResourceConflictException`.
    FunctionConflict,
    /// A Lambda ENI shown `in-use`, or refusing the deletion of itself (`InvalidNetworkInterface.InUse`),
    /// its subnet or its security group (`DependencyViolation`).
    EniHeld,
    /// Any call on a bucket name [`StrictAws::claim_bucket`] gave to another account.
    ForeignBucket,
    /// `GetFunction`/`GetFunctionConfiguration` show a function [`StrictAws::fail_function`] named
    /// `State` `Failed`, until its configuration is updated.
    FunctionFailed,
    /// `CreateSchedule`/`UpdateSchedule` with a new role: 400 `ValidationException`; the subject is
    /// `<role> (<schedule>)`.
    SchedulerRoleNotAssumable,
    /// `ListSubscriptionsByTopic`/`ListSubscriptions` show an email subscription's ARN as
    /// `PendingConfirmation`; the subject is the address.
    SubscriptionPending,
}

/// One refusal or rewrite.
#[derive(Clone, Debug)]
pub struct Injection {
    /// What was done.
    pub behaviour: Behaviour,
    /// The API action it concerned, e.g. `CreateFunction`.
    pub action: String,
    /// The id or name it concerned: role name, bucket, `vpc-…`, `subnet-…`, `eipalloc-…`,
    /// `nat-…`, function name, `sg-…`, `eni-…`.
    pub subject: String,
}

/// A running strict-AWS proxy.
pub struct StrictAws {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// Its port.
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    /// moto's `host:port`.
    upstream: String,
    timings: Timings,
    state: Mutex<State>,
    /// Buckets whose notification configuration last put had an `EventBridgeConfiguration`:
    /// moto 5.2 stores and honours it but leaves it out of `GetBucketNotificationConfiguration`,
    /// which AWS returns it in; the proxy puts it back.
    eventbridge_buckets: Mutex<std::collections::HashSet<String>>,
}

/// A proxy of this test binary in front of [`crate::moto()`] with [`Timings::none`]: moto with
/// the protocol translation the SDK needs (CloudWatch's CBOR, see `cbor`) and the strict
/// behaviours at their shortest. For running `deploy/provision` on moto where they are not what
/// is under test.
pub fn moto_translated() -> &'static StrictAws {
    static TRANSLATED: OnceLock<StrictAws> = OnceLock::new();
    TRANSLATED.get_or_init(|| {
        let upstream = &crate::moto().endpoint;
        StrictAws::start(upstream, Timings::none()).unwrap_or_else(|e| {
            panic!("testkit: cannot start the AWS proxy in front of {upstream}: {e}")
        })
    })
}

/// The strict-AWS proxy of this test binary, started on first use in front of [`crate::moto()`]
/// with the default [`Timings`].
pub fn strict_aws() -> &'static StrictAws {
    static STRICT: OnceLock<StrictAws> = OnceLock::new();
    STRICT.get_or_init(|| {
        let upstream = &crate::moto().endpoint;
        StrictAws::start(upstream, Timings::default()).unwrap_or_else(|e| {
            panic!("testkit: cannot start the strict-AWS proxy in front of {upstream}: {e}")
        })
    })
}

impl StrictAws {
    /// Starts a proxy on 127.0.0.1 (a port of its own) in front of `upstream_endpoint`
    /// (`http://HOST:PORT`, e.g. [`crate::Moto::endpoint`]).
    pub fn start(upstream_endpoint: &str, timings: Timings) -> io::Result<StrictAws> {
        let upstream = upstream_endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::new(timings.clone())),
            timings,
            eventbridge_buckets: Mutex::default(),
        });
        let for_thread = shared.clone();
        thread::Builder::new()
            .name("strict-aws-accept".into())
            .spawn(move || {
                http::serve_forever(listener, "strict-aws", move |req, w, close| {
                    let resp = for_thread.handle(req);
                    http::write_response(w, &resp, req.method == "HEAD", close)
                })
            })?;
        Ok(StrictAws {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            shared,
        })
    }

    /// The standard AWS SDK config pointed at this proxy (endpoint, region, static keys), like
    /// [`crate::Moto::sdk_config`].
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::moto::sdk_config_for(&self.endpoint, "testkit-strict-aws").await
    }

    /// Environment for a subprocess that should talk to this proxy with the standard AWS SDK
    /// settings, like [`crate::Moto::env`].
    pub fn env(&self) -> Vec<(&'static str, String)> {
        crate::moto::env_for(&self.endpoint)
    }

    /// The delays this proxy replays.
    pub fn timings(&self) -> &Timings {
        &self.shared.timings
    }

    /// Marks bucket name `name` as owned by another account: from now on `HeadBucket` gets 403,
    /// `CreateBucket` 409 `BucketAlreadyExists` and every other call on it 403 `AccessDenied`.
    pub fn claim_bucket(&self, name: &str) {
        self.shared.lock().claimed.insert(name.to_owned());
    }

    /// Makes the function `name` look `Failed` (as when Lambda could not create its network
    /// interfaces) until its configuration is updated.
    pub fn fail_function(&self, name: &str) {
        self.shared.lock().failed.insert(name.to_owned());
    }

    /// Everything injected so far, oldest first.
    pub fn injections(&self) -> Vec<Injection> {
        self.shared.lock().injections.clone()
    }

    /// How many injections of `behaviour` concerned a subject containing `subject_contains`
    /// (tests running in parallel filter by their own names and ids).
    pub fn count(&self, behaviour: Behaviour, subject_contains: &str) -> usize {
        let state = self.shared.lock();
        state
            .injections
            .iter()
            .filter(|i| i.behaviour == behaviour && i.subject.contains(subject_contains))
            .count()
    }
}

/// The SigV4 credential scope of a request, reused for the proxy's own calls to moto (moto takes
/// the account from the key id and the region from the scope).
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    key_id: String,
    date: String,
    region: String,
    amz_date: String,
}

impl Default for Scope {
    fn default() -> Self {
        Scope {
            key_id: ACCESS_KEY_ID.into(),
            date: "20260101".into(),
            region: REGION.into(),
            amz_date: "20260101T000000Z".into(),
        }
    }
}

/// A request as the behaviours see it.
pub(crate) struct Call<'a> {
    req: &'a Request,
    /// From the credential scope: `ec2`, `iam`, `lambda`, `s3`, `sqs`, ... (empty if unsigned).
    service: String,
    /// `CreateVpc`, `CreateFunction`, `HeadBucket`, ...
    action: String,
    /// Query-string and form parameters, decoded.
    params: Vec<(String, String)>,
    /// A JSON body (Lambda, SQS and other JSON protocols).
    json: Option<serde_json::Value>,
    /// S3: the bucket of a path-style request.
    bucket: Option<String>,
    /// Lambda: the function name in the path.
    function: Option<String>,
    scope: Scope,
    head: bool,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json_str(&self, key: &str) -> Option<&str> {
        self.json.as_ref()?.get(key)?.as_str()
    }
}

fn classify(req: &Request) -> Call<'_> {
    let query = http::parse_form(req.query());
    let credential = req
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or("").to_owned())
        .or_else(|| {
            let found = query.iter().find(|(k, _)| k == "X-Amz-Credential");
            found.map(|(_, v)| v.clone())
        })
        .unwrap_or_default();
    let parts: Vec<&str> = credential.split('/').collect();
    let (scope, service) = match parts.as_slice() {
        [key_id, date, region, service, ..] => {
            let amz_date = req.header("x-amz-date").unwrap_or("").to_owned();
            let scope = Scope {
                key_id: (*key_id).into(),
                date: (*date).into(),
                region: (*region).into(),
                amz_date: if amz_date.is_empty() {
                    format!("{date}T000000Z")
                } else {
                    amz_date
                },
            };
            (scope, (*service).to_owned())
        }
        _ => (Scope::default(), String::new()),
    };
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut params = query;
    if content_type.starts_with("application/x-www-form-urlencoded") && service != "s3" {
        params.extend(http::parse_form(&String::from_utf8_lossy(&req.body)));
    }
    let target = req.header("x-amz-target");
    let json = if service == "lambda" || service == "scheduler" || target.is_some() {
        serde_json::from_slice(&req.body).ok()
    } else {
        None
    };
    let mut call = Call {
        req,
        service,
        action: String::new(),
        params,
        json,
        bucket: None,
        function: None,
        scope,
        head: req.method == "HEAD",
    };
    call.action = if let Some(action) = call.param("Action") {
        action.to_owned()
    } else if let Some(target) = target {
        target.rsplit('.').next().unwrap_or(target).to_owned()
    } else if call.service == "lambda" {
        let (action, function) = lambda_action(&req.method, req.path());
        call.function = function;
        action
    } else if call.service == "s3" {
        let (action, bucket) = s3_action(req);
        call.bucket = bucket;
        action
    } else {
        format!("{} {}", req.method, req.path())
    };
    call
}

/// Lambda's REST paths under `/2015-03-31/functions`: the action and the function name.
fn lambda_action(method: &str, path: &str) -> (String, Option<String>) {
    let Some(rest) = path.strip_prefix("/2015-03-31/functions") else {
        return (format!("{method} {path}"), None);
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let name = segments
        .first()
        .map(|s| function_name(&http::percent_decode(s, false)));
    let action = match (method, segments.as_slice()) {
        ("POST", []) => "CreateFunction",
        ("GET", []) => "ListFunctions",
        ("GET", [_]) => "GetFunction",
        ("DELETE", [_]) => "DeleteFunction",
        ("GET", [_, "configuration"]) => "GetFunctionConfiguration",
        ("PUT", [_, "configuration"]) => "UpdateFunctionConfiguration",
        ("PUT", [_, "code"]) => "UpdateFunctionCode",
        _ => return (format!("{method} {path}"), name),
    };
    (action.to_owned(), name)
}

/// The function name in a name, a partial ARN or an ARN, with or without a qualifier.
fn function_name(id: &str) -> String {
    let parts: Vec<&str> = id.split(':').collect();
    match parts.iter().position(|p| *p == "function") {
        Some(i) if i + 1 < parts.len() => parts[i + 1].to_owned(),
        _ => parts[0].to_owned(),
    }
}

/// A path-style S3 request's action and bucket.
fn s3_action(req: &Request) -> (String, Option<String>) {
    let mut segments = req.path().trim_start_matches('/').splitn(2, '/');
    let bucket = segments
        .next()
        .filter(|b| !b.is_empty())
        .map(|b| http::percent_decode(b, false));
    let has_key = segments.next().is_some_and(|k| !k.is_empty());
    let query: Vec<String> = http::parse_form(req.query())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let sub = |name: &str| query.iter().any(|k| k == name);
    let action = match (req.method.as_str(), bucket.is_some(), has_key) {
        ("GET", false, _) => "ListBuckets",
        ("HEAD", true, false) => "HeadBucket",
        ("PUT", true, false) if sub("notification") => "PutBucketNotificationConfiguration",
        ("GET", true, false) if sub("notification") => "GetBucketNotificationConfiguration",
        ("PUT", true, false) if query.is_empty() => "CreateBucket",
        ("DELETE", true, false) if query.is_empty() => "DeleteBucket",
        ("GET", true, false) if sub("list-type") => "ListObjectsV2",
        ("GET", true, false) if query.is_empty() => "ListObjects",
        ("POST", true, false) if sub("delete") => "DeleteObjects",
        ("HEAD", true, true) => "HeadObject",
        ("GET", true, true) => "GetObject",
        ("PUT", true, true) if req.header("x-amz-copy-source").is_some() => "CopyObject",
        ("PUT", true, true) => "PutObject",
        ("DELETE", true, true) => "DeleteObject",
        _ => {
            let sub = query.first().map(String::as_str).unwrap_or("");
            return (format!("S3 {} ?{sub}", req.method), bucket);
        }
    };
    (action.to_owned(), bucket)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take every later request down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn handle(&self, req: &Request) -> Response {
        let call = classify(req);
        self.release_due_enis();
        if let Some(refusal) = self.lock().before(&call) {
            return refusal;
        }
        if call.service == "ec2" && call.action == "DeleteNatGateway" {
            self.learn_nat(&call);
        }
        // CloudWatch's CBOR protocol, which moto does not serve, goes to it as JSON (see `cbor`).
        let cbor = cbor::operation(req);
        let translated = match cbor.map(|op| cbor::to_json_request(req, op)) {
            Some(Ok(json)) => Some(json),
            Some(Err(e)) => return http::bad_gateway(&e),
            None => None,
        };
        let sent = translated.as_ref().unwrap_or(req);
        let mut resp = match http::forward(&self.upstream, sent) {
            Ok(resp) if cbor.is_some() => cbor::to_cbor_response(resp),
            Ok(resp) => resp,
            Err(e) => {
                eprintln!(
                    "strict-aws: forwarding {} ({}) to {}: {e}",
                    call.action, call.service, self.upstream
                );
                return http::bad_gateway(&e.to_string());
            }
        };
        self.echo_eventbridge(&call, &mut resp);
        let job = self.lock().after(&call, &mut resp);
        if let Some(job) = job {
            let enis = self.create_enis(&job);
            self.lock().add_enis(enis);
        }
        resp
    }

    /// See [`Shared::eventbridge_buckets`]: remembered on a successful put, given back on get.
    fn echo_eventbridge(&self, call: &Call, resp: &mut Response) {
        let Some(bucket) = call.bucket.clone() else {
            return;
        };
        const TAG: &str = "EventBridgeConfiguration";
        let mut buckets = self
            .eventbridge_buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match call.action.as_str() {
            "PutBucketNotificationConfiguration" if resp.ok() => {
                if String::from_utf8_lossy(&call.req.body).contains(TAG) {
                    buckets.insert(bucket);
                } else {
                    buckets.remove(&bucket);
                }
            }
            "GetBucketNotificationConfiguration" if resp.ok() && buckets.contains(&bucket) => {
                let body = resp.text();
                let end = "</NotificationConfiguration>";
                if !body.contains(TAG) {
                    if let Some(at) = body.rfind(end) {
                        let mut fixed = body[..at].to_owned();
                        fixed.push_str(&format!("<{TAG}></{TAG}>"));
                        fixed.push_str(&body[at..]);
                        resp.body = fixed.into_bytes();
                    }
                }
            }
            _ => {}
        }
    }

    /// A query-protocol EC2 call of the proxy's own to moto, signed in shape only.
    fn ec2(&self, scope: &Scope, form: &str) -> io::Result<Response> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={}",
            scope.key_id, scope.date, scope.region, "0".repeat(64)
        );
        let req = Request {
            method: "POST".into(),
            target: "/".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), self.upstream.clone()),
                (
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded; charset=utf-8".into(),
                ),
                ("X-Amz-Date".into(), scope.amz_date.clone()),
                ("Authorization".into(), auth),
            ],
            body: format!("{form}&Version=2016-11-15").into_bytes(),
        };
        let resp = http::forward(&self.upstream, &req)?;
        if resp.ok() {
            Ok(resp)
        } else {
            Err(io::Error::other(format!(
                "moto answered {}: {}",
                resp.status,
                resp.text()
            )))
        }
    }

    /// Lambda's Hyperplane ENIs: one per subnet, in moto.
    fn create_enis(&self, job: &EniJob) -> Vec<Eni> {
        let mut enis = Vec::new();
        for (n, subnet) in job.subnets.iter().enumerate() {
            let mut form = format!(
                "Action=CreateNetworkInterface&SubnetId={}",
                http::form_encode(subnet)
            );
            for (i, group) in job.groups.iter().enumerate() {
                form.push_str(&format!(
                    "&SecurityGroupId.{}={}",
                    i + 1,
                    http::form_encode(group)
                ));
            }
            let description = format!("AWS Lambda VPC ENI-{}-{}", job.function, n + 1);
            form.push_str(&format!("&Description={}", http::form_encode(&description)));
            match self
                .ec2(&job.scope, &form)
                .map(|r| first_text(&r.text(), "networkInterfaceId"))
            {
                Ok(Some(id)) => enis.push(Eni::new(id, subnet.clone(), job)),
                Ok(None) => eprintln!("strict-aws: moto created an ENI in {subnet} without an id"),
                Err(e) => eprintln!("strict-aws: cannot create {description} in {subnet}: {e}"),
            }
        }
        enis
    }

    /// Lambda releases ENIs whose time has come (checked lazily, on each request).
    fn release_due_enis(&self) {
        let due = self.lock().due_releases();
        for eni in due {
            let form = format!(
                "Action=DeleteNetworkInterface&NetworkInterfaceId={}",
                eni.id
            );
            match self.ec2(&eni.scope, &form) {
                Ok(_) => trace(format_args!(
                    "Lambda released {} of {} ({})",
                    eni.id, eni.function, eni.subnet
                )),
                Err(e) => eprintln!("strict-aws: cannot delete {} in moto: {e}", eni.id),
            }
        }
    }

    /// Before a NAT gateway the proxy did not see created is deleted: its subnet and address.
    fn learn_nat(&self, call: &Call) {
        let Some(id) = call.param("NatGatewayId") else {
            return;
        };
        if self.lock().knows_nat(id) {
            return;
        }
        let form = format!(
            "Action=DescribeNatGateways&NatGatewayId.1={}",
            http::form_encode(id)
        );
        match self.ec2(&call.scope, &form) {
            Ok(resp) => {
                let xml = resp.text();
                let text = |tag| first_text(&xml, tag);
                if let (Some(subnet), Some(alloc)) = (text("subnetId"), text("allocationId")) {
                    let nat = Nat::known(subnet, alloc, text("vpcId"), text("associationId"));
                    self.lock().learn_nat(id.to_owned(), nat);
                }
            }
            Err(e) => eprintln!("strict-aws: cannot describe {id} before its deletion: {e}"),
        }
    }
}
