//! The strict-AWS proxy in front of moto: each behaviour bites the first call after its trigger,
//! the same call succeeds (or the state is the normal one) once its window has passed, and the AWS
//! SDK for Rust reads every injected error as the right code. Tests run in parallel in this binary:
//! each uses fresh names and counts injections by its own names and ids.

use std::fmt::Debug;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, NatGatewayState, NetworkInterfaceStatus,
};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    FunctionCode, LastUpdateStatus, Runtime, State, StateReasonCode, VpcConfig,
};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use testkit::strict_aws::{strict_aws, Behaviour, Timings};
use testkit::zip_with;

/// Codes a client retries while AWS catches up (what the tests' set-up steps wait out).
const CATCHING_UP: &[&str] = &[
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidAllocationID.NotFound",
    "InvalidParameterValueException",
    "ResourceConflictException",
];

/// How much earlier than the proxy a test may start counting a window (it sees the answer later).
const SLACK: Duration = Duration::from_millis(100);

struct Clients {
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    lambda: aws_sdk_lambda::Client,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
}

async fn clients() -> Clients {
    let sdk = strict_aws().sdk_config().await;
    Clients {
        ec2: aws_sdk_ec2::Client::new(&sdk),
        iam: aws_sdk_iam::Client::new(&sdk),
        lambda: aws_sdk_lambda::Client::new(&sdk),
        s3: aws_sdk_s3::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
    }
}

fn timings() -> &'static Timings {
    strict_aws().timings()
}

/// A name no other test of this run uses (lowercase: also a valid bucket name).
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The error code of a call that must fail.
fn code<T: Debug, E: ProvideErrorMetadata>(what: &str, result: Result<T, E>) -> String {
    match result {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or("<no code>").to_owned(),
    }
}

/// Like [`code`], also returning the message.
fn code_message<T: Debug, E: ProvideErrorMetadata>(
    what: &str,
    result: Result<T, E>,
) -> (String, String) {
    match result {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => (
            e.code().unwrap_or("<no code>").to_owned(),
            e.message().unwrap_or("").to_owned(),
        ),
    }
}

/// Retries `call` while it fails with one of [`CATCHING_UP`] (at most 15 s), as a client of real
/// AWS must, and returns its first other result.
async fn settle<T, E, F, Fut>(mut call: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ProvideErrorMetadata,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Err(e)
                if Instant::now() < deadline
                    && e.code().is_some_and(|c| CATCHING_UP.contains(&c)) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            result => return result,
        }
    }
}

/// [`settle`], and the call must then succeed.
async fn eventually<T, E, F, Fut>(what: &str, call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ProvideErrorMetadata + Debug,
{
    settle(call)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// Sleeps until `since + window` (plus a little margin).
async fn wait_out(since: Instant, window: Duration) {
    let until = since + window + Duration::from_millis(100);
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
}

/// A VPC with one subnet (and a security group), created once each id is visible.
struct Network {
    vpc: String,
    subnet: String,
    group: String,
}

async fn network(ec2: &aws_sdk_ec2::Client, second_octet: u8) -> Network {
    let cidr = format!("10.{second_octet}.0.0/16");
    let vpc = ec2
        .create_vpc()
        .cidr_block(cidr)
        .send()
        .await
        .expect("CreateVpc");
    let vpc = vpc.vpc.and_then(|v| v.vpc_id).expect("a VPC id");
    let subnet_cidr = format!("10.{second_octet}.1.0/24");
    let subnet = eventually("CreateSubnet", || {
        ec2.create_subnet()
            .vpc_id(&vpc)
            .cidr_block(&subnet_cidr)
            .send()
    })
    .await;
    let subnet = subnet
        .subnet
        .and_then(|s| s.subnet_id)
        .expect("a subnet id");
    let group = eventually("CreateSecurityGroup", || {
        ec2.create_security_group()
            .vpc_id(&vpc)
            .group_name(unique("sg"))
            .description("strict-aws test")
            .send()
    })
    .await;
    let group = group.group_id.expect("a group id");
    Network { vpc, subnet, group }
}

async fn create_role(iam: &aws_sdk_iam::Client, name: &str) -> String {
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    });
    let out = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateRole {name}: {e:?}"));
    out.role.expect("a role").arn
}

