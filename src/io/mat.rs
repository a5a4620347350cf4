//! A small, defensive reader for MATLAB MAT-file version 5 (as written by MATLAB `save -v6`/`-v7`,
//! OTBioLab+ and scipy): zlib-compressed elements (`miCOMPRESSED`), `miMATRIX` arrays with array
//! flags / dimensions / name, packed small-element tags, storage types that differ from the array
//! class (e.g. a `double` stored as `uint16`), 8-byte padding, cell arrays and structs (recursive),
//! and char arrays stored as UTF-8, UTF-16 or UTF-32. Both byte orders are accepted.
//!
//! Every length field is checked against the bytes that remain before anything is allocated, so a
//! truncated or corrupt file gives [`Error::Format`], never a panic or a huge allocation. Sparse,
//! object and function-handle arrays are reported as [`MatValue::Unsupported`] (the rest of the
//! file still loads). MAT v7.3 (HDF5) and v4 files are rejected with a clear message.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Numeric MATLAB classes other than `single` (which keeps its own f32 variant to save memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericClass {
    Double,
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
}

/// One decoded MATLAB array. `dims` are MATLAB's dimensions (at least two); element data are in
/// MATLAB's column-major order (index `i + dims[0] * j` for a 2-D array).
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    /// `double` and integer classes, converted to f64 (64-bit integers beyond 2^53 lose precision).
    Numeric {
        class: NumericClass,
        dims: Vec<usize>,
        real: Vec<f64>,
        imag: Option<Vec<f64>>,
        /// MATLAB `logical` (stored as uint8 with the logical flag).
        logical: bool,
    },
    /// `single` arrays, kept as f32.
    Single {
        dims: Vec<usize>,
        real: Vec<f32>,
        imag: Option<Vec<f32>>,
    },
    /// Char array. A row vector is its text; an m×n array (m > 1) becomes its m rows joined by `'\n'`.
    Char { dims: Vec<usize>, text: String },
    /// Cell array; `items` in column-major order.
    Cell {
        dims: Vec<usize>,
        items: Vec<MatValue>,
    },
    /// Struct array; `values[element * fields.len() + field]`, elements in column-major order.
    Struct {
        dims: Vec<usize>,
        fields: Vec<String>,
        values: Vec<MatValue>,
    },
    /// A class this reader does not decode (sparse, object, function handle, opaque); raw MATLAB
    /// class code.
    Unsupported { class: u8, dims: Vec<usize> },
}

/// A named top-level variable.
#[derive(Debug, Clone, PartialEq)]
pub struct MatVariable {
    pub name: String,
    pub global: bool,
    pub value: MatValue,
}

/// A parsed MAT v5 file: the 116-byte descriptive header text and the variables in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    pub header_text: String,
    pub variables: Vec<MatVariable>,
}

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

/// Deepest nesting of cells/structs accepted (guards the stack against crafted files).
const MAX_DEPTH: usize = 64;
/// An inflated element holds one tag plus at most u32::MAX bytes.
const MAX_INFLATED: u64 = u32::MAX as u64 + 8;

fn fmt_err(detail: impl Into<String>) -> Error {
    Error::format("MAT v5 file", detail)
}

