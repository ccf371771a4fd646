//! An [`object_store::ObjectStore`] and [`object_store::multipart::MultipartStore`] for local disks, on
//! [`VirtualFile`](virtual_file::VirtualFile): what dataframe and table-format writers (DataFusion, Lance,
//! Delta, Iceberg) plug in where they would use `object_store`'s `LocalFileSystem`, with the IO mode,
//! engine, page cache and memory budget of an [`IoContext`](virtual_file::IoContext).
//!
//! - Writes go to a temp file next to the object and are published by rename after `fdatasync`, with the
//!   directory synced: no reader ever sees a partial object, and a put that returned survives a crash.
//! - Multipart parts are written as they come, several in flight, each at the offset it claims; in
//!   `direct-rw` with `O_DIRECT`, the unaligned edges of parts are joined per sector in memory.
//! - Reads stream aligned chunks with reads in flight ahead of the consumer; point reads of `O_DIRECT`
//!   files use the page cache. With the `std-fs` engine (whose syscalls block the calling thread) the
//!   IO of reads runs on tokio's blocking pool, so that many requests reach the device at once.
//! - Every transfer buffer is paid from the context's memory budget first (consumer `store-transfers`):
//!   a full budget makes writers and readers wait, it never grows a queue.
//!
//! # Example
//!
//! ```
//! use object_store::{path::Path, ObjectStore, ObjectStoreExt, WriteMultipart};
//! use virtual_file::IoContext;
//! use virtual_file_store::VirtualFileStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let dir = tempfile::tempdir()?;
//!     let store = VirtualFileStore::new(IoContext::from_env()?, dir.path())?;
//!
//!     let path = Path::from("tables/t1/part-0.parquet");
//!     store.put(&path, "hello".into()).await?;
//!     assert_eq!(store.get(&path).await?.bytes().await?, "hello");
//!
//!     // a large object as parts, several in flight
//!     let mut upload = WriteMultipart::new(store.put_multipart(&path).await?);
//!     for _ in 0..4 {
//!         upload.write(&[7u8; 1 << 20]);
//!     }
//!     upload.finish().await?;
//!     assert_eq!(store.head(&path).await?.size, 4 << 20);
//!     assert_eq!(store.get_range(&path, 10..14).await?.as_ref(), &[7u8; 4]);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! # }
//! ```
//!
//! # Layout
//!
//! Floors, lowest first: `error`, `location`, `object_meta`, `transfer_buffers`; `directories`,
//! `store_inner` (context, root, buffers); `upload_file` (temp file, parts, publish); `get` (reads);
//! `put`, `multipart_upload`, `multipart_store`, `list`, `manage`; `store` (the type and its trait
//! impls, which hand each call down).

#![warn(missing_docs)]

mod directories;
mod error;
mod get;
mod list;
mod location;
mod manage;
mod multipart_store;
mod multipart_upload;
mod object_meta;
mod put;
mod store;
mod store_inner;
mod transfer_buffers;
mod upload_file;

pub use error::{StoreError, STORE_NAME};
pub use get::{COALESCE_GAP, POINT_READ_MAX, READ_AHEAD};
pub use location::INTERNAL_MARK;
pub use object_meta::ATTRIBUTES_XATTR;
pub use store::VirtualFileStore;
pub use transfer_buffers::TRANSFER_CHUNK;
