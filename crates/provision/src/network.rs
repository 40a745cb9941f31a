//! The network: VPC, four subnets in two AZs, internet gateway, two Elastic IPs, two NAT gateways,
//! four route tables, the S3 gateway endpoint and the function's security group.
//!
//! Every EC2 resource is tagged at creation (`TagSpecifications`) with [`STACK_TAG`] and its `Name`,
//! and found by those two tags before anything is created.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{
    Address, ConnectivityType, DomainType, Filter, InternetGateway, IpPermission, IpRange,
    NatGateway, ResourceType, RouteTable, SecurityGroup, Subnet, Tag, TagSpecification, Vpc,
    VpcEndpoint, VpcEndpointType,
};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::{Half, Partner, HALVES, IGW_NAME, S3_ENDPOINT_NAME, VPC_CIDR, VPC_NAME};
use crate::context::{is_placeholder, Clients, Ctx, State};
use crate::error::{aws, Error, Result};
use crate::STACK_TAG;

/// The network as found or built. In a plan, ids of what does not exist yet are placeholders.
#[derive(Debug, Clone)]
pub struct Network {
    /// The VPC id.
    pub vpc: String,
    /// AZ A and AZ B.
    pub azs: [String; 2],
    /// `public-one`, `public-two`.
    pub public_subnets: [String; 2],
    /// `private-one`, `private-two`: where the function runs.
    pub private_subnets: [String; 2],
    /// `nat-one`, `nat-two`.
    pub nat_gateways: [String; 2],
    /// The Elastic IPs of `nat-one` and `nat-two`: the partner's allowlist.
    pub elastic_ips: [Eip; 2],
    /// The function's security group.
    pub security_group: String,
}

impl Network {
    /// The two public IPs, comma-separated: what the partner allowlists.
    pub fn allowlist(&self) -> String {
        let ips: Vec<&str> = self
            .elastic_ips
            .iter()
            .map(|e| e.public_ip.as_str())
            .collect();
        ips.join(", ")
    }
}

/// An Elastic IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eip {
    /// `eipalloc-…`.
    pub allocation_id: String,
    /// The public address (unknown in a plan for a new one).
    pub public_ip: String,
}

/// Inputs checked against AWS before anything is created.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The two AZs to use.
    pub azs: [String; 2],
    /// Where the partner's SFTP port may be reached.
    pub partner_cidrs: Vec<String>,
    /// The partner's SFTP port (the secret's `Port`, default 22).
    pub partner_port: u16,
}

/// EC2 error codes that, right after a create, mean "not visible yet" rather than "does not exist":
/// EC2 is eventually consistent (EC2 API reference, "Eventual consistency in the Amazon EC2 API").
pub(crate) const NOT_YET_VISIBLE: &[&str] = &[
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidAllocationID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidNatGatewayID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidVpcEndpointId.NotFound",
];
/// How long a resource just created may stay invisible to dependent calls.
pub(crate) const VISIBILITY_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Sends an EC2 request that names resources created moments ago, retrying (bounded) while EC2
/// answers that one of them does not exist yet.
macro_rules! send_visible {
    ($op:expr, $req:expr) => {{
        let req = $req;
        crate::retry::when_codes(
            concat!($op, ": EC2 to see the resources just created"),
            NOT_YET_VISIBLE,
            VISIBILITY_WAIT,
            || req.clone().send(),
        )
        .await
    }};
}

// --- tags and filters -------------------------------------------------------------------------

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// Matches everything of the stack.
pub(crate) fn stack_filter(stack: &str) -> Filter {
    filter(&format!("tag:{STACK_TAG}"), &[stack])
}

/// Matches the stack's resource called `name`.
fn named(stack: &str, name: &str) -> Vec<Filter> {
    vec![stack_filter(stack), filter("tag:Name", &[name])]
}

fn tags(stack: &str, name: &str) -> [Tag; 2] {
    [
        Tag::builder().key(STACK_TAG).value(stack).build(),
        Tag::builder().key("Name").value(name).build(),
    ]
}

fn tag_spec(kind: ResourceType, stack: &str, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags(stack, name).into()))
        .build()
}

/// A token unique to this run, so that the SDK's retries of one create are idempotent.
fn client_token(stack: &str, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut token = format!("{stack}-{name}-{nanos}");
    token.truncate(64);
    token
}

/// EC2 resources that carry tags.
trait Tagged {
    fn tag_list(&self) -> &[Tag];
}

macro_rules! tagged {
    ($($t:ty),*) => { $(impl Tagged for $t { fn tag_list(&self) -> &[Tag] { self.tags() } })* };
}
tagged!(
    Vpc,
    Subnet,
    InternetGateway,
    Address,
    NatGateway,
    RouteTable,
    VpcEndpoint,
    SecurityGroup
);

