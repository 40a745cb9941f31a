//! The offline demo as a newcomer runs it (`deploy/demo` runs this binary after building): two
//! partners on their own ports must each receive only their own prefix's file, intact, both see
//! the same two EIPs, the egress check must pass for each, and the demo exit 0.
//! It shares the machine-wide egress testbed lock with the egress tests.

use std::path::PathBuf;
use std::process::Command;

/// `target/debug`, where `cargo build --workspace` put `bootstrap` and `provision`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap(); // target/debug/deps/demo-HASH
    exe.parent().and_then(|d| d.parent()).unwrap().to_owned()
}

#[test]
fn the_offline_demo_serves_two_partners_from_the_same_two_eips_and_passes_the_egress_check() {
    let bin = bin_dir();
    for b in ["bootstrap", "provision"] {
        assert!(
            bin.join(b).exists(),
            "{} is missing: build the workspace first (tests/run does)",
            bin.join(b).display()
        );
    }
    // No --zip, as deploy/demo runs it: the demo hands moto (which never runs the code) a
    // placeholder package.
    let out = Command::new(env!("CARGO_BIN_EXE_sftp-forward-demo"))
        .arg("--bootstrap")
        .arg(bin.join("bootstrap"))
        .env("SFTP_FORWARD_PROVISION_BIN", bin.join("provision"))
        .env("SFTP_FORWARD_REPO", testkit::repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n--- stderr ---\n{stderr}");
    assert!(out.status.success(), "exit {:?}\n{all}", out.status.code());
    assert!(stdout.contains("Result: OK"), "{all}");
    assert_eq!(
        stdout.matches("identical to the upload").count(),
        2,
        "each partner's file on its disk: {all}"
    );
    // Two partners on one host, each its own sshd on its own port (the security group's rule for
    // each port applied), each holding only the file of its own prefix.
    for (name, port) in [("acme", 22), ("bank", 2222)] {
        assert!(
            stdout.contains(&format!("partner {name} (port {port}) holds ")),
            "{all}"
        );
        assert!(
            stdout.contains(&format!(
                "partner {name} (port {port}) saw logins from 203.0.113.10 (eip-one), 203.0.113.20 (eip-two)\n"
            )),
            "partner {name} saw both EIPs and nothing else: {all}"
        );
        assert!(
            stdout.contains(&format!("tcp/{port} → 198.51.100.10/32")),
            "the security group's rule for {name}'s port: {all}"
        );
    }
    assert_eq!(
        stdout.matches(": only its own prefix's file").count(),
        2,
        "{all}"
    );
    assert!(
        stdout.contains("/in/") && stdout.contains("-orders.csv"),
        "bank's route: {all}"
    );
    for (eip, name) in [("203.0.113.10", "one"), ("203.0.113.20", "two")] {
        for partner in ["acme", "bank"] {
            assert!(
                stdout.contains(&format!(
                    "private-{name} → {partner}: egress IP {eip} (matches"
                )),
                "the check in private-{name}'s subnet, of {partner}: {all}"
            );
        }
    }
    assert!(
        stdout.contains("Elastic IPs to give the partner for its allowlist: 203.0.113.10 (eip-one), 203.0.113.20 (eip-two)"),
        "{all}"
    );
}
