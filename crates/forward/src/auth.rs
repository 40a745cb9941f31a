//! Logging in: the partner's key, then its password, answered through `password` or
//! `keyboard-interactive` as the server allows, following the methods the server names after each
//! step (so `publickey,password` and `publickey,keyboard-interactive` two-factor logins work).
//!
//! Keyboard-interactive prompts are answered with `Password` only when they ask for a password; a
//! prompt for anything else (a one-time code, a new password) ends the login as a permanent error
//! naming the prompt, since no retry can answer it.

use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{MethodKind, MethodSet};

use crate::config::{Partner, Secret};
use crate::error::Error;
use crate::handshake::Pinned;

/// The methods we can use, in the order we try them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    PublicKey,
    Password,
    KeyboardInteractive,
}

impl Method {
    const ORDER: [Method; 3] = [
        Method::PublicKey,
        Method::Password,
        Method::KeyboardInteractive,
    ];

    fn name(self) -> &'static str {
        match self {
            Method::PublicKey => "publickey",
            Method::Password => "password",
            Method::KeyboardInteractive => "keyboard-interactive",
        }
    }

    fn kind(self) -> MethodKind {
        match self {
            Method::PublicKey => MethodKind::PublicKey,
            Method::Password => MethodKind::Password,
            Method::KeyboardInteractive => MethodKind::KeyboardInteractive,
        }
    }

    fn usable(self, partner: &Partner) -> bool {
        match self {
            Method::PublicKey => partner.private_key.is_some(),
            Method::Password | Method::KeyboardInteractive => partner.password.is_some(),
        }
    }
}

/// Most login requests per connection: OpenSSH allows 6 failures (`MaxAuthTries`).
const MAX_ATTEMPTS: usize = 6;
/// Most rounds of keyboard-interactive questions in one attempt.
const MAX_ROUNDS: usize = 8;

pub(crate) async fn authenticate(
    ssh: &mut client::Handle<Pinned>,
    partner: &Partner,
    addr: &str,
) -> Result<(), Error> {
    // Unknown until the server's first answer: then only what it names is tried. Before that,
    // keyboard-interactive waits for `password` to be refused (one round trip fewer for the
    // common password server).
    let mut allowed: Option<Vec<MethodKind>> = None;
    let mut done: Vec<Method> = Vec::new(); // partial successes: never repeated
    let mut failed: Vec<Method> = Vec::new(); // failed since the last partial success
    let mut tried: Vec<&'static str> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let next = Method::ORDER.into_iter().find(|m| {
            m.usable(partner)
                && !done.contains(m)
                && !failed.contains(m)
                && match &allowed {
                    // The same password is never tried twice: keyboard-interactive only where
                    // the server does not take `password` (the one it refused was wrong).
                    Some(allowed) => {
                        allowed.contains(&m.kind())
                            && !(*m == Method::KeyboardInteractive
                                && failed.contains(&Method::Password)
                                && allowed.contains(&MethodKind::Password))
                    }
                    None => *m != Method::KeyboardInteractive,
                }
        });
        let Some(method) = next else { break };
        tried.push(method.name());
        match attempt(ssh, partner, method, addr).await? {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure {
                remaining_methods,
                partial_success,
            } => {
                allowed = Some(kinds(&remaining_methods));
                if partial_success {
                    done.push(method);
                    failed.clear();
                } else {
                    failed.push(method);
                }
            }
        }
    }
    Err(rejected(partner, addr, &tried, allowed.as_deref()))
}

fn kinds(set: &MethodSet) -> Vec<MethodKind> {
    set.iter().cloned().collect()
}

async fn attempt(
    ssh: &mut client::Handle<Pinned>,
    partner: &Partner,
    method: Method,
    addr: &str,
) -> Result<AuthResult, Error> {
    let ssh_err = |source| ssh_error(addr, source);
    match (method, &partner.private_key, &partner.password) {
        (Method::PublicKey, Some(key), _) => {
            let hash = if key.algorithm().is_rsa() {
                ssh.best_supported_rsa_hash()
                    .await
                    .map_err(ssh_err)?
                    .flatten()
            } else {
                None
            };
            ssh.authenticate_publickey(
                &partner.username,
                PrivateKeyWithHashAlg::new(key.clone(), hash),
            )
            .await
            .map_err(ssh_err)
        }
        (Method::Password, _, Some(password)) => ssh
            .authenticate_password(&partner.username, password.expose())
            .await
            .map_err(ssh_err),
        (Method::KeyboardInteractive, _, Some(password)) => {
            keyboard_interactive(ssh, partner, password, addr).await
        }
        _ => unreachable!("only usable methods are attempted"),
    }
}

