//! A streaming reader of layer tars that holds at most [`MAX_META_SIZE`] bytes of any one
//! entry's metadata in memory, as Go's archive/tar (containerd's reader) does.
//!
//! The `tar` crate reads PAX extended headers and GNU long names whole before it returns the
//! entry they describe, whatever size their header announces, and expands GNU sparse files by
//! reading zeros for their holes. Here the size of every metadata record is checked against the
//! limit before a byte of it is read, and a sparse entry comes with its map of data runs, so the
//! caller can write the holes as holes. Header fields are still parsed by [`tar::Header`].
//!
//! Framing follows Go's archive/tar: a header-only type (link, symlink, device, directory,
//! FIFO) has no data whatever its size field says; a PAX `size` record overrides the header;
//! GNU long names win over PAX `path`/`linkpath`; PAX sparse formats 0.0, 0.1 and 1.0 and old
//! GNU sparse entries (`S`) yield their map; the archive ends at the first zero block or at
//! end of stream on a header boundary.

use std::io::{self, Read};

/// Most bytes of one PAX record set, GNU long name or link, or sparse map (Go's
/// `maxSpecialFileSize`).
pub const MAX_META_SIZE: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// PAX records, `(key, value)` in archive order.
pub type PaxRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// Why the stream cannot be read as a layer tar.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the stream failed or it ended inside an entry.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A metadata record announces more than [`MAX_META_SIZE`] bytes.
    #[error("{what} of {size} bytes exceeds the limit of {MAX_META_SIZE} bytes")]
    TooLong {
        /// Which record (e.g. "PAX extended header").
        what: &'static str,
        /// The size it announces (for a sparse map, the bytes read so far).
        size: u64,
    },
    /// A header or record is malformed.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(why: impl Into<String>) -> TarError {
    TarError::Invalid(why.into())
}

/// The data runs of a sparse file: where its stored data goes, the rest being holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sparse {
    /// The file's apparent size.
    pub real_size: u64,
    /// `(offset, length)` of each data run, in order, not overlapping, within `real_size`;
    /// their lengths add up to the entry's stored data.
    pub runs: Vec<(u64, u64)>,
}

/// One file-system entry, with the metadata records that preceded it applied.
#[derive(Debug, Clone)]
pub struct EntryHead {
    /// The header, with PAX `uid`/`gid` written into it.
    pub header: tar::Header,
    /// The entry name (GNU long name, PAX `path` or `GNU.sparse.name`, else the header's).
    pub path: Vec<u8>,
    /// The link target (GNU long link, PAX `linkpath`, else the header's), if any.
    pub link: Option<Vec<u8>>,
    /// The local PAX records, in archive order.
    pub pax: PaxRecords,
    /// Bytes of data stored in the archive for this entry.
    pub size: u64,
    /// The sparse map, for a sparse file.
    pub sparse: Option<Sparse>,
}

/// The reader: call [`TarStream::next_entry`], then read that entry's data from
/// [`TarStream::data`] (unread data is skipped by the next call).
pub struct TarStream<R> {
    inner: R,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    pad: u64,
}

impl<R: Read> TarStream<R> {
    pub fn new(inner: R) -> Self {
        TarStream {
            inner,
            remaining: 0,
            pad: 0,
        }
    }