/// Bounds-checked reader over one buffer with a fixed byte order.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], big_endian: bool) -> Self {
        Cursor {
            buf,
            pos: 0,
            big_endian,
        }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn u32_at(&self, at: usize) -> Result<u32> {
        let b: [u8; 4] = self
            .buf
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| fmt_err(format!("truncated tag at byte {at}")))?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    /// Reads one data element tag and returns (type, payload). Handles the packed small-element
    /// form (type in the low 16 bits, byte count 1..=4 in the high 16 bits, data in the next 4
    /// bytes) and 8-byte padding after the payload (none after `miCOMPRESSED`).
    fn element(&mut self) -> Result<(u32, &'a [u8])> {
        let start = self.pos;
        let w0 = self.u32_at(start)?;
        if w0 >> 16 != 0 {
            let (typ, n) = (w0 & 0xffff, (w0 >> 16) as usize);
            if n > 4 {
                return Err(fmt_err(format!(
                    "small element at byte {start} claims {n} > 4 bytes"
                )));
            }
            if self.remaining() < 8 {
                return Err(fmt_err(format!("truncated small element at byte {start}")));
            }
            self.pos = start + 8;
            return Ok((typ, &self.buf[start + 4..start + 4 + n]));
        }
        let n = self.u32_at(start + 4)? as usize;
        let body = start + 8;
        if n > self.buf.len() - body {
            return Err(fmt_err(format!(
                "element at byte {start} (type {w0}) claims {n} bytes, only {} remain",
                self.buf.len() - body
            )));
        }
        let end = body + n;
        self.pos = if w0 == MI_COMPRESSED {
            end
        } else {
            end.div_ceil(8).saturating_mul(8).min(self.buf.len())
        };
        Ok((w0, &self.buf[body..end]))
    }
    /// Reads an element and requires one of the given types.
    fn expect(&mut self, what: &str, types: &[u32]) -> Result<(u32, &'a [u8])> {
        let (typ, data) = self.element()?;
        if types.contains(&typ) {
            Ok((typ, data))
        } else {
            Err(fmt_err(format!(
                "{what}: data type {typ}, expected one of {types:?}"
            )))
        }
    }
}

impl MatFile {
    /// Reads and parses a MAT v5 file. A missing or unreadable file is [`Error::Io`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// Parses the bytes of a MAT v5 file (128-byte header, then data elements).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 128 {
            return Err(fmt_err(format!(
                "{} bytes, shorter than the 128-byte header",
                bytes.len()
            )));
        }
        let header_text = String::from_utf8_lossy(&bytes[..116])
            .trim_end_matches([' ', '\0'])
            .to_string();
        if header_text.starts_with("MATLAB 7.3") {
            return Err(fmt_err(
                "MAT v7.3 (HDF5) files are not supported; re-save with `save -v7`",
            ));
        }
        let big_endian = match &bytes[126..128] {
            b"IM" => false,
            b"MI" => true,
            other => {
                return Err(fmt_err(format!(
                    "no endian indicator (got {other:?}); not a MAT v5 file (v4 is unsupported)"
                )));
            }
        };
        let version = if big_endian {
            u16::from_be_bytes([bytes[124], bytes[125]])
        } else {
            u16::from_le_bytes([bytes[124], bytes[125]])
        };
        if version != 0x0100 {
            return Err(fmt_err(format!("version {version:#06x}, expected 0x0100")));
        }
        let mut cur = Cursor::new(&bytes[128..], big_endian);
        let mut variables = Vec::new();
        while cur.remaining() > 0 {
            let (typ, data) = cur.element()?;
            let inflated;
            let matrix = match typ {
                MI_MATRIX => data,
                MI_COMPRESSED => {
                    inflated = inflate(data)?;
                    let mut inner = Cursor::new(&inflated, big_endian);
                    inner.expect("compressed variable", &[MI_MATRIX])?.1
                }
                other => {
                    return Err(fmt_err(format!(
                        "top-level element of type {other}; expected miMATRIX or miCOMPRESSED"
                    )));
                }
            };
            let (name, global, value) = parse_matrix(matrix, big_endian, 0)?;
            variables.push(MatVariable {
                name,
                global,
                value,
            });
        }
        Ok(MatFile {
            header_text,
            variables,
        })
    }

    /// The variable called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&MatValue> {
        self.variables
            .iter()
            .find(|v| v.name == name)
            .map(|v| &v.value)
    }

    /// The variable called `name`, or [`Error::Format`] naming it.
    pub fn require(&self, name: &str) -> Result<&MatValue> {
        self.get(name)
            .ok_or_else(|| fmt_err(format!("variable `{name}` is missing")))
    }
}

fn inflate(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(MAX_INFLATED)
        .read_to_end(&mut out)
        .map_err(|e| fmt_err(format!("zlib stream of a compressed variable: {e}")))?;
    Ok(out)
}