/// The one item tagged for `stack` and `name`, if any; more than one means someone duplicated the
/// tags by hand. The describe filters already select these; the tags are checked again because
/// emulators do not honour every tag filter (moto ignores them on NAT gateways).
fn one<T: Tagged + Clone>(items: &[T], stack: &str, name: &str, what: String) -> Result<Option<T>> {
    let has = |t: &T, k: &str, v: &str| {
        t.tag_list()
            .iter()
            .any(|tag| tag.key() == Some(k) && tag.value() == Some(v))
    };
    let matching: Vec<&T> = items
        .iter()
        .filter(|t| has(t, STACK_TAG, stack) && has(t, "Name", name))
        .collect();
    match matching.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(Error::Conflict {
            resource: what,
            problem: format!(
                "{} resources carry the same {STACK_TAG} and Name tags",
                many.len()
            ),
            next: "delete or re-tag the extra ones, then run the command again".into(),
        }),
    }
}

// --- finders (shared by apply, outputs and destroy) ----------------------------------------------

/// The stack's VPC.
pub async fn find_vpc(c: &Clients, stack: &str) -> Result<Option<Vpc>> {
    let what = format!("VPC {VPC_NAME:?}");
    let out = c
        .ec2
        .describe_vpcs()
        .set_filters(Some(named(stack, VPC_NAME)))
        .send()
        .await;
    one(
        out.map_err(aws("DescribeVpcs", &what))?.vpcs(),
        stack,
        VPC_NAME,
        what,
    )
}

/// The stack's subnet `name`.
pub async fn find_subnet(c: &Clients, stack: &str, name: &str) -> Result<Option<Subnet>> {
    let what = format!("subnet {name}");
    let out = c
        .ec2
        .describe_subnets()
        .set_filters(Some(named(stack, name)))
        .send()
        .await;
    one(
        out.map_err(aws("DescribeSubnets", &what))?.subnets(),
        stack,
        name,
        what,
    )
}

/// The stack's internet gateway.
pub async fn find_igw(c: &Clients, stack: &str) -> Result<Option<InternetGateway>> {
    let what = format!("internet gateway {IGW_NAME:?}");
    let out = c
        .ec2
        .describe_internet_gateways()
        .set_filters(Some(named(stack, IGW_NAME)))
        .send()
        .await;
    one(
        out.map_err(aws("DescribeInternetGateways", &what))?
            .internet_gateways(),
        stack,
        IGW_NAME,
        what,
    )
}

/// The stack's Elastic IP `name` (kept across destroy unless released).
pub async fn find_eip(c: &Clients, stack: &str, name: &str) -> Result<Option<Address>> {
    let what = format!("Elastic IP {name}");
    let out = c
        .ec2
        .describe_addresses()
        .set_filters(Some(named(stack, name)))
        .send()
        .await;
    one(
        out.map_err(aws("DescribeAddresses", &what))?.addresses(),
        stack,
        name,
        what,
    )
}

/// The stack's NAT gateway `name`, if pending or available (deleted ones linger for an hour).
pub async fn find_nat(c: &Clients, stack: &str, name: &str) -> Result<Option<NatGateway>> {
    let what = format!("NAT gateway {name}");
    let mut filters = named(stack, name);
    filters.push(filter("state", &["pending", "available"]));
    let out = c
        .ec2
        .describe_nat_gateways()
        .set_filter(Some(filters))
        .send()
        .await;
    one(
        out.map_err(aws("DescribeNatGateways", &what))?
            .nat_gateways(),
        stack,
        name,
        what,
    )
}

/// The stack's NAT gateway `name` with its state, if pending, available or deleting (`destroy`
/// must see one that is still deleting: it is still billed and still holds its subnet).
pub async fn find_nat_any(
    c: &Clients,
    stack: &str,
    name: &str,
) -> Result<Option<(String, String)>> {
    let what = format!("NAT gateway {name}");
    let mut filters = named(stack, name);
    filters.push(filter("state", &["pending", "available", "deleting"]));
    let out = c
        .ec2
        .describe_nat_gateways()
        .set_filter(Some(filters))
        .send()
        .await;
    let found = one(
        out.map_err(aws("DescribeNatGateways", &what))?
            .nat_gateways(),
        stack,
        name,
        what,
    )?;
    Ok(found.map(|n| {
        (
            n.nat_gateway_id().unwrap_or_default().to_owned(),
            n.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        )
    }))
}

