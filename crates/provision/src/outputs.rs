//! `outputs`: what exists for the stack, as JSON, found the same way `apply` finds it. Missing
//! resources are `null` (or absent from `elastic_ips`). `private_routes` says where each private
//! subnet's traffic leaves now (its own NAT gateway, or the other one after `failover`); `alerting`
//! the alarm topic, its subscriptions, the alarms and the self-check's schedule.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Spec, HALVES};
use crate::context::Clients;
use crate::error::Result;
use crate::failover::{self, PrivateRoute};
use crate::{function, iam, inbox, network};

/// The stack's resources.
#[derive(Debug, Clone, Serialize)]
pub struct Outputs {
    /// The stack name.
    pub stack: String,
    /// The region.
    pub region: String,
    /// VPC id.
    pub vpc: Option<String>,
    /// Subnet ids by Name (`public-one`, …).
    pub subnets: BTreeMap<&'static str, Option<String>>,
    /// NAT gateway ids by Name (`nat-one`, `nat-two`).
    pub nat_gateways: BTreeMap<&'static str, Option<String>>,
    /// Each private subnet's default route now (`private-one`, `private-two`): through which NAT
    /// gateway, and whether it is failed over to the other AZ's.
    pub private_routes: BTreeMap<&'static str, Option<PrivateRoute>>,
    /// The public IPs the partner allowlists, `eip-one` then `eip-two`.
    pub elastic_ips: Vec<String>,
    /// Their allocation ids, same order.
    pub elastic_ip_allocation_ids: Vec<String>,
    /// The function's security group.
    pub security_group: Option<String>,
    /// The function's name, if it exists.
    pub function: Option<String>,
    /// The function's ARN.
    pub function_arn: Option<String>,
    /// The function's role ARN.
    pub role: Option<String>,
    /// The inbox bucket, if it exists.
    pub bucket: Option<String>,
    /// The queue URL.
    pub queue: Option<String>,
    /// The dead-letter queue URL.
    pub dlq: Option<String>,
    /// The partner secret's ARN.
    pub secret: Option<String>,
    /// The partners of a stack with `partners`: name, prefix, secret, queue, DLQ, port,
    /// max_concurrency, as the stack has them.
    pub partners: Vec<crate::partners::Listed>,
    /// With partners: the EventBridge rule and the queue of keys under no partner's prefix, and
    /// how many of those wait in it.
    pub unrouted: Option<crate::unrouted::Found>,
    /// The alarms' topic, its subscriptions, the alarms and the self-check's schedule.
    pub alerting: crate::alarms::outputs::Alerting,
}

/// Looks everything up; changes nothing.
pub async fn collect(c: &Clients, spec: &Spec) -> Result<Outputs> {
    let stack = spec.stack.as_str();
    let mut subnets = BTreeMap::new();
    let mut nat_gateways = BTreeMap::new();
    let (mut elastic_ips, mut elastic_ip_allocation_ids) = (Vec::new(), Vec::new());
    for half in &HALVES {
        for name in [half.public, half.private] {
            let subnet = network::find_subnet(c, stack, name).await?;
            subnets.insert(name, subnet.and_then(|s| s.subnet_id().map(Into::into)));
        }
        let nat = network::find_nat(c, stack, half.nat).await?;
        nat_gateways.insert(
            half.nat,
            nat.and_then(|n| n.nat_gateway_id().map(Into::into)),
        );
        if let Some(a) = network::find_eip(c, stack, half.eip).await? {
            elastic_ips.extend(a.public_ip().map(str::to_owned));
            elastic_ip_allocation_ids.extend(a.allocation_id().map(str::to_owned));
        }
    }
    let sg = network::find_security_group(c, stack, &spec.security_group_name()).await?;
    let function = function::find_function(c, &spec.function_name()).await?;
    Ok(Outputs {
        stack: stack.into(),
        region: c.region.clone(),
        vpc: network::find_vpc(c, stack)
            .await?
            .and_then(|v| v.vpc_id().map(Into::into)),
        subnets,
        nat_gateways,
        private_routes: failover::private_routes(c, stack).await?,
        elastic_ips,
        elastic_ip_allocation_ids,
        security_group: sg.and_then(|g| g.group_id().map(Into::into)),
        function: function
            .as_ref()
            .and_then(|f| f.function_name().map(Into::into)),
        function_arn: function
            .as_ref()
            .and_then(|f| f.function_arn().map(Into::into)),
        role: iam::find_role(c, &spec.role_name(&c.region))
            .await?
            .map(|r| r.arn().to_owned()),
        bucket: inbox::bucket_exists(c, &spec.bucket)
            .await?
            .then(|| spec.bucket.clone()),
        queue: inbox::find_queue_url(c, &spec.queue_name()).await?,
        dlq: inbox::find_queue_url(c, &spec.dlq_name()).await?,
        secret: inbox::find_secret(c, &spec.secret)
            .await?
            .filter(|d| d.deleted_date().is_none())
            .and_then(|d| d.arn().map(Into::into)),
        partners: crate::partners::listed(c, spec).await?,
        unrouted: crate::unrouted::find(c, stack).await?,
        alerting: crate::alarms::outputs::collect(c, spec).await?,
    })
}