/// Parses the payload of one `miMATRIX` element: returns (name, global flag, value).
fn parse_matrix(data: &[u8], big_endian: bool, depth: usize) -> Result<(String, bool, MatValue)> {
    if depth > MAX_DEPTH {
        return Err(fmt_err(format!("arrays nested deeper than {MAX_DEPTH}")));
    }
    if data.is_empty() {
        // MATLAB writes an empty cell slot as a zero-length miMATRIX.
        let empty = MatValue::Numeric {
            class: NumericClass::Double,
            dims: vec![0, 0],
            real: Vec::new(),
            imag: None,
            logical: false,
        };
        return Ok((String::new(), false, empty));
    }
    let mut c = Cursor::new(data, big_endian);
    let (_, flags) = c.expect("array flags", &[MI_UINT32])?;
    if flags.len() != 8 {
        return Err(fmt_err(format!(
            "array flags have {} bytes, expected 8",
            flags.len()
        )));
    }
    let fw = Cursor::new(flags, big_endian).u32_at(0)?;
    let class = (fw & 0xff) as u8;
    let complex = fw & 0x0800 != 0;
    let global = fw & 0x0400 != 0;
    let logical = fw & 0x0200 != 0;

    let (_, dim_bytes) = c.expect("dimensions", &[MI_INT32])?;
    if !dim_bytes.len().is_multiple_of(4) || dim_bytes.len() < 8 {
        return Err(fmt_err(format!(
            "dimensions field of {} bytes (need >= 2 int32)",
            dim_bytes.len()
        )));
    }
    let dc = Cursor::new(dim_bytes, big_endian);
    let mut dims = Vec::with_capacity(dim_bytes.len() / 4);
    let mut numel: usize = 1;
    for k in 0..dim_bytes.len() / 4 {
        let d = dc.u32_at(4 * k)? as i32;
        let d = usize::try_from(d).map_err(|_| fmt_err(format!("negative dimension {d}")))?;
        numel = numel
            .checked_mul(d)
            .ok_or_else(|| fmt_err(format!("dimensions {dims:?}x{d} overflow")))?;
        dims.push(d);
    }

    let (_, name_bytes) = c.expect("array name", &[MI_INT8, MI_UINT8])?;
    let name = std::str::from_utf8(name_bytes)
        .map_err(|_| fmt_err("array name is not valid UTF-8"))?
        .to_string();

    let value = match class {
        1 => {
            // Each cell item needs at least one 8-byte tag: bound the allocation by the bytes left.
            if numel > c.remaining() / 8 {
                return Err(fmt_err(format!(
                    "cell `{name}` claims {numel} items in {} bytes",
                    c.remaining()
                )));
            }
            let mut items = Vec::with_capacity(numel);
            for _ in 0..numel {
                let (_, m) = c.expect("cell item", &[MI_MATRIX])?;
                items.push(parse_matrix(m, big_endian, depth + 1)?.2);
            }
            MatValue::Cell { dims, items }
        }
        2 => {
            let (_, fl) = c.expect("struct field-name length", &[MI_INT32])?;
            if fl.len() != 4 {
                return Err(fmt_err("struct field-name length must be one int32"));
            }
            let flen = Cursor::new(fl, big_endian).u32_at(0)? as usize;
            let (_, fnames) = c.expect("struct field names", &[MI_INT8, MI_UINT8])?;
            if flen == 0 || !fnames.len().is_multiple_of(flen) {
                return Err(fmt_err(format!(
                    "struct field names: {} bytes not a multiple of {flen}",
                    fnames.len()
                )));
            }
            let fields = fnames
                .chunks(flen)
                .map(|ch| {
                    let end = ch.iter().position(|&b| b == 0).unwrap_or(ch.len());
                    std::str::from_utf8(&ch[..end])
                        .map(str::to_string)
                        .map_err(|_| fmt_err("struct field name is not valid UTF-8"))
                })
                .collect::<Result<Vec<_>>>()?;
            let n = numel
                .checked_mul(fields.len())
                .filter(|&n| n <= c.remaining() / 8)
                .ok_or_else(|| fmt_err(format!("struct `{name}` larger than its bytes")))?;
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                let (_, m) = c.expect("struct field", &[MI_MATRIX])?;
                values.push(parse_matrix(m, big_endian, depth + 1)?.2);
            }
            MatValue::Struct {
                dims,
                fields,
                values,
            }
        }
        4 => {
            let text = if numel == 0 && c.remaining() == 0 {
                String::new()
            } else {
                let (typ, raw) = c.element()?;
                decode_chars(typ, raw, big_endian, &dims)?
            };
            MatValue::Char { dims, text }
        }
        3 | 5 | 16 | 17 => MatValue::Unsupported { class, dims },
        6 | 8..=15 => {
            let nclass = match class {
                6 => NumericClass::Double,
                8 => NumericClass::Int8,
                9 => NumericClass::UInt8,
                10 => NumericClass::Int16,
                11 => NumericClass::UInt16,
                12 => NumericClass::Int32,
                13 => NumericClass::UInt32,
                14 => NumericClass::Int64,
                _ => NumericClass::UInt64,
            };
            let real = numeric_part(&mut c, numel, big_endian, "real", |x| x)?;
            let imag = if complex {
                Some(numeric_part(&mut c, numel, big_endian, "imaginary", |x| x)?)
            } else {
                None
            };
            MatValue::Numeric {
                class: nclass,
                dims,
                real,
                imag,
                logical,
            }
        }
        7 => {
            let real = numeric_part(&mut c, numel, big_endian, "real", |x| x as f32)?;
            let imag = if complex {
                Some(numeric_part(&mut c, numel, big_endian, "imaginary", |x| {
                    x as f32
                })?)
            } else {
                None
            };
            MatValue::Single { dims, real, imag }
        }
        other => return Err(fmt_err(format!("unknown array class {other}"))),
    };
    Ok((name, global, value))
}

