//! The IDX file format (LeCun & Cortes, MNIST), used unchanged by Fashion-MNIST and KMNIST.
//!
//! ```text
//! offset  bytes        meaning
//! 0       2            zero
//! 2       1            element type code: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
//! 3       1            number of dimensions d
//! 4       4·d          each dimension as a big-endian u32, outermost first
//! 4+4·d   Π dims · size  the elements, row-major
//! ```
//!
//! Images are `[N, rows, cols]` u8 files (magic `00 00 08 03`), labels `[N]` u8 files (`00 00 08 01`). The files are
//! often distributed gzip-compressed; a file that starts with the gzip magic `1f 8b` is decompressed on the fly.
//!
//! Everything in a file is untrusted: sizes are multiplied with overflow checks, the body is read incrementally (a header
//! that claims terabytes allocates nothing up front), and a body shorter or longer than the header announces is an error.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::error::{DataError, Result};

/// The element type code of unsigned bytes, the only type the datasets use.
const DTYPE_U8: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An IDX array of unsigned bytes: its dimensions (outermost first) and its row-major elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// `count` grey-scale images of `rows × cols` pixels, stored image after image, row after row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes with any number of dimensions, plain or gzip-compressed.
pub fn read_idx_u8(path: &Path) -> Result<IdxArray> {
    let file = File::open(path).map_err(|e| DataError::at(path, format!("cannot open: {e}")))?;
    parse_idx_u8(file, path)
}

/// Parses the bytes of an IDX u8 file from `reader`, plain or gzip-compressed; errors name `source`.
pub fn parse_idx_u8(reader: impl Read, source: &Path) -> Result<IdxArray> {
    let mut buffered = BufReader::new(reader);
    let starts_with_gzip_magic = buffered
        .fill_buf()
        .map_err(|e| DataError::at(source, format!("cannot read: {e}")))?
        .starts_with(&GZIP_MAGIC);
    if starts_with_gzip_magic {
        parse_plain_idx_u8(BufReader::new(MultiGzDecoder::new(buffered)), source)
    } else {
        parse_plain_idx_u8(buffered, source)
    }
}

/// Reads an IDX file of images: three dimensions `[count, rows, cols]`, neither `rows` nor `cols` zero.
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    idx_images(read_idx_u8(path)?, path)
}

/// An IDX array (read from `path`) as images: three dimensions `[count, rows, cols]`, neither `rows` nor `cols` zero.
pub fn idx_images(array: IdxArray, path: &Path) -> Result<IdxImages> {
    let [count, rows, cols] = array.dims[..] else {
        return Err(DataError::at(
            path,
            format!(
                "an image file needs 3 dimensions [count, rows, cols], this one has {} ({:?})",
                array.dims.len(),
                array.dims
            ),
        ));
    };
    if rows == 0 || cols == 0 {
        return Err(DataError::at(
            path,
            format!("images of {rows}×{cols} pixels are empty"),
        ));
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: array.data,
    })
}

/// Reads an IDX file of labels: one dimension `[count]`.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    idx_labels(read_idx_u8(path)?, path)
}

/// An IDX array (read from `path`) as labels: one dimension `[count]`.
pub fn idx_labels(array: IdxArray, path: &Path) -> Result<Vec<u8>> {
    if array.dims.len() != 1 {
        return Err(DataError::at(
            path,
            format!(
                "a label file needs 1 dimension [count], this one has {} ({:?})",
                array.dims.len(),
                array.dims
            ),
        ));
    }
    Ok(array.data)
}

/// Writes `data` with shape `dims` as an IDX u8 file, gzip-compressed if `gzip`. The gzip header carries no file name
/// and a zero modification time, so equal inputs give byte-identical files.
pub fn write_idx_u8(path: &Path, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    let header = idx_header(dims, data.len()).map_err(|message| DataError::at(path, message))?;
    let file =
        File::create(path).map_err(|e| DataError::at(path, format!("cannot create: {e}")))?;
    let write_error = |e: std::io::Error| DataError::at(path, format!("cannot write: {e}"));
    if gzip {
        let mut encoder = GzEncoder::new(file, Compression::best());
        encoder.write_all(&header).map_err(write_error)?;
        encoder.write_all(data).map_err(write_error)?;
        encoder.finish().map_err(write_error)?;
    } else {
        let mut writer = std::io::BufWriter::new(file);
        writer.write_all(&header).map_err(write_error)?;
        writer.write_all(data).map_err(write_error)?;
        writer.flush().map_err(write_error)?;
    }
    Ok(())
}

