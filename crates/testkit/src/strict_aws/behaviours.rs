//! The proxy's memory of what the clients did, and the rules that refuse a call ([`State::before`])
//! or rewrite moto's answer ([`State::after`]) the way real AWS would at that moment.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::http::{ec2_error, s3_error, Response};
use super::xml::{child, children, find, first_text, splice, tag_value, texts};
use super::{Behaviour, Call, Injection, Scope, Timings};

/// Lambda's behaviours (functions, roles, their network interfaces), as more `impl State`.
mod lambda;
/// EventBridge Scheduler's role check, as more `impl State`.
mod scheduler;
/// SNS's pending email subscriptions, as more `impl State`.
mod sns;

/// A documented delay that started at `at`: it bites the first qualifying call after the trigger
/// whenever that call comes, and every further one until `window` has passed since `at`.
struct Trigger {
    at: Instant,
    window: Duration,
    bitten: bool,
}

impl Trigger {
    fn new(window: Duration) -> Trigger {
        Trigger {
            at: Instant::now(),
            window,
            bitten: false,
        }
    }

    /// Already over (for state learnt about something the proxy did not see being created).
    fn over() -> Trigger {
        Trigger {
            at: Instant::now(),
            window: Duration::ZERO,
            bitten: true,
        }
    }

    /// Whether this call is affected; counts as the first one if it is.
    fn bites(&mut self) -> bool {
        let bites = !self.bitten || self.at.elapsed() < self.window;
        self.bitten = true;
        bites
    }
}

/// An id EC2 has just handed out and does not show dependent calls yet.
struct Fresh {
    trigger: Trigger,
    /// Error code and noun of its `Invalid*ID.NotFound`.
    code: &'static str,
    noun: &'static str,
}

/// A NAT gateway created or deleted through the proxy.
pub(super) struct Nat {
    pub subnet: String,
    pub allocation: String,
    pub vpc: Option<String>,
    /// Its EIP's association (moto reports it on create and describe).
    pub association: Option<String>,
    pending: Option<Trigger>,
    deleting: Option<Trigger>,
}

impl Nat {
    /// A NAT learnt from a describe: no longer pending.
    pub fn known(
        subnet: String,
        allocation: String,
        vpc: Option<String>,
        association: Option<String>,
    ) -> Nat {
        Nat {
            subnet,
            allocation,
            vpc,
            association,
            pending: None,
            deleting: None,
        }
    }
}

/// A Lambda function created through the proxy (and not deleted since).
struct Func {
    arn: String,
    role: String,
    pending: Trigger,
    updating: Option<Trigger>,
    subnets: Vec<String>,
    groups: Vec<String>,
}

/// ENIs to create for a function's VPC configuration.
pub(super) struct EniJob {
    pub function: String,
    pub subnets: Vec<String>,
    pub groups: Vec<String>,
    pub scope: Scope,
}

/// A Hyperplane ENI the proxy created in moto for a function.
#[derive(Clone)]
pub(super) struct Eni {
    pub id: String,
    pub subnet: String,
    pub groups: Vec<String>,
    pub function: String,
    pub scope: Scope,
    /// The function's role when it let go of the ENI.
    role: String,
    /// When Lambda releases it (set when the function is deleted or leaves the subnet).
    release_at: Option<Instant>,
    /// The role was gone when Lambda wanted to release it: it stays, `available`, until deleted.
    stranded: bool,
}

impl Eni {
    pub fn new(id: String, subnet: String, job: &EniJob) -> Eni {
        Eni {
            id,
            subnet,
            groups: job.groups.clone(),
            function: job.function.clone(),
            scope: job.scope.clone(),
            role: String::new(),
            release_at: None,
            stranded: false,
        }
    }
}