/// Reads one numeric data element (any numeric storage type) and converts each element with `f`;
/// its element count must equal `numel`.
fn numeric_part<T>(
    c: &mut Cursor<'_>,
    numel: usize,
    big_endian: bool,
    part: &str,
    f: impl Fn(f64) -> T,
) -> Result<Vec<T>> {
    let (typ, raw) = c.element()?;
    let size = match typ {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        other => {
            return Err(fmt_err(format!(
                "{part} part stored as non-numeric type {other}"
            )));
        }
    };
    if !raw.len().is_multiple_of(size) || raw.len() / size != numel {
        return Err(fmt_err(format!(
            "{part} part has {} bytes of type {typ}, expected {numel} elements",
            raw.len()
        )));
    }
    let be = big_endian;
    macro_rules! conv {
        ($t:ty) => {
            raw.chunks_exact(size)
                .map(|ch| {
                    let a = ch.try_into().unwrap_or_default();
                    f((if be {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }) as f64)
                })
                .collect()
        };
    }
    Ok(match typ {
        MI_INT8 => conv!(i8),
        MI_UINT8 => conv!(u8),
        MI_INT16 => conv!(i16),
        MI_UINT16 => conv!(u16),
        MI_INT32 => conv!(i32),
        MI_UINT32 => conv!(u32),
        MI_SINGLE => conv!(f32),
        MI_DOUBLE => conv!(f64),
        MI_INT64 => conv!(i64),
        _ => conv!(u64),
    })
}