/// The header bytes for a u8 array of shape `dims` holding `len` elements.
fn idx_header(dims: &[usize], len: usize) -> std::result::Result<Vec<u8>, String> {
    let ndim = u8::try_from(dims.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("an IDX file has 1 to 255 dimensions, not {}", dims.len()))?;
    let elements = element_count(dims)?;
    if elements != len {
        return Err(format!(
            "dims {dims:?} hold {elements} elements but the data has {len}"
        ));
    }
    let mut header = vec![0, 0, DTYPE_U8, ndim];
    for &dim in dims {
        let dim =
            u32::try_from(dim).map_err(|_| format!("dimension {dim} does not fit in a u32"))?;
        header.extend_from_slice(&dim.to_be_bytes());
    }
    Ok(header)
}

/// The product of `dims`, or an error if it overflows `usize`.
fn element_count(dims: &[usize]) -> std::result::Result<usize, String> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            format!(
                "dims {dims:?} overflow: their product exceeds {}",
                usize::MAX
            )
        })
}

fn parse_plain_idx_u8(mut reader: impl Read, path: &Path) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic, path)?;
    if got < magic.len() {
        return Err(DataError::at(
            path,
            format!("truncated header: the 4-byte magic number is cut off after {got} bytes"),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::at(
            path,
            format!(
                "not an IDX file: magic number {:02x} {:02x} {:02x} {:02x} should start with 00 00",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != DTYPE_U8 {
        return Err(DataError::at(
            path,
            format!(
                "element type code 0x{:02x} ({}) is not supported; only 0x08 (unsigned byte) is",
                magic[2],
                dtype_name(magic[2])
            ),
        ));
    }
    let ndim = usize::from(magic[3]);
    if ndim == 0 {
        return Err(DataError::at(path, "the header declares zero dimensions"));
    }

    let mut dims = Vec::with_capacity(ndim);
    for axis in 0..ndim {
        let mut be = [0u8; 4];
        let got = read_up_to(&mut reader, &mut be, path)?;
        if got < be.len() {
            return Err(DataError::at(
                path,
                format!("truncated header: dimension {axis} of {ndim} is cut off"),
            ));
        }
        let dim = usize::try_from(u32::from_be_bytes(be))
            .map_err(|_| DataError::at(path, format!("dimension {axis} does not fit in usize")))?;
        dims.push(dim);
    }
    let expected = element_count(&dims).map_err(|message| DataError::at(path, message))?;

    // Read at most `expected` bytes, growing the buffer as data arrives, then probe for anything left over.
    let mut data = Vec::new();
    let limit = u64::try_from(expected).unwrap_or(u64::MAX);
    reader
        .by_ref()
        .take(limit)
        .read_to_end(&mut data)
        .map_err(|e| DataError::at(path, format!("cannot read the body: {e}")))?;
    if data.len() < expected {
        return Err(DataError::at(
            path,
            format!(
                "truncated body: dims {dims:?} need {expected} bytes but only {} follow the header",
                data.len()
            ),
        ));
    }
    let mut probe = [0u8; 1];
    if read_up_to(&mut reader, &mut probe, path)? != 0 {
        return Err(DataError::at(
            path,
            format!("the file is longer than dims {dims:?} ({expected} bytes of data) announce"),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Fills as much of `buf` as the stream provides; returns how many bytes were read (less than `buf.len()` only at EOF).
fn read_up_to(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::at(path, format!("cannot read: {e}"))),
        }
    }
    Ok(filled)
}

fn dtype_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown type",
    }
}
