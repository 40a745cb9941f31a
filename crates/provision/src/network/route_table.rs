//! The four route tables: public ones to the internet gateway, private ones to their AZ's NAT
//! gateway (or, after `failover`, to the other AZ's), each associated with its subnet.

use aws_sdk_ec2::types::{ResourceType, Route, RouteTable};

use super::ec2::{client_token, filter, find_named, send_visible, tag_spec};
use crate::config::HALVES;
use crate::config::IGW_NAME;
use crate::context::Action;
use crate::context::{Clients, Ctx, State};
use crate::error::{aws, Result};

/// The stack's route table `name`.
pub async fn find_route_table(c: &Clients, stack: &str, name: &str) -> Result<Option<RouteTable>> {
    find_named(
        stack,
        name,
        &[],
        ("DescribeRouteTables", format!("route table {name}")),
        |f| c.ec2.describe_route_tables().set_filters(Some(f)).send(),
        |out| out.route_tables(),
    )
    .await
}

/// Where a route table sends 0.0.0.0/0.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    /// The internet gateway (its id).
    Igw(&'a str),
    /// A NAT gateway: its id and its Name (`nat-one`, `nat-two`).
    Nat(&'a str, &'a str),
}

/// Where `table` sends 0.0.0.0/0 now: the NAT gateway's or internet gateway's id, if it has that
/// route.
pub fn default_route(table: &RouteTable) -> Option<&str> {
    default_entry(table).and_then(|r| r.nat_gateway_id().or(r.gateway_id()))
}

fn default_entry(table: &RouteTable) -> Option<&Route> {
    table
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
}

/// Brings `table`'s (`name`'s) 0.0.0.0/0 route to `target`: created when missing, replaced
/// (`ReplaceRoute`, one call, no gap) when it goes elsewhere or is not `active`; `found` is the
/// table as last described (`None` when just created).
pub(crate) async fn converge_default_route(
    ctx: Ctx<'_>,
    table: &str,
    name: &str,
    found: Option<&RouteTable>,
    target: Target<'_>,
) -> Result<()> {
    let c = ctx.clients;
    let (target_id, target_name) = match target {
        Target::Igw(id) => (id, IGW_NAME),
        Target::Nat(id, nat) => (id, nat),
    };
    let current = found.and_then(default_entry).map(|r| {
        let via = r.gateway_id().or(r.nat_gateway_id());
        via == Some(target_id) && r.state().is_none_or(|s| s.as_str() == "active")
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
                        .route_table_id(table)
                        .destination_cidr_block("0.0.0.0/0");
                    let req = match target {
                        Target::Igw(id) => req.gateway_id(id),
                        Target::Nat(id, _) => req.nat_gateway_id(id),
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
    .await
}

pub(crate) async fn ensure_route_table(
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

    converge_default_route(ctx, &table, name, found.as_ref(), target).await?;

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
pub(crate) async fn associate(c: &Clients, table: &str, subnet: &str, what: &str) -> Result<()> {
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

/// Deletes the four route tables and their associations (destroy).
pub(crate) async fn delete_all(ctx: Ctx<'_>) -> Result<()> {
    let (c, stack) = (ctx.clients, ctx.spec.stack.as_str());
    for half in &HALVES {
        for name in [half.public_rt, half.private_rt] {
            let Some(table) = super::find_route_table(c, stack, name).await? else {
                continue;
            };
            let what = format!("route table {name}");
            for a in table
                .associations()
                .iter()
                .filter(|a| a.main() != Some(true))
            {
                let assoc = a.route_table_association_id().unwrap_or_default();
                let out = c
                    .ec2
                    .disassociate_route_table()
                    .association_id(assoc)
                    .send()
                    .await;
                out.map_err(aws("DisassociateRouteTable", &what))?;
            }
            let id = table.route_table_id().unwrap_or_default();
            // The S3 endpoint deleted moments ago may still hold the private tables.
            crate::retry::delete_when_in_use(
                "DeleteRouteTable",
                &what,
                crate::retry::IN_USE,
                &["InvalidRouteTableID.NotFound"],
                crate::retry::IN_USE_WAIT,
                || c.ec2.delete_route_table().route_table_id(id).send(),
            )
            .await?;
            ctx.record(Action::Delete, what, id);
        }
    }
    Ok(())
}