/// Waits until every NAT gateway of `ids` is in `state` (`available`, or `deleted` by destroy),
/// polling `DescribeNatGateways` (a new gateway is `pending` for minutes, a deleted one `deleting`).
/// A gateway that ends `failed` is an error naming AWS's reason.
pub(crate) async fn wait_nats(
    c: &Clients,
    ids: &[String],
    state: &'static str,
    limit: std::time::Duration,
) -> Result<()> {
    let what = format!("NAT gateways {} to be {state}", ids.join(", "));
    let done = crate::retry::until(&what, limit, || async {
        let out = c
            .ec2
            .describe_nat_gateways()
            .set_nat_gateway_ids(Some(ids.to_vec()))
            .send()
            .await;
        let out = match out {
            Err(e) if e.code() == Some("NatGatewayNotFound") && state == "deleted" => {
                return Ok(Ok(()))
            }
            other => other.map_err(aws("DescribeNatGateways", &what))?,
        };
        let mut waiting = Vec::new();
        for n in out.nat_gateways() {
            let id = n.nat_gateway_id().unwrap_or_default();
            let now = n.state().map(|s| s.as_str()).unwrap_or("unknown");
            if now == "failed" && state != "deleted" {
                return Err(Error::Conflict {
                    resource: format!("NAT gateway {id}"),
                    problem: format!(
                        "it failed: {} ({})",
                        n.failure_message().unwrap_or("no message"),
                        n.failure_code().unwrap_or("no code")
                    ),
                    next: "fix the cause, then run apply again (it replaces a failed gateway)"
                        .into(),
                });
            }
            if now != state && !(state == "deleted" && now == "failed") {
                waiting.push(format!("{id} {now}"));
            }
        }
        Ok(if waiting.is_empty() {
            Ok(())
        } else {
            Err(waiting.join(", "))
        })
    })
    .await?;
    done.ok_or_else(|| Error::Timeout {
        resource: format!("NAT gateways {}", ids.join(", ")),
        state,
        waited: limit,
        next: "check them in the VPC console, then run the command again (it resumes)".into(),
    })
}

/// The stack's route table `name`.
pub async fn find_route_table(c: &Clients, stack: &str, name: &str) -> Result<Option<RouteTable>> {
    let what = format!("route table {name}");
    let out = c
        .ec2
        .describe_route_tables()
        .set_filters(Some(named(stack, name)))
        .send()
        .await;
    one(
        out.map_err(aws("DescribeRouteTables", &what))?
            .route_tables(),
        stack,
        name,
        what,
    )
}

/// The stack's S3 gateway endpoint, unless deleted.
pub async fn find_endpoint(c: &Clients, stack: &str) -> Result<Option<VpcEndpoint>> {
    let what = format!("VPC endpoint {S3_ENDPOINT_NAME}");
    let out = c
        .ec2
        .describe_vpc_endpoints()
        .set_filters(Some(named(stack, S3_ENDPOINT_NAME)))
        .send()
        .await;
    let live: Vec<VpcEndpoint> = out
        .map_err(aws("DescribeVpcEndpoints", &what))?
        .vpc_endpoints()
        .iter()
        .filter(|e| !matches!(e.state().map(|s| s.as_str()), Some("deleted" | "deleting")))
        .cloned()
        .collect();
    one(&live, stack, S3_ENDPOINT_NAME, what)
}

/// The stack's security group for the function.
pub async fn find_security_group(
    c: &Clients,
    stack: &str,
    name: &str,
) -> Result<Option<SecurityGroup>> {
    let what = format!("security group {name}");
    let out = c
        .ec2
        .describe_security_groups()
        .set_filters(Some(named(stack, name)))
        .send()
        .await;
    one(
        out.map_err(aws("DescribeSecurityGroups", &what))?
            .security_groups(),
        stack,
        name,
        what,
    )
}

// --- checks before anything is created ---------------------------------------------------------

/// Zone IDs where Lambda cannot place a function's network interfaces (AWS Lambda Developer Guide,
/// "Giving Lambda functions access to resources in an Amazon VPC": a function whose subnet is in
/// one of these fails to create). Zone *names* map to different zones in each account; zone IDs
/// are the same everywhere, so the choice is made by ID.
pub const LAMBDA_UNSUPPORTED_AZ_IDS: &[&str] =
    &["use1-az3", "usw1-az2", "apne1-az3", "apne2-az4", "cac1-az3"];

/// An AZ of the region: its name and its zone ID.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zone {
    name: String,
    id: String,
}

