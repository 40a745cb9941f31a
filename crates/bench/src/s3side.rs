//! The S3 side of the cases that read from S3 (2, 6, 7, 8): testkit's S3 bed in front of moto
//! (GetObject and its ranges served from a local copy, as cheap as S3's; everything else, and
//! Secrets Manager, passed to moto), one bucket, the objects put once per harness run, one partner
//! secret per port; and the two contenders that read from it: the Lambda's own path
//! (`bench child forward-s3`) and `rclone copy s3:…`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use aws_sdk_s3::primitives::ByteStream;
use testkit::S3Bed;

use crate::bed::Bed;
use crate::cases::Contender;

/// The bucket every case reads from.
pub const BUCKET: &str = "sftp-forward-bench";

/// The bed, its bucket and what was put into it.
pub struct S3Side<'rt> {
    pub bed: &'static S3Bed,
    rt: &'rt tokio::runtime::Runtime,
    config: aws_config::SdkConfig,
    /// Keys put so far.
    objects: RefCell<HashSet<String>>,
    /// Port → the secret holding the partner JSON for that port.
    secrets: RefCell<HashMap<u16, String>>,
}

impl<'rt> S3Side<'rt> {
    /// Starts moto and the S3 bed in front of it and creates the bucket.
    pub fn new(rt: &'rt tokio::runtime::Runtime) -> anyhow::Result<S3Side<'rt>> {
        let bed = testkit::s3_bed();
        let config = rt.block_on(bed.sdk_config());
        rt.block_on(s3(&config).create_bucket().bucket(BUCKET).send())
            .context("create the bucket on the S3 bed")?;
        Ok(S3Side {
            bed,
            rt,
            config,
            objects: RefCell::default(),
            secrets: RefCell::default(),
        })
    }

    /// Puts `file` as `key` (once per run), then reads its first byte through the bed so that
    /// the bed's local copy exists before anything is timed.
    pub fn object(&self, file: &Path, key: &str) -> anyhow::Result<()> {
        if self.objects.borrow().contains(key) {
            return Ok(());
        }
        let s3 = s3(&self.config);
        self.rt
            .block_on(async {
                let body = ByteStream::from_path(file).await?;
                s3.put_object()
                    .bucket(BUCKET)
                    .key(key)
                    .body(body)
                    .send()
                    .await?;
                s3.get_object()
                    .bucket(BUCKET)
                    .key(key)
                    .range("bytes=0-0")
                    .send()
                    .await?;
                anyhow::Ok(())
            })
            .with_context(|| format!("put {} as s3://{BUCKET}/{key}", file.display()))?;
        self.objects.borrow_mut().insert(key.to_owned());
        Ok(())
    }

    /// Puts `count` objects of `data` under `prefix` (`{prefix}f0000.bin`, …), 16 at a time.
    pub fn small_objects(&self, prefix: &str, count: usize, data: &[u8]) -> anyhow::Result<()> {
        let s3 = s3(&self.config);
        self.rt
            .block_on(async {
                let keys: Vec<String> = (0..count).map(|i| small_key(prefix, i)).collect();
                for chunk in keys.chunks(16) {
                    let mut puts = tokio::task::JoinSet::new();
                    for key in chunk {
                        let put = s3
                            .put_object()
                            .bucket(BUCKET)
                            .key(key)
                            .body(data.to_vec().into());
                        puts.spawn(put.send());
                    }
                    while let Some(done) = puts.join_next().await {
                        done??;
                    }
                }
                anyhow::Ok(())
            })
            .with_context(|| format!("put {count} objects under s3://{BUCKET}/{prefix}"))
    }

    /// The secret holding the partner JSON for `port` (sshd's or a delay proxy's).
    pub fn secret(&self, bed: &Bed, port: u16) -> anyhow::Result<String> {
        if let Some(id) = self.secrets.borrow().get(&port) {
            return Ok(id.clone());
        }
        let id = format!("bench-partner-{}-{port}", std::process::id());
        let mut partner = bed.sshd.partner_json(&bed.remote_dir);
        partner["Port"] = port.into();
        self.rt
            .block_on(
                aws_sdk_secretsmanager::Client::new(&self.config)
                    .create_secret()
                    .name(&id)
                    .secret_string(partner.to_string())
                    .send(),
            )
            .context("create the partner secret")?;
        self.secrets.borrow_mut().insert(port, id.clone());
        Ok(id)
    }

    /// Our child process on the Lambda's own path for `key` to the partner on `port`, with
    /// `SFTP_FORWARD_PARALLELISM=k` if given; `confine` may add a CPU quota to its command.
    pub fn lambda_path<'a>(
        &'a self,
        bed: &'a Bed,
        port: u16,
        key: &'a str,
        k: Option<usize>,
        label: impl Into<String>,
        confine: impl Fn(&mut std::process::Command) + 'a,
    ) -> anyhow::Result<Contender<'a>> {
        let secret = self.secret(bed, port)?;
        Ok(Contender::new(label, move || {
            let mut cmd = bed.ours("forward-s3");
            cmd.args([BUCKET, key, "ours.bin"])
                .envs(self.bed.env())
                .env(sftp_forward_core::env::SECRET_ID, &secret);
            if let Some(k) = k {
                cmd.env(sftp_forward_core::env::PARALLELISM, k.to_string());
            }
            confine(&mut cmd);
            Ok(cmd.into())
        }))
    }

    /// `rclone copy s3:BUCKET/<source()>` (a key or a prefix, asked for each run) to the partner
    /// on `port`: its s3 backend on the bed (path style, `AWS_CA_BUNDLE` unset by
    /// [`Bed::rclone_copy`]).
    pub fn rclone<'a>(
        &'a self,
        bed: &'a Bed,
        port: u16,
        source: impl Fn() -> String + 'a,
        label: impl Into<String>,
    ) -> Contender<'a> {
        Contender::new(label, move || {
            let source = format!("s3:{BUCKET}/{}", source());
            let mut cmd = bed.rclone_copy(port, &source, "rclone");
            let s3 = [
                ("TYPE", "s3".to_owned()),
                ("PROVIDER", "Other".to_owned()),
                ("ENV_AUTH", "false".to_owned()),
                ("ACCESS_KEY_ID", testkit::moto::ACCESS_KEY_ID.to_owned()),
                (
                    "SECRET_ACCESS_KEY",
                    testkit::moto::SECRET_ACCESS_KEY.to_owned(),
                ),
                ("REGION", testkit::moto::REGION.to_owned()),
                ("ENDPOINT", self.bed.endpoint.clone()),
                ("FORCE_PATH_STYLE", "true".to_owned()),
            ];
            for (k, v) in s3 {
                cmd.env(format!("RCLONE_CONFIG_S3_{k}"), v);
            }
            Ok(cmd.into())
        })
    }
}

/// The key of small object `i` under `prefix`.
pub fn small_key(prefix: &str, i: usize) -> String {
    format!("{prefix}f{i:04}.bin")
}

fn s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    sftp_forward_core::source::S3Store::client(config)
}
