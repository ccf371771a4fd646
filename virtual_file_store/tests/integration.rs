//! `object_store`'s own integration suite (feature `integration`) against the store in every IO mode x
//! engine: the functions `LocalFileSystem` runs on itself, plus the multipart ones.

mod common;

use common::io_matrix;
use io_engine::IoEngineKind;
use object_store::integration::*;
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::IoMode;

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite(mode: IoMode, kind: IoEngineKind) {
    let (store, _dir) = common::store(mode, kind);
    put_get_delete_list(&store).await;
    list_with_offset_exclusivity(&store).await;
    get_opts(&store).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    rename_and_copy(&store).await;
    copy_if_not_exists(&store).await;
    copy_rename_nonexistent_object(&store).await;
    stream_get(&store).await;
    put_opts(&store, false).await;
    multipart(&store, &store).await;
    multipart_with_opts(&store, &store).await;
    multipart_out_of_order(&store).await;
    multipart_put_part_out_of_order(&store, &store).await;
}
