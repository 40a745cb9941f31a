//! The S3 side's decisions without S3: an announced length, S3's checksum, the first body's freshness.

mod announced_len {
    use super::super::*;

    #[test]
    fn only_a_full_object_sha256_is_a_digest_of_the_file() {
        // SHA-256("hello world\n"), as S3 and moto send it.
        let b64 = "qUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc=";
        let hex = "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447";
        assert_eq!(full_object_sha256(Some(b64), None).as_deref(), Some(hex));
        let full = ChecksumType::FullObject;
        assert_eq!(
            full_object_sha256(Some(b64), Some(&full)).as_deref(),
            Some(hex)
        );
        let composite = ChecksumType::Composite;
        assert_eq!(full_object_sha256(Some(b64), Some(&composite)), None);
        assert_eq!(full_object_sha256(Some(&format!("{b64}-3")), None), None);
        assert_eq!(full_object_sha256(Some("not base64!"), None), None);
        assert_eq!(full_object_sha256(Some("AAAA"), None), None, "not 32 bytes");
        assert_eq!(full_object_sha256(None, Some(&full)), None);
    }

    /// Guards against a response without Content-Length becoming a 0-byte delivered file.
    #[test]
    fn an_object_without_a_length_fails_as_transient_instead_of_being_empty() {
        let obj = ObjectRef {
            bucket: "b".into(),
            key: "k.csv".into(),
            version_id: None,
            etag: None,
            size: None,
        };
        assert_eq!(announced_len(&obj, Some(0)).unwrap(), 0);
        assert_eq!(announced_len(&obj, Some(4096)).unwrap(), 4096);
        for missing in [None, Some(-1)] {
            let err = announced_len(&obj, missing).unwrap_err();
            assert!(err.is_transient(), "{err}");
            assert!(
                err.to_string().contains("s3://b/k.csv")
                    && err.to_string().contains("no object length"),
                "{err}"
            );
        }
    }
}

mod ranges {
    use super::super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    /// One object in memory, counting ranged GETs.
    struct OneObject {
        bytes: Vec<u8>,
        ranged: AtomicUsize,
    }

    impl ObjectStore for OneObject {
        async fn tags(&self, _: &ObjectRef) -> Result<Vec<(String, String)>, StoreError> {
            Ok(Vec::new())
        }
        async fn put_tags(
            &self,
            _: &ObjectRef,
            _: Vec<(String, String)>,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn open(&self, _: &ObjectRef) -> Result<Opened, StoreError> {
            Ok(self.opened())
        }
        async fn open_range(
            &self,
            _: &ObjectRef,
            _: &str,
            range: Range<u64>,
        ) -> Result<Body, StoreError> {
            self.ranged.fetch_add(1, Ordering::SeqCst);
            let part = self.bytes[range.start as usize..range.end as usize].to_vec();
            Ok(Box::new(std::io::Cursor::new(part)))
        }
    }

    impl OneObject {
        fn opened(&self) -> Opened {
            Opened {
                body: Box::new(std::io::Cursor::new(self.bytes.clone())),
                len: self.bytes.len() as u64,
                etag: Some("e".into()),
                last_modified: None,
                sha256: None,
                tag_count: Some(0),
            }
        }
    }

    #[tokio::test]
    async fn the_first_stripe_reads_the_opened_body_only_while_it_is_fresh() {
        let store = OneObject {
            bytes: (0..100u8).collect(),
            ranged: AtomicUsize::new(0),
        };
        let obj = ObjectRef {
            bucket: "b".into(),
            key: "k".into(),
            version_id: None,
            etag: None,
            size: None,
        };
        for (fresh_for, ranged) in [(FIRST_BODY_FRESH, 0), (std::time::Duration::ZERO, 1)] {
            store.ranged.store(0, Ordering::SeqCst);
            let ranges = Ranges::new(&store, &obj, store.opened())
                .unwrap()
                .first_body_fresh_for(fresh_for);
            let mut read = Vec::new();
            ranges
                .open(0..40)
                .await
                .unwrap()
                .read_to_end(&mut read)
                .await
                .unwrap();
            assert_eq!(read, (0..40u8).collect::<Vec<_>>());
            assert_eq!(store.ranged.load(Ordering::SeqCst), ranged, "{fresh_for:?}");
        }
    }
}
