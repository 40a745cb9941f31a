//! The network: VPC, four subnets in two AZs, internet gateway, two Elastic IPs, two NAT gateways,
//! four route tables, the S3 gateway endpoint and the function's security group.
//!
//! Every EC2 resource is tagged at creation (`TagSpecifications`) with [`STACK_TAG`] and its `Name`,
//! and found by those two tags before anything is created ([`crate::STACK_TAG`]).
//!
//! # Layout
//!
//! One module per resource type, each with its finder, its `ensure` and (for destroy) its delete,
//! in the order `apply` builds them: [`vpc`], [`igw`], [`subnet`], [`eip`], [`nat`],
//! [`route_table`], [`endpoint`], [`security_group`]; [`check`] runs before any of them, [`ec2`] is
//! what they share.

pub mod check;
pub(crate) mod ec2;
pub mod eip;
pub mod endpoint;
pub mod eni;
pub mod igw;
pub mod nat;
pub mod route_table;
pub mod security_group;
pub mod subnet;
pub mod vpc;

pub use check::{check, Checked, Egress, LAMBDA_UNSUPPORTED_AZ_IDS};
pub use eip::{find_eip, Eip};
pub use endpoint::find_endpoint;
pub use igw::find_igw;
pub(crate) use nat::wait_nats;
pub use nat::{find_nat, find_nat_any};
pub use route_table::find_route_table;
pub use security_group::find_security_group;
pub use subnet::find_subnet;
pub use vpc::find_vpc;

use crate::config::HALVES;
use crate::context::Ctx;
use crate::error::Result;
use crate::failover::Az;
use eip::ensure_eip;
use endpoint::ensure_endpoint;
use igw::ensure_igw;
use nat::ensure_nat;
use route_table::{ensure_route_table, Target};
use security_group::ensure_security_group;
use subnet::ensure_subnet;
use vpc::ensure_vpc;

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
        // A private subnet failed over to the other AZ's NAT gateway stays so, until `failback`.
        let (nat, nat_name) = crate::failover::keep_failover(ctx, Az::BOTH[i], &nats).await?;
        let private = ensure_route_table(
            ctx,
            &vpc,
            half.private_rt,
            &private_subnets[i],
            Target::Nat(nat, nat_name),
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
