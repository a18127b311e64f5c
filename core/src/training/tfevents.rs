//! TensorBoard event files (`events.out.tfevents.*`): the TFRecord framing and the three
//! protobuf messages a scalar needs, written and read by hand.
//!
//! A record is `length: u64 LE`, `masked_crc32c(length): u32 LE`, `data`, `masked_crc32c(data):
//! u32 LE` (tensorflow/core/lib/io/record_writer.cc); the mask is `((crc >> 15) | (crc << 17)) +
//! 0xa282ead8` (tensorflow/core/lib/hash/crc32c.h). `data` is an `Event` (event.proto:
//! `double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5`), whose
//! `Summary` (summary.proto) holds `repeated Value value = 1` with `string tag = 1; float
//! simple_value = 2`. The first record of a file carries `file_version = "brain.Event:2"`.
//!
//! Why by hand: the crates that write these files do not fit. `tensorboard-rs` 0.5.9 (2022) pulls
//! protobuf 2.x, which has an open advisory (RUSTSEC-2024-0437), and `image` 0.23; `tboard` 0.1.1
//! (one release) generates its code with prost-build 0.12 in a build script that needs a `protoc`
//! binary. Six protobuf fields are a page of code, checked here byte for byte against what
//! TensorBoard's own Python writer produces; the CRC is the `crc` crate's CRC-32/ISCSI
//! (Castagnoli, the same polynomial as CRC-32C).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file version TensorBoard expects in a file's first record.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Why an event file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A record whose length or data does not match its checksum, or whose protobuf is malformed.
    #[error(
        "{path}: record {record} (at byte {offset}) is corrupt: {message}; the file is not a TensorBoard event file or was damaged (rebuild it with `medrl runs events RUN`)"
    )]
    Corrupt { path: PathBuf, record: usize, offset: u64, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EventsError + '_ {
    move |source| EventsError::Io { path: path.to_path_buf(), source }
}

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// TFRecord's masked CRC-32C of `data`.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = CASTAGNOLI.checksum(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One event: a file-version marker or a step's scalars.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    /// `(tag, simple_value)` in the order written.
    pub scalars: Vec<(String, f32)>,
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | 2), out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

