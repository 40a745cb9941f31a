//! The partner matrix: one test per way real partners configure their OpenSSH server (host-key
//! types, algorithm lists, banners, session limits, two-factor and keyboard-interactive logins, old
//! servers), each against its own sshd in that style (`testkit::sshd_styled`), each publishing a
//! file and asserting the bytes on the partner's disk and what was negotiated; then one test per
//! error a partner's refusal produces. A failing test's name says which partner breaks.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use forward::{Error, Negotiated, Overwrite};
use serde_json::{json, Value};
use testkit::{sshd, sshd_styled, HostKey, Login, Sshd, Style};
use util::*;

/// A partner's server in `style`, with its upload directory for this test.
struct Partner {
    sshd: Sshd,
    local: PathBuf,
    /// The partner JSON: the ed25519 client key, the first host key pinned, publishing into `local`.
    json: Value,
}

fn partner(style: Style) -> Partner {
    let sshd = sshd_styled(&style).unwrap_or_else(|e| panic!("{e}"));
    let (local, remote) = sshd.scratch_dir("in");
    let json = sshd.partner_json(&remote);
    Partner { sshd, local, json }
}

impl Partner {
    /// Publishes `name` with `self.json` and asserts its bytes on the partner's disk; returns what
    /// the connection negotiated.
    async fn delivers(&self, name: &str) -> Negotiated {
        deliver(&self.sshd, &self.local, &self.json, name).await
    }

    /// Publishing `name` with `self.json` fails permanently and leaves nothing on the partner.
    async fn refuses(&self, name: &str) -> Error {
        let err = publish_bytes(&mut connector(&self.json), name, b"never lands")
            .await
            .expect_err("the partner refuses");
        assert!(!err.is_transient(), "permanent: {err}");
        assert!(files_under(&self.local).is_empty(), "{err}");
        err
    }

    /// sshd logged `event` for its user: `Accepted <method>`, or `Partial <method>` for the first
    /// factor of a two-factor login.
    fn assert_logged(&self, event: &str) {
        let line = format!("{event} for {} from ", self.sshd.user);
        let log = self.sshd.log();
        assert!(log.contains(&line), "no {line:?} in sshd's log:\n{log}");
    }
}