    /// The next file-system entry, or `None` at the end of the archive.
    pub fn next_entry(&mut self) -> Result<Option<EntryHead>, TarError> {
        self.skip(self.remaining + self.pad)?;
        self.remaining = 0;
        self.pad = 0;
        let mut pax: Option<PaxRecords> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let mut header = tar::Header::new_old();
            if !self.read_block(header.as_mut_bytes())? {
                if pax.is_some() || long_name.is_some() || long_link.is_some() {
                    return Err(invalid("extended headers without the entry they describe"));
                }
                return Ok(None);
            }
            if header.as_bytes().iter().all(|&b| b == 0) {
                return Ok(None);
            }
            check_sum(&header)?;
            let flag = header.as_bytes()[156];
            let size = header
                .entry_size()
                .map_err(|e| invalid(format!("size field: {e}")))?;
            let what = match flag {
                b'x' => Some("PAX extended header"),
                b'g' => Some("PAX global header"),
                b'L' => Some("GNU long name"),
                b'K' => Some("GNU long link name"),
                _ => None,
            };
            if let Some(what) = what {
                // Refused before a byte of it is read or allocated.
                if size > MAX_META_SIZE {
                    return Err(TarError::TooLong { what, size });
                }
                let data = self.read_record(size)?;
                match flag {
                    b'x' => pax = Some(parse_pax(&data)?),
                    // Go returns it as an entry that containerd ignores.
                    b'g' => {}
                    b'L' => long_name = Some(c_string(data)),
                    _ => long_link = Some(c_string(data)),
                }
                continue;
            }
            return self
                .file_entry(header, size, pax.unwrap_or_default(), long_name, long_link)
                .map(Some);
        }
    }

    /// Read the current entry's data (what is left of it).
    pub fn data(&mut self) -> Data<'_, R> {
        Data { stream: self }
    }

    fn file_entry(
        &mut self,
        mut header: tar::Header,
        mut size: u64,
        pax: PaxRecords,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<EntryHead, TarError> {
        let mut path = None;
        let mut link = None;
        let mut sparse_keys = SparseKeys::default();
        for (key, value) in &pax {
            let number = || parse_decimal(value).ok_or_else(|| bad_record(key, value));
            match &key[..] {
                b"path" => path = Some(value.clone()),
                b"linkpath" => link = Some(value.clone()),
                b"size" => size = number()?,
                b"uid" => header.set_uid(number()?),
                b"gid" => header.set_gid(number()?),
                _ => sparse_keys.add(key, value)?,
            }
        }
        let flag = header.as_bytes()[156];
        // Header-only types have no data, whatever the size says.
        if matches!(flag, b'1'..=b'6') {
            size = 0;
        }
        self.remaining = size;
        self.pad = (BLOCK - size % BLOCK) % BLOCK;
        let sparse = if flag == b'S' {
            Some(self.old_gnu_sparse(&header)?)
        } else {
            self.pax_sparse(&sparse_keys, &mut path)?
        };
        if let Some(sparse) = &sparse {
            check_runs(sparse, self.remaining)?;
        }
        let path = long_name
            .or(path)
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let link = long_link
            .or(link)
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        Ok(EntryHead {
            header,
            path,
            link,
            pax,
            size: self.remaining,
            sparse,
        })
    }

    /// The old GNU format: up to 4 runs in the header, then extension blocks of 21 each
    /// (before the data). Go reads extension blocks without end; they are held to the limit
    /// of any other metadata.
    fn old_gnu_sparse(&mut self, header: &tar::Header) -> Result<Sparse, TarError> {
        let gnu = header
            .as_gnu()
            .ok_or_else(|| invalid("sparse entry without a GNU header"))?;
        let real_size = gnu
            .real_size()
            .map_err(|e| invalid(format!("sparse real size: {e}")))?;
        let mut runs = Vec::new();
        push_runs(&mut runs, &gnu.sparse)?;
        let mut extended = gnu.is_extended();
        let mut read = 0u64;
        while extended {
            read += BLOCK;
            if read > MAX_META_SIZE {
                return Err(TarError::TooLong {
                    what: "GNU sparse map",
                    size: read,
                });
            }
            let mut ext = tar::GnuExtSparseHeader::new();
            if !self.read_block(ext.as_mut_bytes())? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a GNU sparse map",
                )
                .into());
            }
            push_runs(&mut runs, &ext.sparse)?;
            extended = ext.is_extended();
        }
        Ok(Sparse { real_size, runs })
    }

    /// PAX sparse formats (Go's `readGNUSparsePAXHeaders`); `path` takes `GNU.sparse.name`.
    fn pax_sparse(
        &mut self,
        keys: &SparseKeys,
        path: &mut Option<Vec<u8>>,
    ) -> Result<Option<Sparse>, TarError> {
        let major = keys.major.as_deref();
        let minor = keys.minor.as_deref();
        let v1 = match (major, minor) {
            (Some(b"0"), Some(b"0" | b"1")) => false,
            (Some(b"1"), Some(b"0")) => true,
            // An unknown version: a plain file, as Go reads it.
            (Some(_), _) | (_, Some(_)) => return Ok(None),
            (None, None) if keys.map.is_some() => false,
            (None, None) => return Ok(None),
        };
        if let Some(name) = keys.name.clone().filter(|n| !n.is_empty()) {
            *path = Some(name);
        }
        let real_size = match keys.size.as_deref().or(keys.real_size.as_deref()) {
            Some(v) => parse_decimal(v).ok_or_else(|| invalid("invalid GNU.sparse.size"))?,
            None => self.remaining,
        };
        let runs = if v1 {
            self.sparse_map_v1()?
        } else {
            let count = keys
                .numblocks
                .as_deref()
                .and_then(parse_decimal)
                .ok_or_else(|| invalid("invalid GNU.sparse.numblocks"))?;
            let map = keys.map.as_deref().unwrap_or_default();
            let fields: Vec<&[u8]> = if map.is_empty() {
                Vec::new()
            } else {
                map.split(|&b| b == b',').collect()
            };
            if fields.len() as u64 != count.saturating_mul(2) {
                return Err(invalid(
                    "GNU.sparse.map does not match GNU.sparse.numblocks",
                ));
            }
            pairs(fields.iter().copied())?
        };
        Ok(Some(Sparse { real_size, runs }))
    }

    /// Format 1.0: the map opens the entry's data, in decimal lines (count, then offset and
    /// length per run), padded to a block.
    fn sparse_map_v1(&mut self) -> Result<Vec<(u64, u64)>, TarError> {
        let mut text = Vec::new();
        let mut lines = 0usize;
        let mut needed = 1usize;
        let mut counted = false;
        let mut block = [0u8; BLOCK as usize];
        loop {
            while lines < needed {
                if (text.len() as u64) + BLOCK > MAX_META_SIZE {
                    return Err(TarError::TooLong {
                        what: "GNU sparse map",
                        size: text.len() as u64 + BLOCK,
                    });
                }
                if self.remaining < BLOCK {
                    return Err(invalid("GNU sparse map runs past the entry's data"));
                }
                self.read_exact_data(&mut block)?;
                lines += block.iter().filter(|&&b| b == b'\n').count();
                text.extend_from_slice(&block);
            }
            if counted {
                break;
            }
            let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
            let count = parse_decimal(first)
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| n.checked_mul(2))
                .and_then(|n| n.checked_add(1))
                .ok_or_else(|| invalid("invalid GNU sparse map entry count"))?;
            needed = count;
            counted = true;
        }
        let fields: Vec<&[u8]> = text
            .split(|&b| b == b'\n')
            .skip(1)
            .take(needed - 1)
            .collect();
        pairs(fields.into_iter())
    }

    fn read_exact_data(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.data().read(&mut buf[done..])?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            done += n;
        }
        Ok(())
    }

    /// A whole metadata record of `size` bytes (at most [`MAX_META_SIZE`]) and its padding.
    fn read_record(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        let mut data = vec![0u8; size as usize];
        self.read_all(&mut data)?;
        self.skip((BLOCK - size % BLOCK) % BLOCK)?;
        Ok(data)
    }

    /// Fill `buf`; `false` if the stream ended before its first byte.
    fn read_block(&mut self, buf: &mut [u8]) -> Result<bool, TarError> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) if done == 0 => return Ok(false),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stream ended inside a header",
                    )
                    .into());
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    fn read_all(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        if buf.is_empty() || self.read_block(buf)? {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a record").into())
        }
    }

    /// Read and discard `amount` bytes.
    fn skip(&mut self, mut amount: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while amount > 0 {
            let n = amount.min(buf.len() as u64) as usize;
            self.read_all(&mut buf[..n])?;
            amount -= n as u64;
        }
        Ok(())
    }
}