/// One keyboard-interactive exchange: each round of prompts answered, the password at most once.
async fn keyboard_interactive(
    ssh: &mut client::Handle<Pinned>,
    partner: &Partner,
    password: &Secret,
    addr: &str,
) -> Result<AuthResult, Error> {
    let ssh_err = |source| ssh_error(addr, source);
    let mut reply = ssh
        .authenticate_keyboard_interactive_start(&partner.username, None)
        .await
        .map_err(ssh_err)?;
    let mut answered = false;
    for _ in 0..MAX_ROUNDS {
        let prompts = match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(AuthResult::Success),
            KeyboardInteractiveAuthResponse::Failure {
                remaining_methods,
                partial_success,
            } => {
                return Ok(AuthResult::Failure {
                    remaining_methods,
                    partial_success,
                })
            }
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => prompts,
        };
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in &prompts {
            match classify(&prompt.prompt, &partner.username, prompt.echo) {
                Prompt::Password if !answered => answers.push(password.expose().to_owned()),
                // Asked again in the same exchange: the password was wrong. A plain rejection.
                Prompt::Password => {
                    return Ok(AuthResult::Failure {
                        remaining_methods: MethodSet::empty(),
                        partial_success: false,
                    })
                }
                Prompt::Other => {
                    return Err(Error::AuthPrompt {
                        addr: addr.to_owned(),
                        username: partner.username.clone(),
                        prompt: printable(&prompt.prompt),
                    })
                }
            }
        }
        answered |= !answers.is_empty();
        reply = ssh
            .authenticate_keyboard_interactive_respond(answers)
            .await
            .map_err(ssh_err)?;
    }
    Ok(AuthResult::Failure {
        remaining_methods: MethodSet::empty(),
        partial_success: false,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Prompt {
    /// Asks for the account's password: answered with `Password`.
    Password,
    /// Anything else: a one-time code, a new password, a question.
    Other,
}

/// Whether a keyboard-interactive prompt asks for the account's password. Words of one-time
/// codes and password changes win over "password" ("One-time password", "New password"); they are
/// looked for without the login name in the prompt ("Password for barcode@host:"), the password
/// words in the whole prompt (a login named "pass" must not hide them).
fn classify(prompt: &str, username: &str, echo: bool) -> Prompt {
    let whole = prompt.to_lowercase();
    let p = match username.is_empty() {
        true => whole.clone(),
        false => whole.replace(&username.to_lowercase(), " "),
    };
    let other = [
        "one-time",
        "one time",
        "otp",
        "verification",
        "passcode",
        "token",
        "code",
        "new ",
        "retype",
        "again",
        "expired",
        "change",
    ];
    let password = [
        "password",
        "passphrase",
        "pass phrase",
        "passwort",
        "mot de passe",
    ];
    if !echo && password.iter().any(|w| whole.contains(w)) && !other.iter().any(|w| p.contains(w)) {
        Prompt::Password
    } else {
        Prompt::Other
    }
}

/// The server's prompt for a message: control characters dropped, at most 120 characters.
fn printable(prompt: &str) -> String {
    prompt
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn ssh_error(addr: &str, source: russh::Error) -> Error {
    Error::Ssh {
        step: "authentication",
        addr: addr.to_owned(),
        source,
    }
}

/// The login was refused: what we tried, what the server would take, and what is missing.
fn rejected(
    partner: &Partner,
    addr: &str,
    tried: &[&str],
    allowed: Option<&[MethodKind]>,
) -> Error {
    let allowed = allowed.unwrap_or_default();
    let offered: Vec<&str> = allowed.iter().map(|k| k.into()).collect();
    let wants = |m: Method| allowed.contains(&m.kind());
    let missing = if wants(Method::PublicKey) && partner.private_key.is_none() {
        "; the server takes a key: set PrivateKey"
    } else if (wants(Method::Password) || wants(Method::KeyboardInteractive))
        && partner.password.is_none()
    {
        "; the server takes a password: set Password"
    } else {
        ""
    };
    Error::AuthRejected {
        addr: addr.to_owned(),
        username: partner.username.clone(),
        methods: tried.join(", "),
        detail: match offered.is_empty() {
            true => String::new(),
            false => format!("; the server accepts {}{missing}", offered.join(", ")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_password_prompts_get_the_password() {
        for p in [
            "Password: ",
            "Password for acme@sftp: ",
            "Enter passphrase:",
        ] {
            assert_eq!(classify(p, "acme", false), Prompt::Password, "{p}");
        }
        for p in [
            "One-time password (OATH) for `acme': ",
            "Verification code: ",
            "Enter PASSCODE:",
            "New password: ",
            "Retype new password: ",
            "Your password has expired. Change it now:",
            "Username: ",
        ] {
            assert_eq!(classify(p, "acme", false), Prompt::Other, "{p}");
        }
        // An echoed prompt is never a password prompt.
        assert_eq!(classify("Password: ", "acme", true), Prompt::Other);
        // The login name is neither a code word nor able to hide the password word.
        assert_eq!(
            classify("Password for barcode@sftp: ", "barcode", false),
            Prompt::Password
        );
        assert_eq!(classify("Password: ", "pass", false), Prompt::Password);
        assert_eq!(classify("Password: ", "word", false), Prompt::Password);
    }

    #[test]
    fn a_prompt_is_shown_without_control_characters() {
        assert_eq!(printable("Code\u{1b}[31m:\r\n"), "Code[31m:");
    }
}
