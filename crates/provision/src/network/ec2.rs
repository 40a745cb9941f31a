//! What every EC2 resource of the stack shares: its tags (`sftp-forward:stack` and `Name`), the
//! filters that find it, client tokens, the one-match rule, and the bounded retry for ids EC2
//! does not see yet right after they were created.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{
    Address, Filter, InternetGateway, NatGateway, ResourceType, RouteTable, SecurityGroup, Subnet,
    Tag, TagSpecification, Vpc, VpcEndpoint,
};

use crate::error::{Error, Result};
use crate::STACK_TAG;

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
        $crate::retry::when_codes(
            concat!($op, ": EC2 to see the resources just created"),
            $crate::network::ec2::NOT_YET_VISIBLE,
            $crate::network::ec2::VISIBILITY_WAIT,
            || req.clone().send(),
        )
        .await
    }};
}

pub(crate) use send_visible;

pub(crate) fn filter(name: &str, values: &[&str]) -> Filter {
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
pub(crate) fn named(stack: &str, name: &str) -> Vec<Filter> {
    vec![stack_filter(stack), filter("tag:Name", &[name])]
}

pub(crate) fn tags(stack: &str, name: &str) -> [Tag; 2] {
    [
        Tag::builder().key(STACK_TAG).value(stack).build(),
        Tag::builder().key("Name").value(name).build(),
    ]
}

pub(crate) fn tag_spec(kind: ResourceType, stack: &str, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags(stack, name).into()))
        .build()
}

/// A token unique to this run, so that the SDK's retries of one create are idempotent.
pub(crate) fn client_token(stack: &str, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut token = format!("{stack}-{name}-{nanos}");
    token.truncate(64);
    token
}

/// EC2 resources that carry tags.
pub(crate) trait Tagged {
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

/// Finds the stack's EC2 resource `name` of one type: `describe` sends the type's describe call
/// with the stack's filters (plus `extra`), `items` picks the list out of its answer, and [`one`]
/// checks the tags again. The one shape behind every `find_*` of the network.
pub(crate) async fn find_named<T, O, E, Fut>(
    stack: &str,
    name: &str,
    extra: &[Filter],
    (operation, what): (&'static str, String),
    describe: impl FnOnce(Vec<Filter>) -> Fut,
    items: impl FnOnce(&O) -> &[T],
) -> Result<Option<T>>
where
    Fut: std::future::Future<Output = std::result::Result<O, E>>,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
    T: Tagged + Clone,
{
    let mut filters = named(stack, name);
    filters.extend_from_slice(extra);
    let out = describe(filters)
        .await
        .map_err(crate::error::aws(operation, &what))?;
    one(items(&out), stack, name, what)
}

/// The one item tagged for `stack` and `name`, if any; more than one means someone duplicated the
/// tags by hand. The describe filters already select these; the tags are checked again because
/// emulators do not honour every tag filter (moto ignores them on NAT gateways).
pub(crate) fn one<T: Tagged + Clone>(
    items: &[T],
    stack: &str,
    name: &str,
    what: String,
) -> Result<Option<T>> {
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