impl Event {
    /// The protobuf encoding, fields in number order (as protobuf's own serialisers write them).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(1 << 3 | 1);
        out.extend_from_slice(&self.wall_time.to_le_bytes());
        if self.step != 0 {
            out.push(2 << 3);
            varint(self.step as u64, &mut out);
        }
        if let Some(v) = &self.file_version {
            bytes_field(3, v.as_bytes(), &mut out);
        }
        if !self.scalars.is_empty() {
            let mut summary = Vec::new();
            for (tag, value) in &self.scalars {
                let mut v = Vec::new();
                bytes_field(1, tag.as_bytes(), &mut v);
                v.push(2 << 3 | 5);
                v.extend_from_slice(&value.to_le_bytes());
                bytes_field(1, &v, &mut summary);
            }
            bytes_field(5, &summary, &mut out);
        }
        out
    }

    /// Decodes an `Event`; fields it does not know are skipped, as protobuf does.
    pub fn decode(data: &[u8]) -> Result<Self, String> {
        let mut e = Event { wall_time: 0.0, step: 0, file_version: None, scalars: Vec::new() };
        for field in Fields(data) {
            match field? {
                (1, Wire::Fixed64(v)) => e.wall_time = f64::from_bits(v),
                (2, Wire::Varint(v)) => e.step = v as i64,
                (3, Wire::Bytes(b)) => e.file_version = Some(String::from_utf8(b.to_vec()).map_err(|_| "file_version is not UTF-8")?),
                (5, Wire::Bytes(summary)) => {
                    for value in Fields(summary) {
                        let (1, Wire::Bytes(value)) = value? else { continue };
                        let (mut tag, mut simple) = (None, None);
                        for f in Fields(value) {
                            match f? {
                                (1, Wire::Bytes(b)) => tag = Some(String::from_utf8(b.to_vec()).map_err(|_| "a tag is not UTF-8")?),
                                (2, Wire::Fixed32(bits)) => simple = Some(f32::from_bits(bits)),
                                _ => {}
                            }
                        }
                        if let (Some(tag), Some(simple)) = (tag, simple) {
                            e.scalars.push((tag, simple));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(e)
    }
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The `(field number, value)` pairs of one protobuf message.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or("a varint runs past the end")?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!("a field of {n} bytes runs past the end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let wire = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
                2 => {
                    let n = self.varint()? as usize;
                    Wire::Bytes(self.take(n)?)
                }
                5 => Wire::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
                w => return Err(format!("wire type {w} is not one an Event uses")),
            };
            Ok((key >> 3, wire))
        })();
        if field.is_err() {
            // Stop after the first error: the rest cannot be framed.
            self.0 = &[];
        }
        Some(field)
    }
}

/// `data` framed as one TFRecord.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// The events of a file's bytes, every checksum checked, and the byte length of the complete
/// records. A last record cut short (a write torn by a crash, or one in progress) ends the list;
/// a checksum that does not match is an error.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Event>, u64), EventsError> {
    let mut events = Vec::new();
    let mut at = 0usize;
    let corrupt =
        |record: usize, offset: usize, message: String| EventsError::Corrupt { path: path.to_path_buf(), record, offset: offset as u64, message };
    while bytes.len() - at >= 12 {
        let len_bytes = &bytes[at..at + 8];
        let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        if crc != masked_crc(len_bytes) {
            return Err(corrupt(events.len(), at, "the length's checksum does not match".into()));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        let Some(end) = usize::try_from(len).ok().and_then(|n| (at + 12).checked_add(n)).and_then(|e| e.checked_add(4)) else {
            return Err(corrupt(events.len(), at, format!("a record of {len} bytes")));
        };
        if end > bytes.len() {
            break;
        }
        let data = &bytes[at + 12..end - 4];
        if u32::from_le_bytes(bytes[end - 4..end].try_into().expect("4 bytes")) != masked_crc(data) {
            return Err(corrupt(events.len(), at, "the data's checksum does not match".into()));
        }
        events.push(Event::decode(data).map_err(|m| corrupt(events.len(), at, m))?);
        at = end;
    }
    Ok((events, at as u64))
}

/// Every complete event of the file at `path` ([`parse`]).
pub fn read(path: &Path) -> Result<Vec<Event>, EventsError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(parse(path, &bytes)?.0)
}

/// Cuts an event file back to the events of steps `≤ step` (and its file-version record),
/// dropping a torn last record: the event-file counterpart of the row logs' cut, for a resume
/// from a checkpoint that did not record log lengths. A missing file is fine.
pub fn truncate_after_step(path: &Path, step: u64) -> Result<(), EventsError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    let (events, _) = parse(path, &bytes)?;
    let kept: Vec<u8> =
        events.iter().filter(|e| e.file_version.is_some() || (e.step >= 0 && e.step as u64 <= step)).flat_map(|e| record(&e.encode())).collect();
    std::fs::write(path, kept).map_err(io(path))
}

/// Appends events to a file, flushed per record so a crash loses at most the record being
/// written (which a reader then ignores as torn).
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Opens `path` for appending; a new or empty file first gets the file-version record,
    /// stamped `wall_time`.
    pub fn append(path: &Path, wall_time: f64) -> Result<Self, EventsError> {
        let fresh = std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true);
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io(path))?;
        let mut writer = EventWriter { path: path.to_path_buf(), file };
        if fresh {
            writer.write(&Event { wall_time, step: 0, file_version: Some(FILE_VERSION.into()), scalars: Vec::new() })?;
        }
        Ok(writer)
    }

    /// One step's scalars as one event. Values that are not finite are left out (TensorBoard
    /// would draw them as gaps at best).
    pub fn write_scalars(&mut self, step: u64, wall_time: f64, scalars: &[(String, f64)]) -> Result<(), EventsError> {
        let scalars = scalars.iter().filter(|(_, v)| v.is_finite()).map(|(t, v)| (t.clone(), *v as f32)).collect();
        self.write(&Event { wall_time, step: step as i64, file_version: None, scalars })
    }

    fn write(&mut self, event: &Event) -> Result<(), EventsError> {
        self.file.write_all(&record(&event.encode())).map_err(io(&self.path))
    }
}

