//! A layer written in any IO mode x engine is byte-identical to the same layer written in every other,
//! and every context reads every copy.

mod common;

use common::{all_contexts, delta_workload, image_workload};
use layer_writers::{DeltaLayerReader, DeltaLayerWriter, ImageLayerReader, ImageLayerWriter, Lsn};

#[tokio::test]
async fn layers_are_identical_across_modes_and_engines() {
    let contexts = all_contexts();
    assert!(
        contexts.len() >= 3,
        "at least the std-fs engine runs everywhere"
    );
    let dir = tempfile::tempdir().unwrap();
    let deltas = delta_workload(21, 120);
    let images = image_workload(22, 120);

    let mut files = Vec::new();
    for (i, (label, ctx)) in contexts.iter().enumerate() {
        let mut d = DeltaLayerWriter::new(ctx, dir.path(), &format!("delta-{i}"))
            .await
            .unwrap();
        for ((k, l), (wi, v)) in &deltas {
            d.put_value(*k, *l, *wi, v).await.unwrap();
        }
        let d = d.finish().await.unwrap();
        let mut im = ImageLayerWriter::new(ctx, dir.path(), &format!("image-{i}"), Lsn(77))
            .await
            .unwrap();
        for (k, v) in &images {
            im.put_image(*k, v).await.unwrap();
        }
        let im = im.finish().await.unwrap();
        files.push((
            label.clone(),
            std::fs::read(&d.path).unwrap(),
            std::fs::read(&im.path).unwrap(),
            d.path,
            im.path,
        ));
    }
    let (first_label, first_delta, first_image, _, _) = &files[0];
    for (label, delta, image, _, _) in &files[1..] {
        assert!(
            delta == first_delta,
            "delta layer from {label} differs from {first_label}"
        );
        assert!(
            image == first_image,
            "image layer from {label} differs from {first_label}"
        );
    }

    let expected_deltas: Vec<_> = deltas
        .iter()
        .map(|((k, l), (wi, v))| (*k, *l, *wi, v.clone()))
        .collect();
    let expected_images: Vec<_> = images.clone().into_iter().collect();
    for (reader_label, ctx) in &contexts {
        for (writer_label, _, _, delta_path, image_path) in &files {
            let d = DeltaLayerReader::open(ctx, delta_path).await.unwrap();
            assert!(
                d.scan().await.unwrap() == expected_deltas,
                "{reader_label} reading the delta layer of {writer_label}"
            );
            let im = ImageLayerReader::open(ctx, image_path).await.unwrap();
            assert!(
                im.scan().await.unwrap() == expected_images,
                "{reader_label} reading the image layer of {writer_label}"
            );
        }
    }
}
