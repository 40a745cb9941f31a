//! The AWS emulator for the tests: `moto_server` (from the `moto[server]` package, installed by
//! `tests/run` into a venv) on 127.0.0.1 (or [`moto_on`] an address of the caller's), started once per test binary and stopped by a watchdog
//! when the test process ends, like sshd.
//!
//! In-process tests point the AWS SDK at [`Moto::endpoint`]; subprocesses (the compiled
//! `bootstrap`, the CLI) get [`Moto::env`].

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Where `tests/run` installs the venv; override with `SFTP_FORWARD_VENV`.
const DEFAULT_VENV: &str = "/var/tmp/sftp-forward-venv";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const PORT_ATTEMPTS: u32 = 5;

/// The region every test uses.
pub const REGION: &str = "us-east-1";
/// moto accepts any credentials; these are the conventional ones.
pub const ACCESS_KEY_ID: &str = "testing";
/// See [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "testing";

/// A running moto server.
pub struct Moto {
    /// `http://ADDRESS:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// The address it listens on (127.0.0.1 unless started with [`moto_on`]).
    pub host: Ipv4Addr,
    /// Its port.
    pub port: u16,
    pid: u32,
    // Held open for the life of the process; its closing tells the watchdog to stop moto.
    _watchdog: Mutex<ChildStdin>,
}

impl Moto {
    /// Environment for a subprocess that should talk to this moto with the standard AWS SDK
    /// settings (no custom flags): endpoint, region, static credentials, no IMDS lookups.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        env_for(&self.endpoint)
    }

    /// The standard AWS SDK config pointed at this server (endpoint, region, static keys).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_for(&self.endpoint, "testkit-moto").await
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// The standard AWS SDK environment for a subprocess that talks to `endpoint` (moto, or a proxy
/// in front of it): endpoint, region, static credentials, no IMDS lookups.
pub(crate) fn env_for(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// The standard AWS SDK config for `endpoint` (moto, or a proxy in front of it): region, the
/// static test keys (named `provider`), no other settings.
pub(crate) async fn sdk_config_for(
    endpoint: &str,
    provider: &'static str,
) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            provider,
        ))
        .load()
        .await
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The moto server of this test binary, started on 127.0.0.1 on first use (or the one
/// [`moto_on`] started).
///
/// Panics with a clear message (and moto's output) if it is not installed or cannot start.
pub fn moto() -> &'static Moto {
    match MOTO.get_or_init(|| start(Ipv4Addr::LOCALHOST)) {
        Ok(m) => m,
        Err(e) => panic!("testkit: cannot start moto_server: {e}"),
    }
}

/// Like [`moto`], but listening on `host` (for example the egress testbed's platform address,
/// which its network namespaces can reach). Call it before anything calls [`moto`]; panics if
/// this binary's moto already runs on another address.
pub fn moto_on(host: Ipv4Addr) -> &'static Moto {
    match MOTO.get_or_init(|| start(host)) {
        Ok(m) if m.host == host => m,
        Ok(m) => panic!("testkit: moto already runs on {}, not {host}", m.host),
        Err(e) => panic!("testkit: cannot start moto_server: {e}"),
    }
}

fn moto_bin() -> PathBuf {
    let venv = std::env::var_os("SFTP_FORWARD_VENV").unwrap_or_else(|| DEFAULT_VENV.into());
    PathBuf::from(venv).join("bin/moto_server")
}

fn start(host: Ipv4Addr) -> Result<Moto, String> {
    let bin = moto_bin();
    if !bin.exists() {
        return Err(format!(
            "{} is missing: run tests/run (it creates the venv with `pip install 'moto[server]'`)",
            bin.display()
        ));
    }
    let log_path =
        std::env::temp_dir().join(format!("sftp-forward-moto-{}.log", std::process::id()));
    for _ in 0..PORT_ATTEMPTS {
        let port = TcpListener::bind((host, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("bind {host}:0: {e}"))?
            .port();
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let mut child = Command::new(&bin)
            .args(["-H", &host.to_string(), "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let watchdog = spawn_watchdog(child.id())?;
        match wait_ready(&mut child, SocketAddr::from((host, port))) {
            Ok(()) => {
                return Ok(Moto {
                    endpoint: format!("http://{host}:{port}"),
                    host,
                    port,
                    pid: child.id(),
                    _watchdog: Mutex::new(watchdog),
                })
            }
            Err(Retry::NextPort) => continue,
            Err(Retry::Fail(why)) => {
                let out = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("{why}; its output:\n{out}"));
            }
        }
    }
    Err(format!(
        "{PORT_ATTEMPTS} ports in a row were taken before moto could bind them"
    ))
}

enum Retry {
    NextPort,
    Fail(String),
}

fn wait_ready(child: &mut Child, addr: SocketAddr) -> Result<(), Retry> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Most likely the port was taken between our bind and moto's.
            return if Instant::now() < deadline {
                Err(Retry::NextPort)
            } else {
                Err(Retry::Fail(format!("moto_server exited ({status})")))
            };
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Retry::Fail(format!(
                "moto_server did not listen on {addr} within {START_TIMEOUT:?}"
            )));
        }
        sleep(Duration::from_millis(50));
    }
}

/// A watchdog that kills `pid` when this process ends (see [`crate::watchdog`]).
fn spawn_watchdog(pid: u32) -> Result<ChildStdin, String> {
    let pid = pid.to_string();
    crate::watchdog(
        "trap '' INT HUP; read -r line; kill -TERM \"$1\"; sleep 1; kill -KILL \"$1\" 2>/dev/null",
        &[pid.as_ref()],
    )
}
