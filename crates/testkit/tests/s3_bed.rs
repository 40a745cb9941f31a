//! The benchmarks' S3 bed (testkit::s3_bed): the SDK reads objects through it byte-exactly, whole
//! and by range, from its local copy (not from moto), and a stale `If-Match` gets 412.

use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

/// `len` bytes that differ at every offset (a short repeating pattern would hide a wrong offset).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    testkit::noise(len, seed | 1)
}

async fn client() -> Client {
    let config = testkit::s3_bed().sdk_config().await;
    let s3 = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    Client::from_conf(s3)
}

async fn bucket(s3: &Client, name: &str) -> String {
    let name = format!("{name}-{}", std::process::id());
    s3.create_bucket().bucket(&name).send().await.unwrap();
    name
}

async fn put(s3: &Client, bucket: &str, key: &str, data: &[u8]) -> PutObjectOutput {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"))
}

/// GET of `range` (or all): the body and the `Content-Range` answered.
async fn get(
    s3: &Client,
    bucket: &str,
    key: &str,
    range: Option<&str>,
) -> (Vec<u8>, Option<String>) {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range.map(str::to_owned))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key} {range:?}: {e:?}"));
    let content_range = out.content_range().map(str::to_owned);
    let body = out.body.collect().await.unwrap().into_bytes().to_vec();
    (body, content_range)
}

#[tokio::test]
async fn sdk_reads_whole_and_ranged_objects_byte_exactly_from_the_local_copy() {
    let s3 = client().await;
    let bucket = bucket(&s3, "bed-ranges").await;
    let key = "in/a b+c.bin"; // encoded in the path: the copy must be found by the decoded key
    let data = bytes(3 * 1024 * 1024 + 7, 42);
    let put = put(&s3, &bucket, key, &data).await;

    let (whole, _) = get(&s3, &bucket, key, None).await;
    assert!(whole == data, "the whole object differs");
    let len = data.len();
    for (range, first, last) in [
        ("bytes=0-0", 0, 0),
        ("bytes=100-1048675", 100, 1048675),
        ("bytes=2097152-", 2097152, len - 1),
        ("bytes=-1000", len - 1000, len - 1),
        ("bytes=3145000-99999999", 3145000, len - 1),
    ] {
        let (body, content_range) = get(&s3, &bucket, key, Some(range)).await;
        assert!(body == data[first..=last], "{range}: the bytes differ");
        assert_eq!(
            content_range.as_deref(),
            Some(format!("bytes {first}-{last}/{len}").as_str()),
            "{range}"
        );
    }
    // The stripes' way: a range under the ETag of the first answer.
    let out = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .range("bytes=10-19")
        .if_match(put.e_tag().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.e_tag(), put.e_tag());
    assert_eq!(out.content_length(), Some(10));
    assert!(out.last_modified().is_some());
    let body = out.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], &data[10..20]);
    assert_eq!(
        testkit::s3_bed().served_locally(&bucket),
        7,
        "every GET above is served from the bed's copy, none by moto"
    );

    let past_end = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .range(format!("bytes={len}-"))
        .send()
        .await
        .expect_err("a range past the end");
    assert_eq!(
        past_end.raw_response().map(|r| r.status().as_u16()),
        Some(416)
    );
    let missing = s3
        .get_object()
        .bucket(&bucket)
        .key("in/missing")
        .send()
        .await
        .expect_err("no such key");
    assert!(missing.into_service_error().is_no_such_key());
}

#[tokio::test]
async fn a_stale_if_match_gets_412_and_a_new_version_is_read_anew() {
    let s3 = client().await;
    let bucket = bucket(&s3, "bed-versions").await;
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let key = "in/versioned.bin";
    let (old, new) = (bytes(200_000, 1), bytes(300_000, 2));
    let old_put = put(&s3, &bucket, key, &old).await;
    let new_put = put(&s3, &bucket, key, &new).await;

    let stale = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .range("bytes=0-99")
        .if_match(old_put.e_tag().unwrap())
        .send()
        .await
        .expect_err("the ETag of a replaced version");
    assert_eq!(stale.raw_response().map(|r| r.status().as_u16()), Some(412));
    assert_eq!(
        stale.into_service_error().meta().code(),
        Some("PreconditionFailed")
    );

    let current = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(current.e_tag(), new_put.e_tag());
    assert_eq!(current.version_id(), new_put.version_id());
    let body = current.body.collect().await.unwrap().into_bytes();
    assert!(body[..] == new[..], "the current version's bytes differ");

    let first = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .version_id(old_put.version_id().unwrap())
        .range("bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(first.version_id(), old_put.version_id());
    let body = first.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], &old[1000..2000]);
}
