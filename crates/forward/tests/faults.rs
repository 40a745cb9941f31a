//! Faults that disturb the shared sshd: this binary has its own server, so killing its sessions
//! cannot break the tests of another binary.

mod util;

use std::time::Duration;

use forward::Overwrite;
use testkit::{scratch_dir, sshd};
use util::*;

#[tokio::test]
async fn sshd_killed_mid_transfer_is_transient_and_leaves_no_final_file() {
    let s = sshd();
    let (local, remote) = scratch_dir("killed");
    let mut c = connector(&partner_json(&remote));
    let source = Trickle {
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        pause: Duration::from_millis(5),
    };
    let victim = path("victim.bin");
    let upload = c.publish(source, Some(1 << 30), &victim, Overwrite::Overwrite);
    let killer = async {
        // Wait until the temporary file has bytes, then kill the server side of the connection.
        for _ in 0..500 {
            let growing = files_under(&local).iter().any(|f| {
                f.ends_with(".part")
                    && std::fs::metadata(local.join(f))
                        .map(|m| m.len() > 0)
                        .unwrap_or(false)
            });
            if growing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s.kill_sessions();
    };
    let (result, ()) = tokio::join!(upload, killer);
    let err = result.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        !local.join("victim.bin").exists(),
        "no file under the final name"
    );

    assert!(
        files_under(&local).iter().any(|f| f.ends_with(".part")),
        "the broken connection could not remove its temporary file"
    );

    // The connector notices the dead connection and opens a new one, which removes the
    // temporary file the broken one left.
    publish_bytes(&mut c, "after.txt", b"reconnected")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(local.join("after.txt")).unwrap(),
        b"reconnected"
    );
    assert_eq!(c.connections_opened(), 2);
    assert_eq!(files_under(&local), ["after.txt"], "no temporary file left");
}