/// Checks the AZ choice, the operator's Elastic IPs and the partner address against AWS and DNS.
/// `partner` is where the function must reach: the address and port (from the secret, or the
/// operator's `partner_address` with the secret's port).
pub async fn check(ctx: Ctx<'_>, partner: Option<&Partner>, port: u16) -> Result<Checked> {
    let (c, spec) = (ctx.clients, ctx.spec);
    let out = c.ec2.describe_availability_zones().send().await;
    let mut zones: Vec<Zone> = out
        .map_err(aws(
            "DescribeAvailabilityZones",
            format!("region {}", c.region),
        ))?
        .availability_zones()
        .iter()
        .filter(|z| z.state().is_none_or(|s| s.as_str() == "available"))
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| {
            Some(Zone {
                name: z.zone_name()?.to_owned(),
                id: z.zone_id().unwrap_or_default().to_owned(),
            })
        })
        .collect();
    zones.sort_by(|a, b| a.name.cmp(&b.name));
    let supported = |z: &&Zone| !LAMBDA_UNSUPPORTED_AZ_IDS.contains(&z.id.as_str());
    let usable: Vec<String> = zones
        .iter()
        .filter(supported)
        .map(|z| format!("{} ({})", z.name, z.id))
        .collect();
    let azs = match &spec.azs {
        Some(azs) => {
            let mut chosen = Vec::new();
            for az in azs {
                let Some(zone) = zones.iter().find(|z| z.name == *az || z.id == *az) else {
                    return Err(Error::invalid(
                        "availability_zones",
                        format!(
                            "{az:?} is not an available AZ of {}; choose two of {usable:?}",
                            c.region
                        ),
                    ));
                };
                if !supported(&zone) {
                    return Err(Error::invalid(
                        "availability_zones",
                        format!(
                            "{az:?} is zone {}, where Lambda cannot run a function in a VPC; \
                             choose two of {usable:?}",
                            zone.id
                        ),
                    ));
                }
                chosen.push(zone.name.clone());
            }
            if chosen[0] == chosen[1] {
                return Err(Error::invalid(
                    "availability_zones",
                    format!("{azs:?} name the same zone twice: the two NAT gateways need two"),
                ));
            }
            [chosen[0].clone(), chosen[1].clone()]
        }
        None => match existing_azs(ctx).await? {
            Some(azs) => azs,
            None => {
                let names: Vec<&Zone> = zones.iter().filter(supported).collect();
                match names.as_slice() {
                    [a, b, ..] => [a.name.clone(), b.name.clone()],
                    _ => {
                        return Err(Error::invalid(
                            "availability_zones",
                            format!(
                                "{} has fewer than two AZs where Lambda can run in a VPC",
                                c.region
                            ),
                        ))
                    }
                }
            }
        },
    };
    if let Some(ids) = &spec.eip_allocation_ids {
        check_given_eips(ctx, ids).await?;
    }
    Ok(Checked {
        azs,
        partner_cidrs: partner_cidrs(partner, port).await?,
        partner_port: port,
    })
}

/// The AZs of the existing public subnets, so that a re-apply without an AZ choice keeps them.
async fn existing_azs(ctx: Ctx<'_>) -> Result<Option<[String; 2]>> {
    let mut azs = Vec::new();
    for half in &HALVES {
        let subnet = find_subnet(ctx.clients, &ctx.spec.stack, half.public).await?;
        azs.extend(subnet.and_then(|s| s.availability_zone().map(str::to_owned)));
    }
    Ok(azs.try_into().ok())
}

async fn check_given_eips(ctx: Ctx<'_>, ids: &[String; 2]) -> Result<()> {
    let out = ctx
        .clients
        .ec2
        .describe_addresses()
        .set_allocation_ids(Some(ids.to_vec()))
        .send()
        .await;
    let out = out.map_err(|e| match e.code() {
        Some("InvalidAllocationID.NotFound" | "InvalidAllocationID.Malformed") => Error::invalid(
            "eip_allocation_ids",
            format!(
                "{ids:?}: not Elastic IPs of this account in {}",
                ctx.clients.region
            ),
        ),
        _ => aws("DescribeAddresses", format!("Elastic IPs {ids:?}"))(e),
    })?;
    for a in out.addresses() {
        let owner = a
            .tags()
            .iter()
            .find(|t| t.key() == Some(STACK_TAG))
            .and_then(|t| t.value());
        let id = a.allocation_id().unwrap_or_default();
        if owner.is_some_and(|o| o != ctx.spec.stack)
            || (owner.is_none() && a.association_id().is_some())
        {
            return Err(Error::Conflict {
                resource: format!("Elastic IP {id} ({})", a.public_ip().unwrap_or("?")),
                problem: "it is in use by something outside this stack".into(),
                next: "pass two unassociated Elastic IPs, or none to allocate new ones".into(),
            });
        }
    }
    Ok(())
}

/// Where the security group lets the partner's port go: the partner's address(es), or anywhere if
/// not known.
async fn partner_cidrs(partner: Option<&Partner>, port: u16) -> Result<Vec<String>> {
    let ips: BTreeSet<std::net::Ipv4Addr> = match partner {
        None => return Ok(vec!["0.0.0.0/0".into()]),
        Some(Partner::Ip(ip)) => [*ip].into(),
        Some(Partner::Host(host)) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| {
                Error::invalid(
                    "partner_address",
                    format!("cannot resolve {host:?}: {e}; give its IPv4 address"),
                )
            })?
            .filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .collect(),
    };
    if ips.is_empty() {
        return Err(Error::invalid(
            "partner_address",
            "resolves to no IPv4 address; give its IPv4 address",
        ));
    }
    Ok(ips.iter().map(|ip| format!("{ip}/32")).collect())
}

// --- apply --------------------------------------------------------------------------------------

