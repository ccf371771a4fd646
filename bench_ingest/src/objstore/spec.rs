//! [`ObjSpec`]: the objects of a run (how many, how large, in which parts), the payloads they are made
//! of, and the seeded offsets of the ranged reads, the same for every store.

use bytes::Bytes;
use rand::{Rng, SeedableRng};

use crate::args::ObjstoreArgs;
use crate::error::ObjstoreError;

/// Alignment of part sizes, range sizes and range offsets (what `O_DIRECT` needs on the raw loop).
pub const ALIGN: u64 = 4096;

/// Ranged reads whose bytes are compared with what was written (the first ones of each run).
pub const VERIFIED_RANGES: usize = 32;

/// The objects of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjSpec {
    /// Objects per store.
    pub objects: u64,
    /// Bytes per object.
    pub object_bytes: u64,
    /// Bytes per part (the last part of an object may be shorter).
    pub part_bytes: u64,
    /// Parts (and reads) in flight.
    pub parts_in_flight: usize,
    /// Ranged reads.
    pub range_reads: u64,
    /// Bytes per ranged read.
    pub range_bytes: u64,
    /// Seed of the payloads and of the range offsets.
    pub seed: u64,
}

impl ObjSpec {
    /// The spec of the command line, checked.
    pub fn from_args(a: &ObjstoreArgs) -> Result<Self, ObjstoreError> {
        let spec = Self {
            objects: a.objects,
            object_bytes: a.object_mib << 20,
            part_bytes: a.part_mib << 20,
            parts_in_flight: usize::try_from(a.parts_in_flight).unwrap_or(usize::MAX),
            range_reads: a.range_reads,
            range_bytes: a.range_kib << 10,
            seed: 42,
        };
        spec.check()?;
        Ok(spec)
    }

    /// Checks the sizes fit together.
    pub fn check(&self) -> Result<(), ObjstoreError> {
        let bad = |m: String| Err(ObjstoreError::Settings(m));
        if self.objects == 0 || self.object_bytes == 0 || self.part_bytes == 0 {
            return bad("--objects, --object-mib and --part-mib must be at least 1".into());
        }
        if self.parts_in_flight == 0 {
            return bad("--parts-in-flight must be at least 1".into());
        }
        if self.part_bytes % ALIGN != 0 || self.object_bytes % ALIGN != 0 {
            return bad(format!(
                "part and object sizes must be multiples of {ALIGN} bytes"
            ));
        }
        if self.range_bytes == 0 || self.range_bytes % ALIGN != 0 {
            return bad(format!(
                "--range-kib must be a multiple of {} (the raw loop reads with O_DIRECT)",
                ALIGN / 1024
            ));
        }
        if self.range_reads > 0 && self.range_bytes > self.object_bytes {
            return bad(format!(
                "--range-kib ({} KiB) must not exceed --object-mib ({} MiB)",
                self.range_bytes >> 10,
                self.object_bytes >> 20
            ));
        }
        Ok(())
    }

    /// Parts per object.
    pub fn parts_per_object(&self) -> u64 {
        self.object_bytes.div_ceil(self.part_bytes)
    }

    /// The offset and length of part `p` of an object.
    pub fn part(&self, p: u64) -> (u64, usize) {
        let off = p * self.part_bytes;
        let len = (self.object_bytes - off).min(self.part_bytes);
        (off, len as usize)
    }

    /// Bytes of all objects.
    pub fn total_bytes(&self) -> u64 {
        self.objects * self.object_bytes
    }

    /// The name of object `o` (a file of that name in the store's directory).
    pub fn object_name(&self, o: u64) -> String {
        format!("object-{o}")
    }

    /// How many distinct payloads the parts cycle through.
    pub fn payload_count(&self) -> usize {
        let parts = usize::try_from(self.parts_per_object()).unwrap_or(usize::MAX);
        self.parts_in_flight.min(parts).max(1)
    }