/// Decodes char data: UTF-8 (`miUTF8`), Latin-1 (`miUINT8`/`miINT8`), UTF-16 (`miUTF16`/`miUINT16`,
/// MATLAB's default) or UTF-32, then reorders a column-major m×n array into rows joined by `'\n'`.
fn decode_chars(typ: u32, raw: &[u8], big_endian: bool, dims: &[usize]) -> Result<String> {
    let chars: Vec<char> = match typ {
        MI_UTF8 => std::str::from_utf8(raw)
            .map_err(|_| fmt_err("char data is not valid UTF-8"))?
            .chars()
            .collect(),
        MI_UINT8 | MI_INT8 => raw.iter().map(|&b| b as char).collect(),
        MI_UTF16 | MI_UINT16 => {
            if !raw.len().is_multiple_of(2) {
                return Err(fmt_err("UTF-16 char data of odd length"));
            }
            let units = raw.chunks_exact(2).map(|b| {
                if big_endian {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    u16::from_le_bytes([b[0], b[1]])
                }
            });
            char::decode_utf16(units)
                .collect::<std::result::Result<Vec<char>, _>>()
                .map_err(|_| fmt_err("char data is not valid UTF-16"))?
        }
        MI_UTF32 | MI_UINT32 | MI_INT32 => {
            if !raw.len().is_multiple_of(4) {
                return Err(fmt_err("UTF-32 char data length not a multiple of 4"));
            }
            let c = Cursor::new(raw, big_endian);
            (0..raw.len() / 4)
                .map(|k| {
                    c.u32_at(4 * k).and_then(|u| {
                        char::from_u32(u).ok_or_else(|| fmt_err("invalid UTF-32 char"))
                    })
                })
                .collect::<Result<Vec<char>>>()?
        }
        other => return Err(fmt_err(format!("char data stored as type {other}"))),
    };
    let rows = dims.first().copied().unwrap_or(1);
    // An m×0 array is empty text (not m − 1 newlines: m comes from the file and can be 2^31).
    if rows <= 1 || chars.is_empty() || !chars.len().is_multiple_of(rows) {
        return Ok(chars.into_iter().collect());
    }
    let cols = chars.len() / rows;
    let lines: Vec<String> = (0..rows)
        .map(|r| (0..cols).map(|j| chars[r + rows * j]).collect())
        .collect();
    Ok(lines.join("\n"))
}

impl MatValue {
    /// MATLAB dimensions of the array.
    pub fn dims(&self) -> &[usize] {
        match self {
            MatValue::Numeric { dims, .. }
            | MatValue::Single { dims, .. }
            | MatValue::Char { dims, .. }
            | MatValue::Cell { dims, .. }
            | MatValue::Struct { dims, .. }
            | MatValue::Unsupported { dims, .. } => dims,
        }
    }

    /// A short class description for error messages (`"double"`, `"single"`, `"cell"`, ...).
    pub fn class_name(&self) -> &'static str {
        match self {
            MatValue::Numeric { logical: true, .. } => "logical",
            MatValue::Numeric { class, .. } => match class {
                NumericClass::Double => "double",
                NumericClass::Int8 => "int8",
                NumericClass::UInt8 => "uint8",
                NumericClass::Int16 => "int16",
                NumericClass::UInt16 => "uint16",
                NumericClass::Int32 => "int32",
                NumericClass::UInt32 => "uint32",
                NumericClass::Int64 => "int64",
                NumericClass::UInt64 => "uint64",
            },
            MatValue::Single { .. } => "single",
            MatValue::Char { .. } => "char",
            MatValue::Cell { .. } => "cell",
            MatValue::Struct { .. } => "struct",
            MatValue::Unsupported { .. } => "unsupported class",
        }
    }

    /// If this is a 1×1 cell, its single item; otherwise `self` (OTBioLab wraps arrays in cells).
    pub fn unwrap_cell(&self) -> &MatValue {
        match self {
            MatValue::Cell { items, .. } if items.len() == 1 => &items[0],
            other => other,
        }
    }

    /// The real part as f64 (numeric or single arrays), column-major; `None` for other classes.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        match self {
            MatValue::Numeric { real, .. } => Some(real.clone()),
            MatValue::Single { real, .. } => Some(real.iter().map(|&x| x as f64).collect()),
            _ => None,
        }
    }

    /// The value of a real numeric/single array with exactly one element.
    pub fn scalar(&self) -> Option<f64> {
        match self {
            MatValue::Numeric { real, .. } if real.len() == 1 => Some(real[0]),
            MatValue::Single { real, .. } if real.len() == 1 => Some(real[0] as f64),
            _ => None,
        }
    }

    /// The text of a char array.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MatValue::Char { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The items of a cell array.
    pub fn cell_items(&self) -> Option<&[MatValue]> {
        match self {
            MatValue::Cell { items, .. } => Some(items),
            _ => None,
        }
    }

    /// Field `field` of element `index` (column-major) of a struct array.
    pub fn struct_field(&self, index: usize, field: &str) -> Option<&MatValue> {
        match self {
            MatValue::Struct { fields, values, .. } => {
                let k = fields.iter().position(|f| f == field)?;
                values.get(index.checked_mul(fields.len())?.checked_add(k)?)
            }
            _ => None,
        }
    }
}
