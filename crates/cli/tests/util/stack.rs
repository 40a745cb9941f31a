//! A stack's forwarding function on moto, for `--partner` and `--all`: `<stack>-forward` with the
//! partners in its environment, as the provisioner leaves it (moto stores the function, never
//! runs it).

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
use sftp_forward_core::env;
use sftp_forward_core::routing::{PartnerSpec, Routing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::shared::unique;

/// Creates the function of a new stack whose `SFTP_FORWARD_PARTNERS` holds `partners`; returns
/// the stack's name.
pub async fn stack_with(config: &aws_config::SdkConfig, partners: Vec<PartnerSpec>) -> String {
    let routing = Routing::new(partners).expect("valid partners");
    stack_with_env(config, &[(env::PARTNERS, &routing.to_json())]).await
}

/// Creates the function of a new stack with this environment; returns the stack's name.
pub async fn stack_with_env(config: &aws_config::SdkConfig, vars: &[(&str, &str)]) -> String {
    let stack = unique("stack");
    let role = create_role(&format!("{stack}-role")).await;
    aws_sdk_lambda::Client::new(config)
        .create_function()
        .function_name(format!("{stack}-forward"))
        .runtime(Runtime::Providedal2023)
        .role(role)
        .handler("bootstrap")
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(testkit::zip_with("bootstrap", b"#!/bin/sh\n")))
                .build(),
        )
        .environment(
            vars.iter()
                .fold(Environment::builder(), |b, (k, v)| b.variables(*k, *v))
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateFunction {stack}-forward: {e:?}"));
    stack
}

/// A partner entry: `name`, keys under `name/`, its secret.
pub fn spec(name: &str, secret_id: &str) -> PartnerSpec {
    PartnerSpec {
        name: name.into(),
        prefix: Some(format!("{name}/")),
        secret_id: secret_id.into(),
        ..PartnerSpec::default()
    }
}

/// An IAM role Lambda may assume (moto's CreateFunction checks that the role exists); returns its
/// ARN. A raw Query-protocol request: the CLI's tests have no IAM client, and moto reads the
/// service from the credential scope without checking the signature.
async fn create_role(name: &str) -> String {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    // Neither value holds a character a form body must escape (`&`, `=`, `+`, `%`, space).
    assert!(!format!("{name}{trust}").contains(['&', '=', '+', '%', ' ']));
    let body = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument={trust}"
    );
    let moto = testkit::moto();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, \
         SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        moto.host,
        moto.port,
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect((moto.host, moto.port))
        .await
        .expect("connect to moto");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        conn.read_to_string(&mut answer),
    )
    .await
    .expect("moto answers CreateRole within 30 s")
    .unwrap();
    answer
        .split_once("<Arn>")
        .and_then(|(_, rest)| rest.split_once("</Arn>"))
        .map(|(arn, _)| arn.to_owned())
        .unwrap_or_else(|| panic!("CreateRole {name}: no Arn in {answer}"))
}