/// Publishes `name` with the partner JSON `json` and asserts its bytes (and nothing else) in
/// `local`; returns what the connection negotiated.
async fn deliver(sshd: &Sshd, local: &Path, json: &Value, name: &str) -> Negotiated {
    let body = format!("{name}: bytes for the partner\n");
    let mut c = connector(json);
    publish_bytes(&mut c, name, body.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", sshd.log()));
    assert_eq!(std::fs::read(local.join(name)).unwrap(), body.as_bytes());
    assert_eq!(files_under(local), [name], "no temporary file left");
    let negotiated = c.session().await.unwrap().negotiated().clone();
    c.close().await;
    negotiated
}

fn is_rsa_sha2(host_key_algorithm: &str) -> bool {
    ["rsa-sha2-512", "rsa-sha2-256"].contains(&host_key_algorithm)
}

#[tokio::test]
async fn rsa_only_host_key_with_an_rsa_pem_client_key() {
    let mut p = partner(Style::new().host_keys(&[HostKey::Rsa]));
    p.json["PrivateKey"] = json!(p.sshd.keys.rsa);
    let n = p.delivers("rsa-only").await;
    assert!(is_rsa_sha2(&n.host_key), "{n}");
    p.assert_logged("Accepted publickey");
}

#[tokio::test]
async fn ecdsa_p256_host_key_with_an_ecdsa_client_key() {
    let mut p = partner(Style::new().host_keys(&[HostKey::EcdsaP256]));
    p.json["PrivateKey"] = json!(p.sshd.keys.ecdsa);
    let n = p.delivers("ecdsa-p256").await;
    assert_eq!(n.host_key, "ecdsa-sha2-nistp256", "{n}");
}

#[tokio::test]
async fn ecdsa_p384_host_key() {
    let p = partner(Style::new().host_keys(&[HostKey::EcdsaP384]));
    let n = p.delivers("ecdsa-p384").await;
    assert_eq!(n.host_key, "ecdsa-sha2-nistp384", "{n}");
}

#[tokio::test]
async fn fips_server_with_the_fips_policy() {
    let mut p = partner(
        Style::new()
            .host_keys(&[HostKey::EcdsaP384])
            .directive("KexAlgorithms ecdh-sha2-nistp256,ecdh-sha2-nistp384")
            .directive("Ciphers aes256-ctr,aes128-ctr")
            .directive("MACs hmac-sha2-512"),
    );
    p.json["Algorithms"] = json!("fips");
    let n = p.delivers("fips").await;
    assert!(
        ["ecdh-sha2-nistp256", "ecdh-sha2-nistp384"].contains(&n.kex.as_str()),
        "{n}"
    );
    assert!(
        ["aes256-ctr", "aes128-ctr"].contains(&n.cipher.as_str()),
        "{n}"
    );
    assert_eq!(
        (n.host_key.as_str(), n.mac.as_str()),
        ("ecdsa-sha2-nistp384", "hmac-sha2-512")
    );
}

#[tokio::test]
async fn etm_macs_and_dh_group14() {
    let p = partner(
        Style::new()
            .directive("KexAlgorithms diffie-hellman-group14-sha256")
            .directive("MACs hmac-sha2-256-etm@openssh.com")
            .directive("Ciphers aes128-ctr"),
    );
    let n = p.delivers("etm-group14").await;
    assert_eq!(
        (n.kex.as_str(), n.cipher.as_str(), n.mac.as_str()),
        (
            "diffie-hellman-group14-sha256",
            "aes128-ctr",
            "hmac-sha2-256-etm@openssh.com"
        )
    );
}

#[tokio::test]
async fn banner_and_max_sessions_1() {
    let p = partner(
        Style::new()
            .banner("Authorized use only. All activity is monitored.\n")
            .directive("MaxSessions 1"),
    );
    p.delivers("banner").await;

    // A file large enough to be striped over several channels: the server grants one.
    const LEN: u64 = 16 * 1024 * 1024;
    let (_tmp, file, expected) = noise_file(14, LEN);
    let mut c = connector(&p.json);
    let source = forward::FileRanges::new(&file).await.unwrap();
    let done = c
        .publish_ranges(&source, &path("one-channel.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.bytes, LEN);
    let landed = std::fs::File::open(p.local.join("one-channel.bin")).unwrap();
    assert_eq!(sha256_of_reader(landed), expected);
    let port = c.session().await.unwrap().local_addr().port();
    assert_eq!(p.sshd.sessions_from_port(&p.sshd.log(), port), 1);
}

#[tokio::test]
async fn key_then_password_two_factor() {
    let mut p = partner(Style::new().directive("AuthenticationMethods publickey,password"));
    p.json["Password"] = json!(p.sshd.password);
    p.delivers("key-and-password").await;
    p.assert_logged("Partial publickey");
    p.assert_logged("Accepted password");
}

#[tokio::test]
async fn password_only_through_keyboard_interactive() {
    let mut p = partner(Style::new().login(Login::KeyboardInteractive));
    p.json.as_object_mut().unwrap().remove("PrivateKey");
    p.json["Password"] = json!(p.sshd.password);
    p.delivers("kbd-interactive").await;
    p.assert_logged("Accepted keyboard-interactive/pam");
}

#[tokio::test]
async fn key_then_keyboard_interactive_two_factor() {
    let mut p = partner(
        Style::new()
            .login(Login::KeyboardInteractive)
            .directive("AuthenticationMethods publickey,keyboard-interactive"),
    );
    p.json["Password"] = json!(p.sshd.password);
    p.delivers("key-and-kbd").await;
    p.assert_logged("Partial publickey");
    p.assert_logged("Accepted keyboard-interactive/pam");
}

#[tokio::test]
async fn ed25519_and_rsa_host_keys_with_only_the_rsa_key_pinned() {
    let mut p = partner(Style::new().host_keys(&[HostKey::Ed25519, HostKey::Rsa]));
    let rsa = p.sshd.host_key_lines[1].clone();
    assert!(rsa.starts_with("ssh-rsa "), "{rsa}");
    p.json["TrustedHostKeys"] = json!([rsa]);
    let n = p.delivers("pinned-rsa").await;
    assert!(is_rsa_sha2(&n.host_key), "{n}");
}

/// OpenSSH 9.2 configured as an old server: SHA-1 everywhere, one cipher.
fn old_server() -> Partner {
    let mut p = partner(
        Style::new()
            .host_keys(&[HostKey::Rsa])
            .directive("HostKeyAlgorithms ssh-rsa")
            .directive("KexAlgorithms diffie-hellman-group14-sha1")
            .directive("MACs hmac-sha1")
            .directive("Ciphers aes128-ctr")
            .directive("PubkeyAcceptedAlgorithms +ssh-rsa"),
    );
    p.json["PrivateKey"] = json!(p.sshd.keys.rsa);
    p
}

#[tokio::test]
async fn old_server_with_the_legacy_policy() {
    let mut p = old_server();
    p.json["Algorithms"] = json!("legacy");
    let n = p.delivers("legacy").await;
    assert_eq!(
        n,
        Negotiated {
            kex: "diffie-hellman-group14-sha1".into(),
            host_key: "ssh-rsa".into(),
            cipher: "aes128-ctr".into(),
            mac: "hmac-sha1".into(),
        }
    );
}

#[tokio::test]
async fn old_server_with_the_default_policy_fails_naming_the_legacy_policy() {
    let p = old_server();
    let msg = p.refuses("strict").await.to_string();
    assert!(msg.contains("no common"), "{msg}");
    assert!(msg.contains("\"Algorithms\": \"legacy\""), "{msg}");
}

#[tokio::test]
async fn cbc_cipher_with_an_explicit_legacy_cipher_list() {
    let mut p = partner(Style::new().directive("Ciphers aes256-cbc"));
    p.json["Algorithms"] = json!({"Policy": "legacy", "Ciphers": ["aes256-cbc"]});
    let n = p.delivers("cbc").await;
    assert_eq!(n.cipher, "aes256-cbc", "{n}");
}

/// `key` encrypted with `passphrase`, written in `format` (as `ssh-keygen -m` spells it: `PEM`),
/// by `ssh-keygen -p` on a copy.
fn encrypt_key(key: &str, passphrase: &str, format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("id");
    std::fs::write(&file, key).unwrap();
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&file, perms).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", passphrase, "-m", format, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read_to_string(&file).unwrap()
}

/// Passphrase-protected OpenSSH keys are covered by tests/sftp.rs; this adds the legacy encrypted
/// PEM form (`Proc-Type: 4,ENCRYPTED`) many partners' tooling still writes, on the shared sshd.
#[tokio::test]
async fn passphrase_protected_pem_rsa_key() {
    let s = sshd();
    let key = encrypt_key(&s.keys.rsa, &s.keys.passphrase, "PEM");
    assert!(key.contains("ENCRYPTED"), "{key}");
    let (local, remote) = s.scratch_dir("pem-encrypted");
    let mut json = s.partner_json(&remote);
    json["PrivateKey"] = json!(key);
    json["PrivateKeyPassphrase"] = json!(s.keys.passphrase);
    deliver(s, &local, &json, "pem-encrypted").await;
}

#[tokio::test]
async fn a_one_time_password_prompt_fails_permanently_saying_it_cannot_be_answered() {
    let mut p = partner(Style::new().login(Login::OneTimePassword));
    p.json.as_object_mut().unwrap().remove("PrivateKey");
    p.json["Password"] = json!(p.sshd.password);
    let msg = p.refuses("otp").await.to_string();
    assert!(msg.contains("One-time password"), "{msg}");
    assert!(msg.contains("cannot answer"), "{msg}");
    assert!(!msg.contains(&p.sshd.password), "{msg}");
}

#[tokio::test]
async fn a_pinned_ed25519_key_on_an_rsa_only_server_fails_naming_the_host_key_types() {
    let mut p = partner(Style::new().host_keys(&[HostKey::Rsa]));
    // A valid ed25519 key: the partner sent the key of another server, or of a type it dropped.
    p.json["TrustedHostKeys"] =
        json!(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]);
    let msg = p.refuses("unpinned").await.to_string();
    assert!(msg.contains("host key"), "{msg}");
    // Both sides' types, not just the fingerprint of a key we did not pin.
    assert!(msg.contains("ssh-ed25519"), "names the pinned type: {msg}");
    assert!(
        msg.contains("rsa-sha2-512"),
        "names what the server offers: {msg}"
    );
}

#[tokio::test]
async fn a_server_that_refuses_renames_is_named_once() {
    // `internal-sftp -P rename,posix-rename`: uploads may be created, never renamed.
    let p = partner(Style::new().sftp_denied("rename,posix-rename"));
    let msg = p.refuses("norename").await.to_string();
    assert!(msg.contains("rename"), "{msg}");
    assert!(
        msg.to_lowercase().matches("permission denied").count() <= 1,
        "{msg}"
    );
}

#[tokio::test]
async fn a_rejected_login_says_what_the_server_accepts_and_which_credential_is_missing() {
    // A key-only server, and a partner JSON with only a password.
    let mut p = partner(Style::new().directive("PasswordAuthentication no"));
    p.json.as_object_mut().unwrap().remove("PrivateKey");
    p.json["Password"] = json!(p.sshd.password);
    let err = p.refuses("key-only").await;
    assert!(matches!(err, Error::AuthRejected { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("the server accepts publickey"), "{msg}");
    assert!(msg.contains("set PrivateKey"), "{msg}");
    assert!(!msg.contains(&p.sshd.password), "{msg}");

    // A wrong password on a keyboard-interactive server: answered once, then refused (not a prompt
    // error, not a loop), having tried what the server offered.
    let mut p = partner(Style::new().login(Login::KeyboardInteractive));
    p.json.as_object_mut().unwrap().remove("PrivateKey");
    p.json["Password"] = json!("not-the-password");
    let err = p.refuses("wrong-password").await;
    assert!(matches!(err, Error::AuthRejected { .. }), "{err:?}");
    assert!(err.to_string().contains("keyboard-interactive"), "{err}");
}