/// Everything the proxy remembers.
pub(super) struct State {
    t: Timings,
    roles: HashMap<String, Trigger>,
    roles_deleted: HashMap<String, Instant>,
    /// Queue name → its policy change.
    queue_policies: HashMap<String, Trigger>,
    fresh: HashMap<String, Fresh>,
    nats: HashMap<String, Nat>,
    functions: HashMap<String, Func>,
    enis: Vec<Eni>,
    pub claimed: HashSet<String>,
    pub failed: HashSet<String>,
    pub injections: Vec<Injection>,
}

const BUCKET_TAKEN: &str = "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.";

impl State {
    pub fn new(t: Timings) -> State {
        State {
            t,
            roles: HashMap::new(),
            roles_deleted: HashMap::new(),
            queue_policies: HashMap::new(),
            fresh: HashMap::new(),
            nats: HashMap::new(),
            functions: HashMap::new(),
            enis: Vec::new(),
            claimed: HashSet::new(),
            failed: HashSet::new(),
            injections: Vec::new(),
        }
    }

    fn inject(&mut self, behaviour: Behaviour, action: &str, subject: &str) {
        super::trace(format_args!("{behaviour:?} on {action} ({subject})"));
        self.injections.push(Injection {
            behaviour,
            action: action.to_owned(),
            subject: subject.to_owned(),
        });
    }

    /// The answer real AWS would give instead of forwarding `c`, if it would refuse it now.
    pub fn before(&mut self, c: &Call) -> Option<Response> {
        match c.service.as_str() {
            "s3" => self.s3_before(c),
            "lambda" => self.lambda_before(c),
            "scheduler" => self.scheduler_before(c),
            "ec2" => self.ec2_before(c),
            _ => None,
        }
    }

    fn s3_before(&mut self, c: &Call) -> Option<Response> {
        let bucket = c.bucket.as_deref()?;
        if self.claimed.contains(bucket) {
            self.inject(Behaviour::ForeignBucket, &c.action, bucket);
            return Some(if c.action == "CreateBucket" {
                s3_error(409, "BucketAlreadyExists", BUCKET_TAKEN, bucket, false)
            } else {
                s3_error(403, "AccessDenied", "Access Denied", bucket, c.head)
            });
        }
        if c.action == "PutBucketNotificationConfiguration" {
            let body = String::from_utf8_lossy(&c.req.body);
            for arn in texts(&body, "Queue") {
                let queue = arn.rsplit(':').next().unwrap_or("");
                if self
                    .queue_policies
                    .get_mut(queue)
                    .is_some_and(Trigger::bites)
                {
                    self.inject(Behaviour::QueuePolicyNotPropagated, &c.action, bucket);
                    let msg = "Unable to validate the following destination configurations";
                    return Some(s3_error(400, "InvalidArgument", msg, bucket, false));
                }
            }
        }
        None
    }

    fn ec2_before(&mut self, c: &Call) -> Option<Response> {
        let action = c.action.as_str();
        if !action.starts_with("Describe") {
            for (key, value) in &c.params {
                if key == "Action" || key == "Version" {
                    continue;
                }
                let Some(fresh) = self.fresh.get_mut(value) else {
                    continue;
                };
                if fresh.trigger.bites() {
                    let (code, noun) = (fresh.code, fresh.noun);
                    self.inject(Behaviour::Ec2NotVisible, action, value);
                    let msg = format!("The {noun} ID '{value}' does not exist");
                    return Some(ec2_error(code, &msg));
                }
            }
        }
        if let Some(refusal) = self.eni_dependency(c) {
            return Some(refusal);
        }
        self.nat_dependency(c)
    }

