//! The stack `deploy/provision` builds on a test binary's moto: the egress tests apply it and run
//! its `failover` / `failback`, then route the testbed as the route tables it wrote say.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use testkit::testbed::{Testbed, PARTNER_IP};

use crate::util::unique;

/// A stack `deploy/provision` built on this binary's moto, so that the testbed's route tables
/// can follow the ones its `failover` / `failback` write there (the command's effect, not a
/// hand-made route).
pub struct Stack {
    name: String,
    dir: PathBuf,
}

impl Stack {
    /// `deploy/provision apply` of a new stack whose partner is the testbed's.
    pub fn apply(secret: &Value) -> Stack {
        let name = unique("fo");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let zip = testkit::zip_with("bootstrap", b"#!/bin/sh\necho not run\n");
        std::fs::write(dir.join("bootstrap.zip"), zip).unwrap();
        std::fs::write(dir.join("partner.json"), secret.to_string()).unwrap();
        let stack = Stack { name, dir };
        let (zip, secret) = (
            stack.dir.join("bootstrap.zip"),
            stack.dir.join("partner.json"),
        );
        stack.run(&[
            "apply",
            "--zip",
            zip.to_str().unwrap(),
            "--secret-file",
            secret.to_str().unwrap(),
            "--partner-address",
            &PARTNER_IP.to_string(),
        ]);
        stack
    }

    /// Runs `deploy/provision --stack <name> ARGS` on moto, through testkit's proxy for the
    /// CloudWatch protocol moto lacks ([`testkit::strict_aws::moto_translated`]); asserts it
    /// succeeded; its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(testkit::repo_root().join("deploy/provision"))
            .args(["--stack", &self.name])
            .args(args)
            .env("SFTP_FORWARD_PROVISION_BIN", provision_bin())
            .envs(testkit::strict_aws::moto_translated().env())
            .output()
            .expect("run deploy/provision");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "deploy/provision {args:?}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Applies the stack's private route tables (`outputs`' `private_routes`) to the testbed's
    /// router; returns the NAT each private subnet now routes through.
    pub fn sync_routes(&self, testbed: &Testbed) -> [u8; 2] {
        let outputs: Value = serde_json::from_str(&self.run(&["outputs"])).unwrap();
        [1u8, 2].map(|subnet| {
            let names = ["private-one", "private-two"];
            let via = &outputs["private_routes"][names[usize::from(subnet - 1)]]["via"];
            let nat = match via.as_str() {
                Some("nat-one") => 1,
                Some("nat-two") => 2,
                _ => panic!("subnet {subnet} routes through {via}: {outputs:#}"),
            };
            testbed.route(subnet, nat).unwrap();
            nat
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // moto (and the stack in it) goes with this test process.
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The provisioner built with this test binary's workspace (`tests/run` builds every target
/// first), or `SFTP_FORWARD_PROVISION_BIN`.
fn provision_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SFTP_FORWARD_PROVISION_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("provision");
    let help = Command::new(&bin).arg("--help").output();
    match help {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("failover") => bin,
        _ => panic!(
            "{} is missing or has no failover: build it first (cargo build -p provision --locked; \
             tests/run does), or set SFTP_FORWARD_PROVISION_BIN",
            bin.display()
        ),
    }
}