/// The current entry's data; ends early with `UnexpectedEof` if the stream does.
pub struct Data<'a, R> {
    stream: &'a mut TarStream<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let s = &mut *self.stream;
        if s.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(s.remaining).unwrap_or(usize::MAX));
        let n = s.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "stream ended with {} bytes of the entry unread",
                    s.remaining
                ),
            ));
        }
        s.remaining -= n as u64;
        Ok(n)
    }
}

/// PAX sparse records (`GNU.sparse.*`).
#[derive(Default)]
struct SparseKeys {
    major: Option<Vec<u8>>,
    minor: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
    size: Option<Vec<u8>>,
    real_size: Option<Vec<u8>>,
    numblocks: Option<Vec<u8>>,
    /// `GNU.sparse.map`, or format 0.0's `offset`/`numbytes` records joined as Go joins them.
    map: Option<Vec<u8>>,
}

impl SparseKeys {
    fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), TarError> {
        let Some(name) = key.strip_prefix(b"GNU.sparse.") else {
            return Ok(());
        };
        let slot = match name {
            b"major" => &mut self.major,
            b"minor" => &mut self.minor,
            b"name" => &mut self.name,
            b"size" => &mut self.size,
            b"realsize" => &mut self.real_size,
            b"numblocks" => &mut self.numblocks,
            b"map" => &mut self.map,
            b"offset" | b"numbytes" => {
                // Format 0.0 repeats these in pairs, offset first.
                let map = self.map.get_or_insert_with(Vec::new);
                let fields = map.split(|&b| b == b',').filter(|f| !f.is_empty()).count();
                let want_offset = fields % 2 == 0;
                if want_offset != (name == b"offset") {
                    return Err(bad_record(key, value));
                }
                if !map.is_empty() {
                    map.push(b',');
                }
                map.extend_from_slice(value);
                return Ok(());
            }
            _ => return Ok(()),
        };
        *slot = Some(value.to_vec());
        Ok(())
    }
}