    /// Deletes that Lambda's ENIs stand in the way of.
    fn eni_dependency(&mut self, c: &Call) -> Option<Response> {
        let action = c.action.as_str();
        let (subject, code, msg) = match action {
            "DeleteNetworkInterface" => {
                let id = c.param("NetworkInterfaceId")?;
                self.enis.iter().find(|e| e.id == id && !e.stranded)?;
                let msg = format!("Interface: [{id}] in use.");
                (id, "InvalidNetworkInterface.InUse", msg)
            }
            "DeleteSubnet" => {
                let id = c.param("SubnetId")?;
                self.enis.iter().find(|e| e.subnet == id)?;
                let msg = format!("The subnet '{id}' has dependencies and cannot be deleted.");
                (id, "DependencyViolation", msg)
            }
            "DeleteSecurityGroup" => {
                let id = c.param("GroupId")?;
                self.enis
                    .iter()
                    .find(|e| e.groups.iter().any(|g| g == id))?;
                (
                    id,
                    "DependencyViolation",
                    format!("resource {id} has a dependent object"),
                )
            }
            _ => return None,
        };
        self.inject(Behaviour::EniHeld, action, subject);
        Some(ec2_error(code, &msg))
    }

    /// Calls a NAT gateway that is still deleting stands in the way of.
    fn nat_dependency(&mut self, c: &Call) -> Option<Response> {
        let action = c.action.as_str();
        let mut refusal = None;
        for nat in self.nats.values_mut() {
            let Some(deleting) = nat.deleting.as_mut() else {
                continue;
            };
            let alloc = nat.allocation.as_str();
            let hit = match action {
                "DetachInternetGateway" => {
                    let vpc = c.param("VpcId").unwrap_or("");
                    let mine = nat.vpc.as_deref().is_none_or(|v| v == vpc);
                    mine.then(|| {
                        let msg = format!("Network {vpc} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway.");
                        (vpc.to_owned(), "DependencyViolation", msg)
                    })
                }
                "DeleteSubnet" => (c.param("SubnetId") == Some(&nat.subnet)).then(|| {
                    let s = &nat.subnet;
                    let msg = format!("The subnet '{s}' has dependencies and cannot be deleted.");
                    (s.clone(), "DependencyViolation", msg)
                }),
                "ReleaseAddress" | "DisassociateAddress" => {
                    let by_alloc = c.param("AllocationId") == Some(alloc);
                    let by_assoc = match (nat.association.as_deref(), c.param("AssociationId")) {
                        (Some(mine), Some(theirs)) => mine == theirs,
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    (by_alloc || (action == "DisassociateAddress" && by_assoc)).then(|| {
                        let msg = format!("The address with allocation id [{alloc}] is in use by a NAT gateway that is being deleted.");
                        (alloc.to_owned(), "InvalidIPAddress.InUse", msg)
                    })
                }
                _ => None,
            };
            if let Some(hit) = hit {
                if deleting.bites() {
                    refusal = Some(hit);
                    break;
                }
            }
        }
        let (subject, code, msg) = refusal?;
        self.inject(Behaviour::NatDependency, action, &subject);
        Some(ec2_error(code, &msg))
    }

    /// Learns from a successful answer and rewrites it; returns ENIs Lambda would create now.
    pub fn after(&mut self, c: &Call, resp: &mut Response) -> Option<EniJob> {
        if !resp.ok() {
            return None;
        }
        match (c.service.as_str(), c.action.as_str()) {
            ("iam", "CreateRole") => {
                let name = c.param("RoleName")?.to_owned();
                self.roles_deleted.remove(&name);
                self.roles
                    .insert(name, Trigger::new(self.t.role_propagation));
            }
            ("iam", "DeleteRole") => {
                let name = c.param("RoleName")?.to_owned();
                self.roles_deleted.insert(name, Instant::now());
            }
            ("sqs", "SetQueueAttributes") => {
                let url = c.json_str("QueueUrl").or_else(|| c.param("QueueUrl"))?;
                let by_json = c
                    .json
                    .as_ref()
                    .is_some_and(|j| j["Attributes"].get("Policy").is_some());
                let by_form = c.params.iter().any(|(k, v)| {
                    k.starts_with("Attribute.") && k.ends_with(".Name") && v == "Policy"
                });
                if by_json || by_form {
                    let queue = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                    self.queue_policies
                        .insert(queue.to_owned(), Trigger::new(self.t.queue_policy));
                }
            }
            ("ec2", _) => self.ec2_after(c, resp),
            ("lambda", _) => return self.lambda_after(c, resp),
            ("sns", _) => self.sns_after(c, resp),
            _ => {}
        }
        None
    }

    fn ec2_after(&mut self, c: &Call, resp: &mut Response) {
        let action = c.action.as_str();
        let fresh = match action {
            "CreateVpc" => Some(("vpcId", "InvalidVpcID.NotFound", "vpc")),
            "CreateSubnet" => Some(("subnetId", "InvalidSubnetID.NotFound", "subnet")),
            "AllocateAddress" => {
                Some(("allocationId", "InvalidAllocationID.NotFound", "allocation"))
            }
            _ => None,
        };
        if let Some((tag, code, noun)) = fresh {
            if let Some(id) = first_text(&resp.text(), tag) {
                let trigger = Trigger::new(self.t.ec2_visibility);
                self.fresh.insert(
                    id,
                    Fresh {
                        trigger,
                        code,
                        noun,
                    },
                );
            }
            return;
        }
        match action {
            "CreateNatGateway" => {
                let xml = resp.text();
                let Some(id) = first_text(&xml, "natGatewayId") else {
                    return;
                };
                let nat = Nat {
                    pending: Some(Trigger::new(self.t.nat_pending)),
                    ..Nat::known(
                        c.param("SubnetId").unwrap_or("").to_owned(),
                        c.param("AllocationId").unwrap_or("").to_owned(),
                        first_text(&xml, "vpcId"),
                        first_text(&xml, "associationId"),
                    )
                };
                self.nats.insert(id.clone(), nat);
                // Real AWS answers the create with the NAT still pending. Not recorded: an
                // injection means a client met the state afterwards (and had to wait it out).
                if let Some(r) = find(&xml, "natGateway").and_then(|n| child(&xml, &n, "state")) {
                    resp.body = splice(&xml, vec![(r.inner, "pending".into())]).into_bytes();
                }
            }
            "DeleteNatGateway" => {
                if let Some(nat) = c.param("NatGatewayId").and_then(|id| self.nats.get_mut(id)) {
                    nat.pending = None;
                    nat.deleting = Some(Trigger::new(self.t.nat_deleting));
                }
            }
            "DescribeNatGateways" => self.rewrite_nats(c, resp),
            "DescribeNetworkInterfaces" => self.rewrite_enis(resp),
            "DeleteNetworkInterface" => {
                let id = c.param("NetworkInterfaceId").unwrap_or("");
                self.enis.retain(|e| e.id != id);
            }
            _ => {}
        }
    }

    /// Whether the proxy knows NAT `id` (else the caller looks it up in moto before deleting).
    pub fn knows_nat(&self, id: &str) -> bool {
        self.nats.contains_key(id)
    }

    pub fn learn_nat(&mut self, id: String, nat: Nat) {
        self.nats.entry(id).or_insert(nat);
    }

    fn rewrite_nats(&mut self, c: &Call, resp: &mut Response) {
        let xml = resp.text();
        let mut edits = Vec::new();
        let mut seen = Vec::new();
        // moto ignores `tag:` filters on NAT gateways (real EC2 honours them): drop what they
        // exclude, so that one stack's describe neither sees nor uses up another's states.
        let wanted = tag_filters(c);
        for item in find(&xml, "natGatewaySet")
            .map(|s| children(&xml, &s))
            .unwrap_or_default()
        {
            if !wanted
                .iter()
                .all(|(k, values)| tag_value(&xml, &item, k).is_some_and(|v| values.contains(&v)))
            {
                edits.push((item.outer.clone(), String::new()));
                continue;
            }
            let (Some(id), Some(state)) = (
                child(&xml, &item, "natGatewayId"),
                child(&xml, &item, "state"),
            ) else {
                continue;
            };
            let id = xml[id.inner].to_owned();
            let Some(nat) = self.nats.get_mut(&id) else {
                continue;
            };
            let new = if nat.deleting.as_mut().is_some_and(Trigger::bites) {
                (Behaviour::NatDeleting, "deleting")
            } else if nat.pending.as_mut().is_some_and(Trigger::bites) {
                (Behaviour::NatPending, "pending")
            } else {
                continue;
            };
            edits.push((state.inner, new.1.to_owned()));
            seen.push((new.0, id));
        }
        for (b, id) in seen {
            self.inject(b, "DescribeNatGateways", &id);
        }
        if !edits.is_empty() {
            resp.body = splice(&xml, edits).into_bytes();
        }
    }

    fn rewrite_enis(&mut self, resp: &mut Response) {
        let xml = resp.text();
        let mut edits = Vec::new();
        let mut seen = Vec::new();
        for item in find(&xml, "networkInterfaceSet")
            .map(|s| children(&xml, &s))
            .unwrap_or_default()
        {
            let (Some(id), Some(status)) = (
                child(&xml, &item, "networkInterfaceId"),
                child(&xml, &item, "status"),
            ) else {
                continue;
            };
            let id = &xml[id.inner];
            if self.enis.iter().any(|e| e.id == id && !e.stranded) {
                edits.push((status.inner, "in-use".to_owned()));
                seen.push(id.to_owned());
            }
        }
        for id in seen {
            self.inject(Behaviour::EniHeld, "DescribeNetworkInterfaces", &id);
        }
        if !edits.is_empty() {
            resp.body = splice(&xml, edits).into_bytes();
        }
    }

    fn eni_job(
        &self,
        function: &str,
        subnets: Vec<String>,
        groups: Vec<String>,
        c: &Call,
    ) -> Option<EniJob> {
        (!subnets.is_empty()).then(|| EniJob {
            function: function.to_owned(),
            subnets,
            groups,
            scope: c.scope.clone(),
        })
    }

    /// The function let go of its ENIs now: Lambda releases them after `eni_release`.
    fn release_enis_of(&mut self, function: &str) {
        let role = self
            .functions
            .get(function)
            .map(|f| f.role.clone())
            .unwrap_or_default();
        let at = Instant::now() + self.t.eni_release;
        for e in self
            .enis
            .iter_mut()
            .filter(|e| e.function == function && e.release_at.is_none())
        {
            e.role = role.clone();
            e.release_at = Some(at);
        }
    }

    pub fn add_enis(&mut self, enis: Vec<Eni>) {
        self.enis.extend(enis);
    }

    /// ENIs whose release time has come and whose function's role still exists: Lambda deletes
    /// them (the caller does, in moto). Those whose role was deleted before become stranded.
    pub fn due_releases(&mut self) -> Vec<Eni> {
        let now = Instant::now();
        let mut due = Vec::new();
        for e in self.enis.iter_mut().filter(|e| !e.stranded) {
            let Some(at) = e.release_at.filter(|at| *at <= now) else {
                continue;
            };
            if self
                .roles_deleted
                .get(&e.role)
                .is_some_and(|deleted| *deleted < at)
            {
                super::trace(format_args!(
                    "role {} was deleted before Lambda released {} ({}): it stays",
                    e.role, e.id, e.function
                ));
                e.stranded = true;
            } else {
                due.push(e.clone());
            }
        }
        self.enis.retain(|e| !due.iter().any(|d| d.id == e.id));
        due
    }
}

/// The `tag:KEY` filters of an EC2 query request: each key with its accepted values.
fn tag_filters(c: &Call) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for n in 1.. {
        let Some(name) = c.param(&format!("Filter.{n}.Name")) else {
            break;
        };
        let Some(key) = name.strip_prefix("tag:") else {
            continue;
        };
        let values = (1..)
            .map_while(|m| c.param(&format!("Filter.{n}.Value.{m}")).map(str::to_owned))
            .collect();
        out.push((key.to_owned(), values));
    }
    out
}