/// Seconds since the Unix epoch, now.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What TensorBoard 2.21's own writer (`tensorboard.summary.writer.record_writer.RecordWriter`
    /// over `event_pb2.Event(...).SerializeToString()`) wrote for these two events:
    /// `Event(wall_time=1700000000.5, file_version="brain.Event:2")` and
    /// `Event(wall_time=1700000001.25, step=3, summary=Summary(value=[Value(tag="reward/total",
    /// simple_value=0.25), Value(tag="kl/beta", simple_value=-1.5)]))`.
    const TENSORBOARD_BYTES: &str = "1800000000000000a37f4b220900002040fc54d9411a0d627261696e2e4576656e743a322b3531103200000000000000241956ec0900005040fc54d94110032a250a130a0c7265776172642f746f74616c150000803e0a0e0a076b6c2f62657461150000c0bfd4ef4ca0";

    fn two_events() -> [Event; 2] {
        [
            Event { wall_time: 1_700_000_000.5, step: 0, file_version: Some(FILE_VERSION.into()), scalars: vec![] },
            Event {
                wall_time: 1_700_000_001.25,
                step: 3,
                file_version: None,
                scalars: vec![("reward/total".into(), 0.25), ("kl/beta".into(), -1.5)],
            },
        ]
    }

    #[test]
    fn crc32c_is_castagnolis() {
        // The CRC-32C check value (RFC 3720 B.4): "123456789" → 0xE3069283.
        assert_eq!(CASTAGNOLI.checksum(b"123456789"), 0xE306_9283);
        // The mask of 0: rotate is 0, plus the constant.
        assert_eq!(CASTAGNOLI.checksum(b"").rotate_right(15).wrapping_add(0xa282_ead8), masked_crc(b""));
    }

    #[test]
    fn the_bytes_equal_tensorboards_own_writer() {
        let ours: Vec<u8> = two_events().iter().flat_map(|e| record(&e.encode())).collect();
        assert_eq!(hex::encode(&ours), TENSORBOARD_BYTES);
        let (events, complete) = parse(Path::new("x"), &hex::decode(TENSORBOARD_BYTES).unwrap()).unwrap();
        assert_eq!(events, two_events());
        assert_eq!(complete as usize, TENSORBOARD_BYTES.len() / 2);
    }

    #[test]
    fn a_torn_record_ends_the_file_and_a_flipped_bit_is_refused() {
        let bytes = hex::decode(TENSORBOARD_BYTES).unwrap();
        let first = 12 + 0x18 + 4;
        let (events, complete) = parse(Path::new("x"), &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!((events.len(), complete), (1, first as u64));
        let mut flipped = bytes.clone();
        flipped[first + 20] ^= 1;
        let err = parse(Path::new("ev"), &flipped).unwrap_err().to_string();
        assert!(err.contains("record 1 (at byte 40)") && err.contains("data's checksum"), "{err}");
        let mut flipped = bytes;
        flipped[2] ^= 1;
        assert!(parse(Path::new("ev"), &flipped).unwrap_err().to_string().contains("length's checksum"));
    }

    #[test]
    fn appending_writes_the_version_once_and_a_legacy_cut_keeps_earlier_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.out.tfevents.test");
        let mut w = EventWriter::append(&path, 10.0).unwrap();
        for step in 1..=3 {
            w.write_scalars(step, 10.0 + step as f64, &[("a".into(), step as f64), ("nan".into(), f64::NAN)]).unwrap();
        }
        drop(w);
        // Reopened (a resume): no second version record.
        EventWriter::append(&path, 20.0).unwrap().write_scalars(4, 21.0, &[("a".into(), 4.0)]).unwrap();
        let events = read(&path).unwrap();
        assert_eq!(events.iter().filter(|e| e.file_version.is_some()).count(), 1);
        assert_eq!(events.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(events[2].scalars, [("a".to_string(), 2.0)], "the NaN is left out");
        // A torn record after step 4, then a cut back to step 2.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&record(&Event { wall_time: 0.0, step: 5, file_version: None, scalars: vec![] }.encode())[..9]).unwrap();
        truncate_after_step(&path, 2).unwrap();
        assert_eq!(read(&path).unwrap().iter().map(|e| e.step).collect::<Vec<_>>(), [0, 1, 2]);
    }
}
