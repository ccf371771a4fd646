//! What the remote tier trusts and checks: a local file that changed size since it was admitted is not
//! uploaded, and a local file of the right size is taken as the uploaded layer only if its checksum
//! matches the index.

mod common;

use common::Setup;
use remote_storage::RemoteError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_grew_or_shrank_since_admission_is_not_uploaded() {
    common::each_backend(
        Setup::new,
        "resized",
        async |backend, (ctx, _store, remote, dir)| {
            let path = common::write_layer(&ctx, dir.path(), "layer-r", 3, 300).await;
            let size = std::fs::metadata(&path).unwrap().len();
            let tier = common::open_tier(&ctx, dir.path(), &remote, 1 << 30).await;

            for new_size in [size + 4096, size - 100] {
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(new_size)
                    .unwrap();
                let err = tier.upload("layer-r").await.unwrap_err();
                match &err {
                    RemoteError::UploadSizeMismatch {
                        layer,
                        path: p,
                        expected,
                        actual,
                        ..
                    } => {
                        assert_eq!(
                            (layer.as_str(), p, *expected, *actual),
                            ("layer-r", &path, size, new_size)
                        );
                    }
                    other => panic!("{backend:?}: {other}"),
                }
                let msg = err.to_string();
                assert!(
                    msg.contains(&path.display().to_string())
                        && msg.contains(&size.to_string())
                        && msg.contains(&new_size.to_string()),
                    "{msg}"
                );
                assert!(!remote
                    .load_index()
                    .await
                    .unwrap()
                    .layers
                    .contains_key("layer-r"));
                assert!(!tier.is_uploaded("layer-r"));
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_local_file_of_the_right_size_is_downloaded_again() {
    common::each_backend(
        Setup::new,
        "corrupt-local",
        async |backend, (ctx, _store, remote, dir)| {
            let path = common::write_layer(&ctx, dir.path(), "layer-c", 4, 2000).await;
            let tier = common::open_tier(&ctx, dir.path(), &remote, 1 << 30).await;
            tier.upload("layer-c").await.unwrap();
            drop(tier);

            // One flipped bit in the values, the size unchanged.
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();

            let tier = common::open_tier(&ctx, dir.path(), &remote, 1 << 30).await;
            assert!(
                !tier.is_resident("layer-c"),
                "{backend:?}: the corrupt file is not trusted"
            );
            assert!(tier.is_uploaded("layer-c"));
            assert_eq!(tier.stats().corrupt_removed, 1);
            let (_h, reader) = tier.open_delta("layer-c").await.unwrap();
            common::verify_layer(&reader, 4, 2000).await;
            assert_eq!(tier.stats().downloads, 1);

            // A good file is trusted as it is: no download.
            drop((_h, reader));
            let tier = common::open_tier(&ctx, dir.path(), &remote, 1 << 30).await;
            assert!(tier.is_resident("layer-c") && tier.is_uploaded("layer-c"));
            assert_eq!(tier.stats().corrupt_removed, 0);
            let (_h, reader) = tier.open_delta("layer-c").await.unwrap();
            common::verify_layer(&reader, 4, 2000).await;
            assert_eq!(tier.stats().downloads, 0);
        },
    )
    .await;
}