/// Finds or builds the whole network.
pub async fn ensure(ctx: Ctx<'_>, checked: &Checked) -> Result<Network> {
    let c = ctx.clients;
    let vpc = ensure_vpc(ctx).await?;
    let igw = ensure_igw(ctx, &vpc).await?;

    let mut public_subnets = Vec::new();
    let mut private_subnets = Vec::new();
    let mut elastic_ips = Vec::new();
    let mut nats = Vec::new();
    let mut all_available = true;
    for (half, az) in HALVES.iter().zip(&checked.azs) {
        let public = ensure_subnet(ctx, &vpc, half.public, half.public_cidr, az).await?;
        private_subnets.push(ensure_subnet(ctx, &vpc, half.private, half.private_cidr, az).await?);
        let eip = ensure_eip(ctx, half).await?;
        let (nat, available) = ensure_nat(ctx, half, &public, &eip).await?;
        all_available &= available;
        nats.push(nat);
        public_subnets.push(public);
        elastic_ips.push(eip);
    }
    if ctx.applying() && !all_available {
        wait_nats(c, &nats, "available", ctx.spec.nat_wait).await?;
    }

    let mut private_tables = Vec::new();
    for (i, half) in HALVES.iter().enumerate() {
        ensure_route_table(
            ctx,
            &vpc,
            half.public_rt,
            &public_subnets[i],
            Target::Igw(&igw),
        )
        .await?;
        let private = ensure_route_table(
            ctx,
            &vpc,
            half.private_rt,
            &private_subnets[i],
            Target::Nat(&nats[i]),
        );
        private_tables.push(private.await?);
    }
    ensure_endpoint(ctx, &vpc, &private_tables).await?;
    let security_group = ensure_security_group(ctx, &vpc, checked).await?;
    let pair = |v: Vec<String>| -> [String; 2] { v.try_into().expect("two halves") };
    Ok(Network {
        vpc,
        azs: checked.azs.clone(),
        public_subnets: pair(public_subnets),
        private_subnets: pair(private_subnets),
        nat_gateways: pair(nats),
        elastic_ips: elastic_ips.try_into().expect("two halves"),
        security_group,
    })
}

async fn ensure_vpc(ctx: Ctx<'_>) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_vpc(c, stack).await?;
    if let Some(v) = &found {
        if v.cidr_block() != Some(VPC_CIDR) {
            return Err(Error::Conflict {
                resource: format!("VPC {VPC_NAME:?} ({})", v.vpc_id().unwrap_or_default()),
                problem: format!(
                    "its CIDR is {:?}, this stack wants {VPC_CIDR}",
                    v.cidr_block()
                ),
                next: "run destroy for this stack, or use another --stack".into(),
            });
        }
    }
    let what = format!("VPC {VPC_NAME:?} {VPC_CIDR}");
    ctx.ensure(
        &what,
        found.and_then(|v| v.vpc_id().map(Into::into)),
        || async {
            let out = c
                .ec2
                .create_vpc()
                .cidr_block(VPC_CIDR)
                .tag_specifications(tag_spec(ResourceType::Vpc, stack, VPC_NAME))
                .send()
                .await
                .map_err(aws("CreateVpc", &what))?;
            Ok(out
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap_or_default()
                .to_owned())
        },
    )
    .await
}

async fn ensure_igw(ctx: Ctx<'_>, vpc: &str) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_igw(c, stack).await?;
    let attached = found
        .as_ref()
        .is_some_and(|g| g.attachments().iter().any(|a| a.vpc_id() == Some(vpc)));
    let what = format!("internet gateway {IGW_NAME:?}");
    let id = ctx
        .ensure(
            &what,
            found.and_then(|g| g.internet_gateway_id().map(Into::into)),
            || async {
                let out = c
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(tag_spec(ResourceType::InternetGateway, stack, IGW_NAME))
                    .send()
                    .await
                    .map_err(aws("CreateInternetGateway", &what))?;
                Ok(out
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .unwrap_or_default()
                    .to_owned())
            },
        )
        .await?;
    let attach = format!("attachment of {IGW_NAME:?} to {VPC_NAME:?}");
    ctx.converge(&attach, State::of(attached, true), || async {
        send_visible!(
            "AttachInternetGateway",
            c.ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
        )
        .map_err(aws("AttachInternetGateway", &attach))?;
        Ok(())
    })
    .await?;
    Ok(id)
}

async fn ensure_subnet(
    ctx: Ctx<'_>,
    vpc: &str,
    name: &str,
    cidr: &str,
    az: &str,
) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_subnet(c, stack, name).await?;
    if let Some(s) = &found {
        if s.cidr_block() != Some(cidr) || s.availability_zone() != Some(az) {
            return Err(Error::Conflict {
                resource: format!("subnet {name} ({})", s.subnet_id().unwrap_or_default()),
                problem: format!(
                    "it is {:?} in {:?}; this run wants {cidr} in {az}",
                    s.cidr_block(),
                    s.availability_zone()
                ),
                next: "keep the AZs the stack was built with (drop availability_zones), or destroy it first".into(),
            });
        }
    }
    let what = format!("subnet {name} {cidr} in {az}");
    ctx.ensure(
        &what,
        found.and_then(|s| s.subnet_id().map(Into::into)),
        || async {
            let out = send_visible!(
                "CreateSubnet",
                c.ec2
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(cidr)
                    .availability_zone(az)
                    .tag_specifications(tag_spec(ResourceType::Subnet, stack, name))
            )
            .map_err(aws("CreateSubnet", &what))?;
            Ok(out
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_owned())
        },
    )
    .await
}