fn code_zip() -> Blob {
    Blob::new(zip_with("bootstrap", b"#!/bin/sh\necho not run\n"))
}

/// `CreateFunction` of a `provided.al2023` function, in `network`'s subnet and group if given.
async fn create_function(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    role_arn: &str,
    network: Option<&Network>,
) -> Result<
    aws_sdk_lambda::operation::create_function::CreateFunctionOutput,
    SdkError<aws_sdk_lambda::operation::create_function::CreateFunctionError>,
> {
    let vpc = network.map(|n| {
        VpcConfig::builder()
            .subnet_ids(&n.subnet)
            .security_group_ids(&n.group)
            .build()
    });
    lambda
        .create_function()
        .function_name(name)
        .runtime(Runtime::Providedal2023)
        .role(role_arn)
        .handler("bootstrap")
        .code(FunctionCode::builder().zip_file(code_zip()).build())
        .set_vpc_config(vpc)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_role_is_not_assumable_until_it_propagated() {
    let c = clients().await;
    let role = unique("role");
    let arn = create_role(&c.iam, &role).await;
    let created = Instant::now();
    let function = unique("fn-role");
    let (error, message) = code_message(
        "CreateFunction right after CreateRole",
        create_function(&c.lambda, &function, &arn, None).await,
    );
    assert_eq!(error, "InvalidParameterValueException");
    assert_eq!(
        message,
        "The role defined for the function cannot be assumed by Lambda."
    );
    wait_out(created, timings().role_propagation).await;
    create_function(&c.lambda, &function, &arn, None)
        .await
        .expect("CreateFunction once the role propagated");
    assert!(strict_aws().count(Behaviour::RoleNotAssumable, &role) >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_cannot_validate_a_queue_whose_policy_just_changed() {
    let c = clients().await;
    let queue = unique("queue");
    let url = c
        .sqs
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .expect("CreateQueue");
    let url = url.queue_url.expect("a queue URL");
    let attrs = c
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes");
    let queue_arn = attrs
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("QueueArn");
    let bucket = unique("bucket");
    c.s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": queue_arn}]
    });
    c.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .expect("SetQueueAttributes");
    let set = Instant::now();
    let notify = || {
        let queue = QueueConfiguration::builder()
            .queue_arn(&queue_arn)
            .events(Event::S3ObjectCreated)
            .build()
            .expect("queue configuration");
        c.s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(queue)
                    .build(),
            )
            .send()
    };
    let (error, message) = code_message(
        "PutBucketNotificationConfiguration right after the policy",
        notify().await,
    );
    assert_eq!(error, "InvalidArgument");
    assert_eq!(
        message,
        "Unable to validate the following destination configurations"
    );
    wait_out(set, timings().queue_policy).await;
    notify()
        .await
        .expect("PutBucketNotificationConfiguration once the policy propagated");
    assert!(strict_aws().count(Behaviour::QueuePolicyNotPropagated, &bucket) >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_ec2_ids_are_not_visible_to_dependent_calls_at_once() {
    let c = clients().await;
    let vis = timings().ec2_visibility;
    let vpc = c
        .ec2
        .create_vpc()
        .cidr_block("10.201.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc = vpc.vpc.and_then(|v| v.vpc_id).expect("a VPC id");
    let t_vpc = Instant::now();
    let alloc = c
        .ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .expect("AllocateAddress");
    let alloc = alloc.allocation_id.expect("an allocation id");
    let t_alloc = Instant::now();
    // Describe calls see new ids at once.
    c.ec2
        .describe_vpcs()
        .vpc_ids(&vpc)
        .send()
        .await
        .expect("DescribeVpcs");

    let create_subnet = || {
        c.ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.201.1.0/24")
            .send()
    };
    let (error, message) =
        code_message("CreateSubnet right after CreateVpc", create_subnet().await);
    assert_eq!(error, "InvalidVpcID.NotFound");
    assert_eq!(message, format!("The vpc ID '{vpc}' does not exist"));
    let release = || c.ec2.release_address().allocation_id(&alloc).send();
    assert_eq!(
        code(
            "ReleaseAddress right after AllocateAddress",
            release().await
        ),
        "InvalidAllocationID.NotFound"
    );

    wait_out(t_vpc, vis).await;
    let subnet = create_subnet()
        .await
        .expect("CreateSubnet once the VPC is visible");
    let subnet = subnet
        .subnet
        .and_then(|s| s.subnet_id)
        .expect("a subnet id");
    let t_subnet = Instant::now();
    let public_ip = || {
        c.ec2
            .modify_subnet_attribute()
            .subnet_id(&subnet)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
            .send()
    };
    assert_eq!(
        code(
            "ModifySubnetAttribute right after CreateSubnet",
            public_ip().await
        ),
        "InvalidSubnetID.NotFound"
    );
    wait_out(t_alloc, vis).await;
    release()
        .await
        .expect("ReleaseAddress once the address is visible");
    wait_out(t_subnet, vis).await;
    public_ip()
        .await
        .expect("ModifySubnetAttribute once the subnet is visible");

    for id in [&vpc, &subnet, &alloc] {
        assert!(
            strict_aws().count(Behaviour::Ec2NotVisible, id) >= 1,
            "{id}"
        );
    }
}

async fn nat_state(ec2: &aws_sdk_ec2::Client, nat: &str) -> NatGatewayState {
    let out = ec2
        .describe_nat_gateways()
        .nat_gateway_ids(nat)
        .send()
        .await
        .expect("DescribeNatGateways");
    let gateway = out
        .nat_gateways
        .unwrap_or_default()
        .into_iter()
        .next()
        .expect("the NAT gateway");
    gateway.state.expect("a state")
}

/// A NAT gateway in `network`'s subnet with a new Elastic IP: `(nat id, allocation id)`.
async fn create_nat(ec2: &aws_sdk_ec2::Client, network: &Network) -> (String, String) {
    let alloc = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .expect("AllocateAddress");
    let alloc = alloc.allocation_id.expect("an allocation id");
    let nat = eventually("CreateNatGateway", || {
        ec2.create_nat_gateway()
            .subnet_id(&network.subnet)
            .allocation_id(&alloc)
            .send()
    })
    .await;
    let nat = nat.nat_gateway.expect("a NAT gateway");
    assert_eq!(
        nat.state,
        Some(NatGatewayState::Pending),
        "CreateNatGateway's own answer"
    );
    (nat.nat_gateway_id.expect("a NAT id"), alloc)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_nat_gateway_is_pending_before_available() {
    let c = clients().await;
    let net = network(&c.ec2, 202).await;
    let (nat, _) = create_nat(&c.ec2, &net).await;
    let created = Instant::now();
    assert_eq!(nat_state(&c.ec2, &nat).await, NatGatewayState::Pending);
    let deadline = created + timings().nat_pending + Duration::from_secs(5);
    while nat_state(&c.ec2, &nat).await != NatGatewayState::Available {
        assert!(Instant::now() < deadline, "{nat} still not available");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        created.elapsed() + SLACK >= timings().nat_pending,
        "available too early"
    );
    assert!(strict_aws().count(Behaviour::NatPending, &nat) >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleting_nat_gateway_holds_its_subnet_address_and_the_gateway() {
    let c = clients().await;
    let net = network(&c.ec2, 203).await;
    let (nat, alloc) = create_nat(&c.ec2, &net).await;
    let igw = c
        .ec2
        .create_internet_gateway()
        .send()
        .await
        .expect("CreateInternetGateway");
    let igw = igw
        .internet_gateway
        .and_then(|g| g.internet_gateway_id)
        .expect("an IGW id");
    c.ec2
        .attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&net.vpc)
        .send()
        .await
        .expect("AttachInternetGateway");
    let described = c
        .ec2
        .describe_nat_gateways()
        .nat_gateway_ids(&nat)
        .send()
        .await
        .expect("DescribeNatGateways");
    let gateway = described
        .nat_gateways
        .unwrap_or_default()
        .into_iter()
        .next()
        .expect("the NAT");
    let association = gateway
        .nat_gateway_addresses
        .unwrap_or_default()
        .into_iter()
        .next();
    let association = association
        .and_then(|a| a.association_id)
        .expect("moto reports the EIP's association");

    c.ec2
        .delete_nat_gateway()
        .nat_gateway_id(&nat)
        .send()
        .await
        .expect("DeleteNatGateway");
    let deleted = Instant::now();
    assert_eq!(nat_state(&c.ec2, &nat).await, NatGatewayState::Deleting);
    let detach = || {
        c.ec2
            .detach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&net.vpc)
            .send()
    };
    let (error, message) = code_message(
        "DetachInternetGateway while the NAT is deleting",
        detach().await,
    );
    assert_eq!(error, "DependencyViolation");
    assert!(
        message.contains(&format!(
            "Network {} has some mapped public address(es)",
            net.vpc
        )),
        "{message}"
    );
    let delete_subnet = || c.ec2.delete_subnet().subnet_id(&net.subnet).send();
    assert_eq!(
        code("DeleteSubnet of the NAT's subnet", delete_subnet().await),
        "DependencyViolation"
    );
    let disassociate = || {
        c.ec2
            .disassociate_address()
            .association_id(&association)
            .send()
    };
    assert_eq!(
        code("DisassociateAddress of the NAT's EIP", disassociate().await),
        "InvalidIPAddress.InUse"
    );
    let release = || c.ec2.release_address().allocation_id(&alloc).send();
    assert_eq!(
        code("ReleaseAddress of the NAT's EIP", release().await),
        "InvalidIPAddress.InUse"
    );

    wait_out(deleted, timings().nat_deleting).await;
    assert_eq!(nat_state(&c.ec2, &nat).await, NatGatewayState::Deleted);
    detach()
        .await
        .expect("DetachInternetGateway once the NAT is deleted");
    disassociate()
        .await
        .expect("DisassociateAddress once the NAT is deleted");
    release()
        .await
        .expect("ReleaseAddress once the NAT is deleted");
    delete_subnet()
        .await
        .expect("DeleteSubnet once the NAT is deleted");

    let s = strict_aws();
    assert!(s.count(Behaviour::NatDeleting, &nat) >= 1);
    for id in [&net.vpc, &net.subnet, &alloc] {
        assert!(s.count(Behaviour::NatDependency, id) >= 1, "{id}");
    }
}

/// A role and a function that uses it, created once the role propagated: the function's name,
/// and when its create succeeded.
async fn function(
    c: &Clients,
    prefix: &str,
    network: Option<&Network>,
) -> (String, String, Instant) {
    let role = unique(&format!("{prefix}-role"));
    let arn = create_role(&c.iam, &role).await;
    let name = unique(prefix);
    let out = eventually("CreateFunction", || {
        create_function(&c.lambda, &name, &arn, network)
    })
    .await;
    assert_eq!(
        out.state,
        Some(State::Pending),
        "CreateFunction's own answer"
    );
    (name, role, Instant::now())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_function_is_pending_and_refuses_updates() {
    let c = clients().await;
    let (name, _, created) = function(&c, "fn-pending", None).await;
    let got = c
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .expect("GetFunction");
    let conf = got.configuration.expect("a configuration");
    assert_eq!(conf.state, Some(State::Pending));
    assert_eq!(conf.state_reason_code, Some(StateReasonCode::Creating));
    let update = || {
        c.lambda
            .update_function_code()
            .function_name(&name)
            .zip_file(code_zip())
            .send()
    };
    let (error, message) = code_message("UpdateFunctionCode while Pending", update().await);
    assert_eq!(error, "ResourceConflictException");
    assert!(
        message.ends_with("The function is currently in the following state: Pending"),
        "{message}"
    );

    wait_out(created, timings().function_pending).await;
    let conf = c
        .lambda
        .get_function_configuration()
        .function_name(&name)
        .send()
        .await
        .expect("GetFunctionConfiguration");
    assert_eq!(conf.state, Some(State::Active));
    assert_eq!(conf.last_update_status, Some(LastUpdateStatus::Successful));
    update().await.expect("UpdateFunctionCode once Active");
    assert!(strict_aws().count(Behaviour::FunctionPending, &name) >= 1);
    assert!(strict_aws().count(Behaviour::FunctionConflict, &name) >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_is_in_progress_for_a_while_and_refuses_another() {
    let c = clients().await;
    let (name, _, created) = function(&c, "fn-update", None).await;
    // A client polls until Active (the first get after the create always says Pending).
    let deadline = created + timings().function_pending + Duration::from_secs(5);
    loop {
        let conf = c
            .lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .expect("GetFunctionConfiguration");
        if conf.state == Some(State::Active) {
            break;
        }
        assert!(Instant::now() < deadline, "{name} still not Active");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        created.elapsed() + SLACK >= timings().function_pending,
        "Active too early"
    );

    let update = |memory| {
        c.lambda
            .update_function_configuration()
            .function_name(&name)
            .memory_size(memory)
            .send()
    };
    let out = update(256)
        .await
        .expect("UpdateFunctionConfiguration of an Active function");
    let updated = Instant::now();
    assert_eq!(out.last_update_status, Some(LastUpdateStatus::InProgress));
    let got = c
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .expect("GetFunction");
    let conf = got.configuration.expect("a configuration");
    assert_eq!(conf.last_update_status, Some(LastUpdateStatus::InProgress));
    assert_eq!(conf.state, Some(State::Active));
    let (error, message) = code_message("a second update while InProgress", update(384).await);
    assert_eq!(error, "ResourceConflictException");
    let arn = conf.function_arn.expect("an ARN");
    assert!(
        message.ends_with(&format!("An update is in progress for resource: {arn}")),
        "{message}"
    );

    wait_out(updated, timings().function_updating).await;
    let conf = c
        .lambda
        .get_function_configuration()
        .function_name(&arn)
        .send()
        .await
        .expect("Get by ARN");
    assert_eq!(conf.last_update_status, Some(LastUpdateStatus::Successful));
    update(384)
        .await
        .expect("UpdateFunctionConfiguration once the first one is done");
    assert!(strict_aws().count(Behaviour::FunctionUpdateInProgress, &name) >= 1);
    assert!(strict_aws().count(Behaviour::FunctionConflict, &name) >= 1);
}

/// The ENIs Lambda made in `subnet`: `(id, status)`.
async fn enis(ec2: &aws_sdk_ec2::Client, subnet: &str) -> Vec<(String, NetworkInterfaceStatus)> {
    let out = ec2
        .describe_network_interfaces()
        .filters(Filter::builder().name("subnet-id").values(subnet).build())
        .send()
        .await
        .expect("DescribeNetworkInterfaces");
    out.network_interfaces
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.description
                .as_deref()
                .is_some_and(|d| d.starts_with("AWS Lambda VPC ENI-"))
        })
        .map(|e| {
            (
                e.network_interface_id.expect("an id"),
                e.status.expect("a status"),
            )
        })
        .collect()
}

/// A function in a fresh VPC whose ENI holds the subnet and the group: returns the ENI's id.
async fn function_in_vpc(
    c: &Clients,
    prefix: &str,
    octet: u8,
) -> (Network, String, String, String) {
    let net = network(&c.ec2, octet).await;
    let (name, role, _) = function(c, prefix, Some(&net)).await;
    let held = enis(&c.ec2, &net.subnet).await;
    assert_eq!(held.len(), 1, "one ENI per subnet: {held:?}");
    let (eni, status) = held.into_iter().next().expect("one ENI");
    assert_eq!(status, NetworkInterfaceStatus::InUse);
    // The subnet's first use since its creation: wait until EC2 shows it.
    let sub = settle(|| c.ec2.delete_subnet().subnet_id(&net.subnet).send()).await;
    assert_eq!(
        code("DeleteSubnet under a function's ENI", sub),
        "DependencyViolation"
    );
    let sg = c
        .ec2
        .delete_security_group()
        .group_id(&net.group)
        .send()
        .await;
    assert_eq!(
        code("DeleteSecurityGroup of a function's ENI", sg),
        "DependencyViolation"
    );
    let del = c
        .ec2
        .delete_network_interface()
        .network_interface_id(&eni)
        .send()
        .await;
    assert_eq!(
        code("DeleteNetworkInterface of a held ENI", del),
        "InvalidNetworkInterface.InUse"
    );
    (net, name, role, eni)
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_releases_its_enis_a_while_after_the_function_is_deleted() {
    let c = clients().await;
    let (net, name, _role, eni) = function_in_vpc(&c, "fn-eni-kept", 204).await;
    c.lambda
        .delete_function()
        .function_name(&name)
        .send()
        .await
        .expect("DeleteFunction");
    let deleted = Instant::now();
    assert_eq!(
        enis(&c.ec2, &net.subnet).await,
        vec![(eni.clone(), NetworkInterfaceStatus::InUse)]
    );
    let sub = c.ec2.delete_subnet().subnet_id(&net.subnet).send().await;
    assert_eq!(
        code("DeleteSubnet right after DeleteFunction", sub),
        "DependencyViolation"
    );

    wait_out(deleted, timings().eni_release).await;
    assert_eq!(enis(&c.ec2, &net.subnet).await, vec![], "released");
    c.ec2
        .delete_security_group()
        .group_id(&net.group)
        .send()
        .await
        .expect("DeleteSecurityGroup");
    c.ec2
        .delete_subnet()
        .subnet_id(&net.subnet)
        .send()
        .await
        .expect("DeleteSubnet");
    for id in [&eni, &net.subnet, &net.group] {
        assert!(strict_aws().count(Behaviour::EniHeld, id) >= 1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn enis_stay_for_good_when_the_role_is_deleted_first() {
    let c = clients().await;
    let (net, name, role, eni) = function_in_vpc(&c, "fn-eni-orphan", 205).await;
    c.lambda
        .delete_function()
        .function_name(&name)
        .send()
        .await
        .expect("DeleteFunction");
    let deleted = Instant::now();
    c.iam
        .delete_role()
        .role_name(&role)
        .send()
        .await
        .expect("DeleteRole");

    wait_out(deleted, timings().eni_release).await;
    assert_eq!(
        enis(&c.ec2, &net.subnet).await,
        vec![(eni.clone(), NetworkInterfaceStatus::Available)]
    );
    let sub = c.ec2.delete_subnet().subnet_id(&net.subnet).send().await;
    assert_eq!(
        code("DeleteSubnet under a stranded ENI", sub),
        "DependencyViolation"
    );
    c.ec2
        .delete_network_interface()
        .network_interface_id(&eni)
        .send()
        .await
        .expect("DeleteNetworkInterface");
    assert_eq!(enis(&c.ec2, &net.subnet).await, vec![]);
    c.ec2
        .delete_security_group()
        .group_id(&net.group)
        .send()
        .await
        .expect("DeleteSecurityGroup");
    c.ec2
        .delete_subnet()
        .subnet_id(&net.subnet)
        .send()
        .await
        .expect("DeleteSubnet");
    assert!(strict_aws().count(Behaviour::EniHeld, &net.subnet) >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_name_another_account_owns_is_taken() {
    let c = clients().await;
    let bucket = unique("taken");
    strict_aws().claim_bucket(&bucket);
    match c.s3.head_bucket().bucket(&bucket).send().await {
        Err(SdkError::ServiceError(e)) => assert_eq!(e.raw().status().as_u16(), 403),
        other => panic!("HeadBucket of a foreign bucket: {other:?}"),
    }
    let (error, message) = code_message(
        "CreateBucket",
        c.s3.create_bucket().bucket(&bucket).send().await,
    );
    assert_eq!(error, "BucketAlreadyExists");
    assert!(
        message.starts_with("The requested bucket name is not available."),
        "{message}"
    );
    let put =
        c.s3.put_object()
            .bucket(&bucket)
            .key("k")
            .body(b"x".to_vec().into())
            .send()
            .await;
    assert_eq!(code("PutObject", put), "AccessDenied");
    assert!(strict_aws().count(Behaviour::ForeignBucket, &bucket) >= 3);
    // Other names still work.
    let mine = unique("mine");
    c.s3.create_bucket()
        .bucket(&mine)
        .send()
        .await
        .expect("CreateBucket of a free name");
    c.s3.head_bucket()
        .bucket(&mine)
        .send()
        .await
        .expect("HeadBucket of our own bucket");
    // Bodies pass through unchanged both ways (3 MiB: the SDK may ask for 100-continue).
    let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    c.s3.put_object()
        .bucket(&mine)
        .key("dir/object")
        .body(data.clone().into())
        .send()
        .await
        .expect("PutObject");
    let got =
        c.s3.get_object()
            .bucket(&mine)
            .key("dir/object")
            .send()
            .await
            .expect("GetObject");
    let head =
        c.s3.head_object()
            .bucket(&mine)
            .key("dir/object")
            .send()
            .await;
    assert_eq!(
        head.expect("HeadObject").content_length,
        Some(data.len() as i64)
    );
    let body = got.body.collect().await.expect("the object's body");
    assert!(body.into_bytes() == data, "the object came back changed");
}

/// Reads one HTTP response: `(status, headers, body)` (body by Content-Length).
fn read_response(r: &mut impl BufRead) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("a header");
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().expect("a length"));
    let mut body = vec![0; len.expect("a Content-Length")];
    r.read_exact(&mut body).expect("body");
    (status, headers, body)
}

#[test]
fn http_keep_alive_chunked_bodies_and_expect_continue() {
    let proxy = strict_aws();
    let stream = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut r = BufReader::new(stream.try_clone().expect("clone"));
    let mut w = stream;
    let auth = "AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=00";
    // A chunked body, sent only after 100 Continue.
    write!(
        w,
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    )
    .expect("write head");
    let mut line = String::new();
    r.read_line(&mut line).expect("interim answer");
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    r.read_line(&mut line).expect("end of interim answer");
    assert_eq!(line, "\r\n");
    let (a, b) = ("Action=DescribeVpcs&", "Version=2016-11-15");
    write!(
        w,
        "{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .expect("write chunks");
    let (status, headers, body) = read_response(&mut r);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("<DescribeVpcsResponse"));
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "connection" && v == "close"),
        "kept alive: {headers:?}"
    );
    // The same connection again, then closed on request.
    let form = "Action=DescribeVpcs&Version=2016-11-15";
    write!(
        w,
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .expect("write the second request");
    let (status, headers, _) = read_response(&mut r);
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(n, v)| n == "connection" && v == "close"));
    let mut rest = Vec::new();
    r.read_to_end(&mut rest)
        .expect("the proxy closes the connection");
    assert!(rest.is_empty());
}
