//! Any bytes as an invocation payload or an SQS message body: decoding never panics, and every key
//! it yields maps (with the default route) to a safe remote path or to an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sftp_forward_event::{decode, decode_message_body, Invocation, Work};

#[path = "safe.rs"]
mod safe;

fn check(works: &[Work]) {
    for work in works {
        if let Work::Forward(obj) = work {
            if let Ok(path) = forward::Route::default().map(&obj.key) {
                safe::assert_safe(&path);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(works) = decode_message_body(text) {
        check(&works);
    }
    let Ok(payload) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    if let Ok(Invocation::Sqs(items) | Invocation::Direct(items)) = decode(&payload) {
        for item in items {
            if let Ok(works) = item.work {
                check(&works);
            }
        }
    }
});