/// The half's Elastic IP: the one tagged for it (kept by an earlier destroy), else the operator's,
/// else a new one.
async fn ensure_eip(ctx: Ctx<'_>, half: &Half) -> Result<Eip> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let index = HALVES.iter().position(|h| h == half).expect("a half");
    let given = ctx
        .spec
        .eip_allocation_ids
        .as_ref()
        .map(|ids| ids[index].as_str());
    let found = find_eip(c, stack, half.eip).await?;
    let eip = |a: &Address| Eip {
        allocation_id: a.allocation_id().unwrap_or_default().into(),
        public_ip: a.public_ip().unwrap_or_default().into(),
    };
    match (found, given) {
        (Some(a), Some(id)) if a.allocation_id() != Some(id) => Err(Error::Conflict {
            resource: format!("Elastic IP {} ({})", half.eip, a.public_ip().unwrap_or("?")),
            problem: format!("the stack already has {:?}, eip_allocation_ids asks for {id}", a.allocation_id()),
            next: "drop eip_allocation_ids to keep the stack's EIPs, or destroy with --release-eips first".into(),
        }),
        (Some(a), _) => {
            let e = eip(&a);
            ctx.record(crate::context::Action::Unchanged, format!("Elastic IP {} {}", half.eip, e.public_ip), &e.allocation_id);
            Ok(e)
        }
        (None, Some(id)) => {
            let what = format!("adoption of Elastic IP {id} as {}", half.eip);
            ctx.converge(&what, State::Differs, || async {
                send_visible!("CreateTags", c.ec2
                    .create_tags()
                    .resources(id)
                    .set_tags(Some(tags(stack, half.eip).into())))
                    .map_err(aws("CreateTags", &what))?;
                Ok(())
            })
            .await?;
            let out = c.ec2.describe_addresses().allocation_ids(id).send().await;
            let out = out.map_err(aws("DescribeAddresses", format!("Elastic IP {id}")))?;
            Ok(out.addresses().first().map(eip).unwrap_or(Eip { allocation_id: id.into(), public_ip: String::new() }))
        }
        (None, None) => {
            let what = format!("Elastic IP {}", half.eip);
            let mut public_ip = String::new();
            let id = ctx
                .ensure(&what, None, || async {
                    let out = c
                        .ec2
                        .allocate_address()
                        .domain(DomainType::Vpc)
                        .tag_specifications(tag_spec(ResourceType::ElasticIp, stack, half.eip))
                        .send()
                        .await
                        .map_err(aws("AllocateAddress", &what))?;
                    public_ip = out.public_ip().unwrap_or_default().to_owned();
                    Ok(out.allocation_id().unwrap_or_default().to_owned())
                })
                .await?;
            Ok(Eip { allocation_id: id, public_ip })
        }
    }
}

/// The NAT gateway's id, and whether it is already available (nothing to wait for).
async fn ensure_nat(ctx: Ctx<'_>, half: &Half, subnet: &str, eip: &Eip) -> Result<(String, bool)> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_nat(c, stack, half.nat).await?;
    if let Some(n) = &found {
        let eips: Vec<&str> = n
            .nat_gateway_addresses()
            .iter()
            .filter_map(|a| a.allocation_id())
            .collect();
        if n.subnet_id() != Some(subnet) || !eips.contains(&eip.allocation_id.as_str()) {
            return Err(Error::Conflict {
                resource: format!(
                    "NAT gateway {} ({})",
                    half.nat,
                    n.nat_gateway_id().unwrap_or_default()
                ),
                problem: format!(
                    "it uses subnet {:?} and EIPs {eips:?}, not {subnet} and {}",
                    n.subnet_id(),
                    eip.allocation_id
                ),
                next: "delete that NAT gateway (destroy keeps the EIPs), then apply again".into(),
            });
        }
    }
    let available = found
        .as_ref()
        .is_some_and(|n| n.state().is_some_and(|s| s.as_str() == "available"));
    let what = format!(
        "NAT gateway {} in {} with {}",
        half.nat, half.public, half.eip
    );
    let id = ctx
        .ensure(
            &what,
            found.and_then(|n| n.nat_gateway_id().map(Into::into)),
            || async {
                let out = send_visible!(
                    "CreateNatGateway",
                    c.ec2
                        .create_nat_gateway()
                        .subnet_id(subnet)
                        .allocation_id(&eip.allocation_id)
                        .connectivity_type(ConnectivityType::Public)
                        .client_token(client_token(stack, half.nat))
                        .tag_specifications(tag_spec(ResourceType::Natgateway, stack, half.nat))
                )
                .map_err(aws("CreateNatGateway", &what))?;
                Ok(out
                    .nat_gateway()
                    .and_then(|n| n.nat_gateway_id())
                    .unwrap_or_default()
                    .to_owned())
            },
        )
        .await?;
    Ok((id, available))
}

