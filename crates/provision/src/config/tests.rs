//! The config's checks: defaults, bad values named by field, flags over the file.

use super::*;

fn spec(raw: RawConfig) -> Result<Spec> {
    Spec::from_raw(raw, "bootstrap.zip".into())
}

#[test]
fn defaults_derive_names_from_the_stack() {
    let s = spec(RawConfig {
        stack: Some("acme".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.bucket, "");
    let s = s.for_account("123456789012", "eu-west-1").unwrap();
    assert_eq!(s.bucket, "acme-123456789012-eu-west-1");
    assert_eq!(s.role_name("eu-west-1"), "acme-forward-eu-west-1");
    assert_eq!(s.secret, "sftp-forward/acme/partner");
    assert_eq!(s.function_name(), "acme-forward");
    assert_eq!(s.max_concurrency, 2);
}

#[test]
fn same_az_twice_is_rejected() {
    let raw = RawConfig {
        availability_zones: Some(vec!["us-east-1a".into(), "us-east-1a".into()]),
        ..Default::default()
    };
    let err = spec(raw).unwrap_err().to_string();
    assert!(
        err.contains("availability_zones") && err.contains("twice"),
        "{err}"
    );
}

#[test]
fn partner_address_is_an_ipv4_or_hostname() {
    assert_eq!(
        parse_partner("198.51.100.7").unwrap(),
        Partner::Ip([198, 51, 100, 7].into())
    );
    assert_eq!(
        parse_partner("SFTP.Example.com").unwrap(),
        Partner::Host("sftp.example.com".into())
    );
    for bad in [
        "not a host",
        "sftp_partner.example.com",
        "-x.example",
        "1.2.3.999",
        "::1",
        "",
    ] {
        assert!(parse_partner(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn architecture_is_x86_64_or_arm64_with_its_own_default_zip() {
    let s = spec(RawConfig::default()).unwrap();
    assert_eq!(
        (s.architecture, s.zip),
        (Arch::X86_64, "bootstrap.zip".into())
    );
    let arm = |a: &str| {
        spec(RawConfig {
            architecture: Some(a.into()),
            ..Default::default()
        })
    };
    let s = arm("arm64").unwrap();
    assert_eq!(
        (s.architecture, s.zip),
        (Arch::Arm64, "bootstrap-arm64.zip".into())
    );
    assert_eq!(arm("x86_64").unwrap().architecture, Arch::X86_64);
    for bad in ["aarch64", "ARM64", "x86-64", ""] {
        let err = arm(bad).unwrap_err().to_string();
        assert!(
            err.contains("architecture") && err.contains("x86_64 or arm64"),
            "{bad:?}: {err}"
        );
    }
    // A zip the operator names is used as given.
    let s = spec(RawConfig {
        architecture: Some("arm64".into()),
        zip: Some("/z/mine.zip".into()),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.zip, PathBuf::from("/z/mine.zip"));
}

#[test]
fn flags_override_the_file() {
    let file = RawConfig {
        bucket: Some("from-file".into()),
        max_concurrency: Some(4),
        ..Default::default()
    };
    let flags = RawConfig {
        bucket: Some("from-flag".into()),
        ..Default::default()
    };
    let merged = file.merge(flags);
    assert_eq!(merged.bucket.as_deref(), Some("from-flag"));
    assert_eq!(merged.max_concurrency, Some(4));
}
