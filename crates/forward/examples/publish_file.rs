//! Publish one local file with the forwarding core and print the rate; used to compare with
//! OpenSSH `sftp` until the CLI exists.
//!
//! ```sh
//! cargo run --release -p forward --example publish_file -- partner.json ./big.bin remote/name.bin
//! ```

use std::time::Instant;

use forward::{Connector, Overwrite, Partner, RemotePath, Tuning};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, local, remote] = args.as_slice() else {
        return Err("usage: publish_file PARTNER.json LOCAL_FILE REMOTE_PATH".into());
    };
    let partner = Partner::from_json(&std::fs::read_to_string(config)?)?;
    let file = tokio::fs::File::open(local).await?;
    let len = file.metadata().await?.len();
    let mut connector = Connector::new(partner, Tuning::default());
    connector.session().await?;
    let started = Instant::now();
    let done = connector
        .publish(
            file,
            Some(len),
            &RemotePath::parse(remote)?,
            Overwrite::Overwrite,
        )
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} bytes to {} in {secs:.2} s: {:.0} MB/s",
        done.bytes,
        done.remote_path,
        done.bytes as f64 / secs / 1e6
    );
    connector.close().await;
    Ok(())
}