/// Where a route table sends 0.0.0.0/0.
#[derive(Clone, Copy)]
enum Target<'a> {
    Igw(&'a str),
    Nat(&'a str),
}

async fn ensure_route_table(
    ctx: Ctx<'_>,
    vpc: &str,
    name: &str,
    subnet: &str,
    target: Target<'_>,
) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_route_table(c, stack, name).await?;
    let what = format!("route table {name}");
    let table = ctx
        .ensure(
            &what,
            found
                .as_ref()
                .and_then(|t| t.route_table_id().map(Into::into)),
            || async {
                let out = send_visible!(
                    "CreateRouteTable",
                    c.ec2
                        .create_route_table()
                        .vpc_id(vpc)
                        .client_token(client_token(stack, name))
                        .tag_specifications(tag_spec(ResourceType::RouteTable, stack, name))
                )
                .map_err(aws("CreateRouteTable", &what))?;
                Ok(out
                    .route_table()
                    .and_then(|t| t.route_table_id())
                    .unwrap_or_default()
                    .to_owned())
            },
        )
        .await?;

    let (target_id, target_name) = match target {
        Target::Igw(id) => (id, IGW_NAME),
        Target::Nat(id) => (
            id,
            if name.starts_with("private-one") {
                "nat-one"
            } else {
                "nat-two"
            },
        ),
    };
    let current = found.as_ref().and_then(|t| {
        t.routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .map(|r| {
                let via = r.gateway_id().or(r.nat_gateway_id());
                via == Some(target_id) && r.state().is_none_or(|s| s.as_str() == "active")
            })
    });
    let route = format!("route {name}: 0.0.0.0/0 → {target_name}");
    ctx.converge(
        &route,
        State::of(current.is_some(), current == Some(true)),
        || async {
            let replace = current.is_some();
            macro_rules! send {
                ($req:expr, $op:literal) => {{
                    let req = $req
                        .route_table_id(&table)
                        .destination_cidr_block("0.0.0.0/0");
                    let req = match target {
                        Target::Igw(id) => req.gateway_id(id),
                        Target::Nat(id) => req.nat_gateway_id(id),
                    };
                    send_visible!($op, req)
                        .map(|_| ())
                        .map_err(aws($op, &route))
                }};
            }
            if replace {
                send!(c.ec2.replace_route(), "ReplaceRoute")
            } else {
                send!(c.ec2.create_route(), "CreateRoute")
            }
        },
    )
    .await?;

    let associated = found.as_ref().is_some_and(|t| {
        t.associations()
            .iter()
            .any(|a| a.subnet_id() == Some(subnet))
    });
    let assoc = format!("association of {name} with its subnet");
    ctx.converge(&assoc, State::of(associated, true), || {
        associate(c, &table, subnet, &assoc)
    })
    .await?;
    Ok(table)
}

/// Associates `subnet` with `table`, replacing the subnet's association with another table.
async fn associate(c: &Clients, table: &str, subnet: &str, what: &str) -> Result<()> {
    let out = c
        .ec2
        .describe_route_tables()
        .filters(filter("association.subnet-id", &[subnet]))
        .send()
        .await
        .map_err(aws("DescribeRouteTables", what))?;
    let existing = out
        .route_tables()
        .iter()
        .flat_map(|t| t.associations())
        .find(|a| a.subnet_id() == Some(subnet))
        .and_then(|a| a.route_table_association_id());
    match existing {
        Some(id) => send_visible!(
            "ReplaceRouteTableAssociation",
            c.ec2
                .replace_route_table_association()
                .association_id(id)
                .route_table_id(table)
        )
        .map(|_| ())
        .map_err(aws("ReplaceRouteTableAssociation", what)),
        None => send_visible!(
            "AssociateRouteTable",
            c.ec2
                .associate_route_table()
                .route_table_id(table)
                .subnet_id(subnet)
        )
        .map(|_| ())
        .map_err(aws("AssociateRouteTable", what)),
    }
}

async fn ensure_endpoint(ctx: Ctx<'_>, vpc: &str, private_tables: &[String]) -> Result<String> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let found = find_endpoint(c, stack).await?;
    let what = format!(
        "S3 gateway endpoint on {}, {}",
        HALVES[0].private_rt, HALVES[1].private_rt
    );
    let id = ctx
        .ensure(
            &what,
            found
                .as_ref()
                .and_then(|e| e.vpc_endpoint_id().map(Into::into)),
            || async {
                let out = send_visible!(
                    "CreateVpcEndpoint",
                    c.ec2
                        .create_vpc_endpoint()
                        .vpc_id(vpc)
                        .vpc_endpoint_type(VpcEndpointType::Gateway)
                        .service_name(format!("com.amazonaws.{}.s3", c.region))
                        .set_route_table_ids(Some(private_tables.to_vec()))
                        .client_token(client_token(stack, S3_ENDPOINT_NAME))
                        .tag_specifications(tag_spec(
                            ResourceType::VpcEndpoint,
                            stack,
                            S3_ENDPOINT_NAME,
                        ))
                )
                .map_err(aws("CreateVpcEndpoint", &what))?;
                Ok(out
                    .vpc_endpoint()
                    .and_then(|e| e.vpc_endpoint_id())
                    .unwrap_or_default()
                    .to_owned())
            },
        )
        .await?;
    if let Some(e) = found {
        let missing: Vec<String> = private_tables
            .iter()
            .filter(|t| !e.route_table_ids().contains(t))
            .cloned()
            .collect();
        let routes = "S3 gateway endpoint route tables";
        ctx.converge(routes, State::of(true, missing.is_empty()), || async {
            send_visible!(
                "ModifyVpcEndpoint",
                c.ec2
                    .modify_vpc_endpoint()
                    .vpc_endpoint_id(&id)
                    .set_add_route_table_ids(Some(missing))
            )
            .map(|_| ())
            .map_err(aws("ModifyVpcEndpoint", routes))
        })
        .await?;
    }
    Ok(id)
}

