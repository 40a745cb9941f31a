//! The offline demo as a newcomer runs it (`deploy/demo` runs this binary after building): it must
//! deliver both files intact from their subnets' EIPs, pass the egress check, and exit 0.
//! It shares the machine-wide egress testbed lock with the egress tests.

use std::path::PathBuf;
use std::process::Command;

/// `target/debug`, where `cargo build --workspace` put `bootstrap` and `provision`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap(); // target/debug/deps/demo-HASH
    exe.parent().and_then(|d| d.parent()).unwrap().to_owned()
}

#[test]
fn the_offline_demo_delivers_both_files_from_their_eips_and_passes_the_egress_check() {
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
        "both files on the partner's disk: {all}"
    );
    for (eip, name) in [("203.0.113.10", "eip-one"), ("203.0.113.20", "eip-two")] {
        assert!(
            stdout.contains(&format!("logged the login from {eip} ({name})")),
            "the partner saw {eip}: {all}"
        );
        assert!(
            stdout.contains(&format!("egress IP {eip} (matches")),
            "the check in {name}'s subnet: {all}"
        );
    }
    assert!(
        stdout.contains("Elastic IPs to give the partner for its allowlist: 203.0.113.10 (eip-one), 203.0.113.20 (eip-two)"),
        "{all}"
    );
}
