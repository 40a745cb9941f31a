//! The function's security group: no ingress; egress to the partner's SFTP port and to AWS APIs
//! (tcp/443) only.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, SecurityGroup};

use super::ec2::{find_named, send_visible, tag_spec};
use super::*;
use crate::context::Action;
use crate::context::{is_placeholder, Clients, Ctx, State};
use crate::error::{aws, Result};
use crate::retry::{delete_when_in_use, IN_USE, IN_USE_WAIT};

/// The stack's security group for the function.
pub async fn find_security_group(
    c: &Clients,
    stack: &str,
    name: &str,
) -> Result<Option<SecurityGroup>> {
    find_named(
        stack,
        name,
        &[],
        ("DescribeSecurityGroups", format!("security group {name}")),
        |f| c.ec2.describe_security_groups().set_filters(Some(f)).send(),
        |out| out.security_groups(),
    )
    .await
}

/// One egress rule: protocol, port, CIDR.
pub(crate) type Rule = (String, i32, String);

pub(crate) fn desired_egress(egress: &[Egress]) -> BTreeSet<Rule> {
    let mut rules: BTreeSet<Rule> = egress
        .iter()
        .flat_map(|e| {
            e.cidrs
                .iter()
                .map(|c| ("tcp".into(), i32::from(e.port), c.clone()))
        })
        .collect();
    rules.insert(("tcp".into(), 443, "0.0.0.0/0".into()));
    rules
}

/// The rules as a set; rules that cannot be written as (tcp, one port, IPv4 CIDR) — such as the
/// default allow-all — become entries that never match a desired rule.
pub(crate) fn current_egress(perms: &[IpPermission]) -> BTreeSet<Rule> {
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

pub(crate) async fn ensure_security_group(
    ctx: Ctx<'_>,
    vpc: &str,
    checked: &Checked,
) -> Result<String> {
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
    let desired = desired_egress(&checked.egress);
    let partners: Vec<String> = checked
        .egress
        .iter()
        .map(|e| format!("tcp/{} → {}", e.port, e.cidrs.join(", ")))
        .collect();
    let rules = format!(
        "egress rules of {name}: {}, tcp/443 → 0.0.0.0/0",
        partners.join(", ")
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

/// Deletes the function's security group (destroy), retrying while something still uses it.
pub(crate) async fn delete(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    let sg_name = ctx.spec.security_group_name();
    if let Some(id) = super::find_security_group(c, stack, &sg_name)
        .await?
        .and_then(|g| g.group_id().map(str::to_owned))
    {
        let what = format!("security group {sg_name}");
        delete_when_in_use(
            "DeleteSecurityGroup",
            &what,
            IN_USE,
            &["InvalidGroup.NotFound"],
            IN_USE_WAIT,
            || c.ec2.delete_security_group().group_id(&id).send(),
        )
        .await?;
        ctx.record(Action::Delete, what, &id);
    }
    Ok(())
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
        let one = Egress {
            port: 2222,
            cidrs: vec!["198.51.100.7/32".into()],
        };
        let desired = desired_egress(std::slice::from_ref(&one));
        assert_ne!(current_egress(&[all]), desired);
        assert_eq!(desired.len(), 2);
        // Two partners on one host, each its own port: two rules, the HTTPS one once.
        let other = Egress {
            port: 22,
            ..one.clone()
        };
        assert_eq!(desired_egress(&[one, other]).len(), 3);
    }
}