/// Append the runs of a GNU sparse header array; an entry whose offset starts with NUL ends
/// the array (GNU and Go's rule).
fn push_runs(runs: &mut Vec<(u64, u64)>, entries: &[tar::GnuSparseHeader]) -> Result<(), TarError> {
    for entry in entries {
        if entry.offset[0] == 0 {
            break;
        }
        let bad = |e: io::Error| invalid(format!("GNU sparse map: {e}"));
        runs.push((entry.offset().map_err(bad)?, entry.length().map_err(bad)?));
    }
    Ok(())
}

/// `(offset, length)` pairs from decimal fields.
fn pairs<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Result<Vec<(u64, u64)>, TarError> {
    let numbers = fields
        .map(|f| parse_decimal(f).ok_or_else(|| invalid("invalid number in GNU sparse map")))
        .collect::<Result<Vec<u64>, TarError>>()?;
    Ok(numbers.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Runs in order, not overlapping, within the file, and adding up to the stored data (Go's
/// `validateSparseEntries`, errMissData, errUnrefData).
fn check_runs(sparse: &Sparse, stored: u64) -> Result<(), TarError> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, length) in &sparse.runs {
        let run_end = offset
            .checked_add(length)
            .filter(|&e| e <= sparse.real_size && offset >= end)
            .ok_or_else(|| invalid("GNU sparse map runs overlap or pass the file's size"))?;
        end = run_end;
        total = total.saturating_add(length);
    }
    if total != stored {
        return Err(invalid(format!(
            "GNU sparse map describes {total} bytes of data, the entry stores {stored}"
        )));
    }
    Ok(())
}

/// Parse the PAX records of an extended header, in order.
fn parse_pax(data: &[u8]) -> Result<PaxRecords, TarError> {
    let mut out = Vec::new();
    for record in tar::PaxExtensions::new(data) {
        let record = record.map_err(|e| invalid(format!("PAX record: {e}")))?;
        out.push((record.key_bytes().to_vec(), record.value_bytes().to_vec()));
    }
    Ok(out)
}

/// A non-negative decimal number (as Go parses PAX numbers, without sign or spaces).
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn bad_record(key: &[u8], value: &[u8]) -> TarError {
    invalid(format!(
        "invalid PAX record {}={}",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(value)
    ))
}

/// A GNU long name or link: up to its first NUL.
fn c_string(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(nul) = data.iter().position(|&b| b == 0) {
        data.truncate(nul);
    }
    data
}

/// The header checksum, summed as unsigned or (as some old tars do) signed bytes.
fn check_sum(header: &tar::Header) -> Result<(), TarError> {
    let bytes = header.as_bytes();
    let stored = header
        .cksum()
        .map_err(|e| invalid(format!("checksum field: {e}")))?;
    let (mut unsigned, mut signed) = (8 * 32u32, 8 * 32i64);
    for (i, &b) in bytes.iter().enumerate() {
        if !(148..156).contains(&i) {
            unsigned += u32::from(b);
            signed += i64::from(b as i8);
        }
    }
    if stored == unsigned || i64::from(stored) == signed {
        Ok(())
    } else {
        Err(invalid("header checksum mismatch"))
    }
}