/// One egress rule: protocol, port, CIDR.
type Rule = (String, i32, String);

fn desired_egress(partner_cidrs: &[String], port: u16) -> BTreeSet<Rule> {
    let mut rules: BTreeSet<Rule> = partner_cidrs
        .iter()
        .map(|c| ("tcp".into(), i32::from(port), c.clone()))
        .collect();
    rules.insert(("tcp".into(), 443, "0.0.0.0/0".into()));
    rules
}

/// The rules as a set; rules that cannot be written as (tcp, one port, IPv4 CIDR) — such as the
/// default allow-all — become entries that never match a desired rule.
fn current_egress(perms: &[IpPermission]) -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for p in perms {
        let proto = p.ip_protocol().unwrap_or_default().to_owned();
        let port = match (p.from_port(), p.to_port()) {
            (Some(a), Some(b)) if a == b => a,
            _ => -1,
        };
        for r in p.ip_ranges() {
            rules.insert((
                proto.clone(),
                port,
                r.cidr_ip().unwrap_or_default().to_owned(),
            ));
        }
        let others =
            p.ipv6_ranges().len() + p.prefix_list_ids().len() + p.user_id_group_pairs().len();
        if others > 0 {
            rules.insert((proto.clone(), port, format!("{others} non-IPv4 targets")));
        }
    }
    rules
}

async fn ensure_security_group(ctx: Ctx<'_>, vpc: &str, checked: &Checked) -> Result<String> {
    let (partner_cidrs, port) = (&checked.partner_cidrs, checked.partner_port);
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let name = ctx.spec.security_group_name();
    let found = find_security_group(c, stack, &name).await?;
    let existed = found.is_some();
    let what = format!("security group {name}");
    let id = ctx
        .ensure(&what, found.and_then(|g| g.group_id().map(Into::into)), || async {
            let out = send_visible!("CreateSecurityGroup", c
                .ec2
                .create_security_group()
                .group_name(&name)
                .description("sftp-forward function: egress to the partner's SFTP port and AWS APIs (tcp/443) only")
                .vpc_id(vpc)
                .tag_specifications(tag_spec(ResourceType::SecurityGroup, stack, &name)))
                .map_err(aws("CreateSecurityGroup", &what))?;
            Ok(out.group_id().unwrap_or_default().to_owned())
        })
        .await?;
    let current: Vec<IpPermission> = if is_placeholder(&id) {
        Vec::new()
    } else {
        let out = c.ec2.describe_security_groups().group_ids(&id).send().await;
        let out = out.map_err(aws("DescribeSecurityGroups", &what))?;
        out.security_groups()
            .first()
            .map(|g| g.ip_permissions_egress().to_vec())
            .unwrap_or_default()
    };
    let desired = desired_egress(partner_cidrs, port);
    let rules = format!(
        "egress rules of {name}: tcp/{port} → {}, tcp/443 → 0.0.0.0/0",
        partner_cidrs.join(", ")
    );
    let state = State::of(existed, current_egress(&current) == desired);
    ctx.converge(&rules, state, || async {
        if !current.is_empty() {
            send_visible!(
                "RevokeSecurityGroupEgress",
                c.ec2
                    .revoke_security_group_egress()
                    .group_id(&id)
                    .set_ip_permissions(Some(current))
            )
            .map_err(aws("RevokeSecurityGroupEgress", &rules))?;
        }
        let perms = desired
            .iter()
            .map(|(proto, port, cidr)| {
                let why = if *port != 443 || cidr != "0.0.0.0/0" {
                    "partner SFTP"
                } else {
                    "AWS APIs (HTTPS)"
                };
                IpPermission::builder()
                    .ip_protocol(proto)
                    .from_port(*port)
                    .to_port(*port)
                    .ip_ranges(IpRange::builder().cidr_ip(cidr).description(why).build())
                    .build()
            })
            .collect();
        send_visible!(
            "AuthorizeSecurityGroupEgress",
            c.ec2
                .authorize_security_group_egress()
                .group_id(&id)
                .set_ip_permissions(Some(perms))
        )
        .map(|_| ())
        .map_err(aws("AuthorizeSecurityGroupEgress", &rules))
    })
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allow_all_egress_never_matches() {
        let all = IpPermission::builder()
            .ip_protocol("-1")
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        let desired = desired_egress(&["198.51.100.7/32".into()], 2222);
        assert_ne!(current_egress(&[all]), desired);
        assert_eq!(desired.len(), 2);
    }
}
