//! What the store says about a file: its [`ObjectMeta`] (size, modification time, and an e_tag derived
//! like `LocalFileSystem`'s from inode, mtime and size), and its [`Attributes`], kept in one extended
//! attribute ([`ATTRIBUTES_XATTR`]) set on the temp file before it is renamed into place, so that an
//! object and its attributes appear together.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path as FsPath;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{Attribute, AttributeValue, Attributes, ObjectMeta};

use crate::error::StoreError;

/// The extended attribute that holds an object's [`Attributes`].
pub const ATTRIBUTES_XATTR: &str = "user.virtual_file_store.attributes";

/// The facts about a file that its metadata is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileFacts {
    pub ino: u64,
    pub size: u64,
    pub modified: (i64, u32),
}

impl FileFacts {
    pub fn from_stat(stat: &io_engine::FileStat) -> Self {
        FileFacts {
            ino: stat.ino,
            size: stat.size,
            modified: stat.modified,
        }
    }

    pub fn from_std(md: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileFacts {
            ino: md.ino(),
            size: md.len(),
            modified: (md.mtime(), md.mtime_nsec() as u32),
        }
    }

    /// `"<inode hex>-<mtime in microseconds hex>-<size hex>"`, as `LocalFileSystem` derives it.
    pub fn e_tag(&self) -> String {
        let (sec, nsec) = self.modified;
        let micros = (sec.max(0) as u128) * 1_000_000 + u128::from(nsec / 1_000);
        format!("\"{:x}-{micros:x}-{:x}\"", self.ino, self.size)
    }

    pub fn last_modified(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.modified.0, self.modified.1).unwrap_or_default()
    }

    pub fn meta(&self, location: Path) -> ObjectMeta {
        ObjectMeta {
            location,
            last_modified: self.last_modified(),
            size: self.size,
            e_tag: Some(self.e_tag()),
            version: None,
        }
    }
}

fn key_of(attribute: &Attribute) -> Option<String> {
    Some(match attribute {
        Attribute::ContentDisposition => "Content-Disposition".into(),
        Attribute::ContentEncoding => "Content-Encoding".into(),
        Attribute::ContentLanguage => "Content-Language".into(),
        Attribute::ContentType => "Content-Type".into(),
        Attribute::CacheControl => "Cache-Control".into(),
        Attribute::StorageClass => "Storage-Class".into(),
        Attribute::Metadata(k) => format!("meta:{k}"),
        _ => return None,
    })
}

fn attribute_of(key: &str) -> Option<Attribute> {
    Some(match key {
        "Content-Disposition" => Attribute::ContentDisposition,
        "Content-Encoding" => Attribute::ContentEncoding,
        "Content-Language" => Attribute::ContentLanguage,
        "Content-Type" => Attribute::ContentType,
        "Cache-Control" => Attribute::CacheControl,
        "Storage-Class" => Attribute::StorageClass,
        k => Attribute::Metadata(k.strip_prefix("meta:")?.to_owned().into()),
    })
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes attributes as length-prefixed key / value strings.
pub(crate) fn encode_attributes(location: &str, attrs: &Attributes) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for (attribute, value) in attrs {
        let key = key_of(attribute).ok_or_else(|| StoreError::Attributes {
            location: location.to_owned(),
            reason: format!("attribute {attribute:?} is not supported"),
        })?;
        put_str(&mut out, &key);
        put_str(&mut out, value.as_ref());
    }
    Ok(out)
}

/// Decodes what [`encode_attributes`] wrote.
pub(crate) fn decode_attributes(location: &str, mut raw: &[u8]) -> Result<Attributes, StoreError> {
    let bad = |reason: &str| StoreError::Attributes {
        location: location.to_owned(),
        reason: reason.to_owned(),
    };
    let take = |raw: &mut &[u8]| -> Result<String, StoreError> {
        let (len, rest) = raw
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        let (s, rest) = rest
            .split_at_checked(len)
            .ok_or_else(|| bad("truncated string"))?;
        *raw = rest;
        String::from_utf8(s.to_vec()).map_err(|_| bad("not UTF-8"))
    };
    let mut attrs = Attributes::new();
    while !raw.is_empty() {
        let key = take(&mut raw)?;
        let value = take(&mut raw)?;
        let attribute = attribute_of(&key).ok_or_else(|| bad("unknown attribute key"))?;
        attrs.insert(attribute, AttributeValue::from(value));
    }
    Ok(attrs)
}

fn c_path(path: &FsPath) -> Result<CString, StoreError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        StoreError::fs(
            "extended attribute",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })
}

/// Stores `attrs` on the file at `path` (nothing for no attributes).
pub(crate) fn set_attributes(
    path: &FsPath,
    location: &str,
    attrs: &Attributes,
) -> Result<(), StoreError> {
    if attrs.is_empty() {
        return Ok(());
    }
    let value = encode_attributes(location, attrs)?;
    let cpath = c_path(path)?;
    let name = CString::new(ATTRIBUTES_XATTR).expect("constant has no NUL");
    // SAFETY: both names are NUL-terminated C strings and `value` is a live buffer of `value.len()` bytes
    // for the duration of the call, which does not keep any of the pointers.
    let rc = unsafe {
        libc::setxattr(
            cpath.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(StoreError::fs(
            "setxattr",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The attributes stored on the file at `path` (none if it has none).
pub(crate) fn get_attributes(path: &FsPath, location: &str) -> Result<Attributes, StoreError> {
    let cpath = c_path(path)?;
    let name = CString::new(ATTRIBUTES_XATTR).expect("constant has no NUL");
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: both names are NUL-terminated C strings and `buf` is writable for `buf.len()` bytes;
        // the kernel writes at most that many and keeps no pointer.
        let n = unsafe {
            libc::getxattr(
                cpath.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            return decode_attributes(location, &buf[..n as usize]);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(Attributes::new()),
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            _ => return Err(StoreError::fs("getxattr", path, err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let attrs = Attributes::from_iter([
            (Attribute::ContentType, "text/plain"),
            (Attribute::Metadata("k\n1".into()), "v\t1"),
            (Attribute::CacheControl, ""),
        ]);
        let raw = encode_attributes("x", &attrs).unwrap();
        assert_eq!(decode_attributes("x", &raw).unwrap(), attrs);
        assert!(decode_attributes("x", &raw[..raw.len() - 1]).is_err());
    }

    #[test]
    fn e_tag_like_local_file_system() {
        let f = FileFacts {
            ino: 0x10,
            size: 14,
            modified: (1, 2_000),
        };
        assert_eq!(f.e_tag(), "\"10-f4242-e\"");
        assert_eq!(f.meta(Path::from("a")).size, 14);
    }
}