    /// The payloads, random bytes of part size: part `p` of every object is the first bytes of
    /// `payloads[p % payloads.len()]`.
    pub fn payloads(&self) -> Vec<Bytes> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        (0..self.payload_count())
            .map(|_| {
                let mut b = vec![0u8; self.part_bytes as usize];
                rng.fill(&mut b[..]);
                Bytes::from(b)
            })
            .collect()
    }

    /// The bytes of part `p` of any object.
    pub fn part_payload(&self, payloads: &[Bytes], p: u64) -> Bytes {
        let (_, len) = self.part(p);
        payloads[(p % payloads.len() as u64) as usize].slice(..len)
    }

    /// The ranged reads: (object, offset), offsets aligned to [`ALIGN`], from a seeded generator.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ 0x5eed);
        let last_slot = (self.object_bytes - self.range_bytes.min(self.object_bytes)) / ALIGN;
        (0..self.range_reads)
            .map(|_| {
                (
                    rng.random_range(0..self.objects),
                    rng.random_range(0..=last_slot) * ALIGN,
                )
            })
            .collect()
    }

    /// Checks that `got` are the bytes of any object at `offset`.
    pub fn verify_range<P: AsRef<[u8]>>(
        &self,
        payloads: &[P],
        offset: u64,
        got: &[u8],
    ) -> Result<(), ObjstoreError> {
        let mut pos = offset;
        let mut rest = got;
        while !rest.is_empty() {
            let p = pos / self.part_bytes;
            let in_part = (pos % self.part_bytes) as usize;
            let payload = payloads[(p % payloads.len() as u64) as usize].as_ref();
            let n = rest.len().min(self.part(p).1 - in_part);
            if rest[..n] != payload[in_part..in_part + n] {
                return Err(ObjstoreError::Verify(format!(
                    "the {} bytes at offset {pos} differ from those written",
                    n
                )));
            }
            rest = &rest[n..];
            pos += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ObjSpec {
        ObjSpec {
            objects: 2,
            object_bytes: 5 << 20,
            part_bytes: 2 << 20,
            parts_in_flight: 8,
            range_reads: 100,
            range_bytes: 64 << 10,
            seed: 1,
        }
    }

    #[test]
    fn parts_cover_the_object() {
        let s = spec();
        assert_eq!(s.parts_per_object(), 3);
        assert_eq!(s.part(0), (0, 2 << 20));
        assert_eq!(s.part(2), (4 << 20, 1 << 20), "the last part is shorter");
        assert_eq!(s.payload_count(), 3, "no more payloads than parts");
        let payloads = s.payloads();
        assert_eq!(s.part_payload(&payloads, 2).len(), 1 << 20);
        assert_ne!(payloads[0], payloads[1]);
    }

    #[test]
    fn ranges_are_aligned_inside_and_repeatable() {
        let s = spec();
        let r = s.ranges();
        assert_eq!(r.len(), 100);
        assert_eq!(r, s.ranges());
        for &(o, off) in &r {
            assert!(o < s.objects);
            assert_eq!(off % ALIGN, 0);
            assert!(off + s.range_bytes <= s.object_bytes);
        }
    }

    #[test]
    fn verify_range_across_a_part_boundary() {
        let s = spec();
        let payloads = s.payloads();
        let off = (2 << 20) - 4096;
        let mut got = payloads[0][off as usize..].to_vec();
        got.extend_from_slice(&payloads[1][..4096]);
        s.verify_range(&payloads, off, &got).unwrap();
        got[5000] ^= 1;
        assert!(s.verify_range(&payloads, off, &got).is_err());
    }

    #[test]
    fn bad_settings_are_errors() {
        let mut s = spec();
        s.range_bytes = 6 << 20;
        assert!(s.check().is_err());
        s.range_bytes = 1000;
        assert!(s.check().is_err());
        let mut s = spec();
        s.parts_in_flight = 0;
        assert!(s.check().is_err());
        assert!(spec().check().is_ok());
    }
}
