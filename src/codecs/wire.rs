//! A borrowing reader of the protobuf wire format, for decoders that walk a
//! message in place instead of building it with prost (one `String` per label
//! and a `Vec` per repeated field, freed right after the walk).
//!
//! It refuses exactly what prost refuses, so a decoder built on it accepts the
//! same bodies as the generated code: keys over `u32`, wire types 6 and 7, tag
//! 0, varints over ten bytes or past `u64::MAX`, lengths past the end, stray or
//! mismatched end-group tags, nesting past prost's recursion limit, strings that
//! are not UTF-8, and a known field with the wrong wire type. Unknown fields are
//! skipped, and the last occurrence of a singular field wins.

/// prost's recursion limit: a top-level message's fields are read at this
/// depth budget, each nested message or group spends one.
pub const RECURSION_LIMIT: u32 = 100;

/// Why bytes are not the protobuf message they claim to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("invalid varint")]
    InvalidVarint,
    #[error("invalid key value: {0}")]
    InvalidKey(u64),
    #[error("invalid wire type value: {0}")]
    InvalidWireType(u64),
    #[error("invalid tag value: 0")]
    InvalidTag,
    #[error("buffer underflow")]
    BufferUnderflow,
    #[error("unexpected end group tag")]
    UnexpectedEndGroup,
    #[error("recursion limit reached")]
    RecursionLimit,
    #[error("invalid string value: data is not UTF-8 encoded")]
    InvalidUtf8,
    #[error("invalid wire type: {actual:?} (expected {expected:?})")]
    WrongWireType { actual: WireType, expected: WireType },
}

/// The six wire types protobuf defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    SixtyFourBit,
    LengthDelimited,
    StartGroup,
    EndGroup,
    ThirtyTwoBit,
}

impl WireType {
    fn from_key(key: u64) -> Result<WireType, WireError> {
        Ok(match key & 7 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            other => return Err(WireError::InvalidWireType(other)),
        })
    }

    /// Fails unless `self` is what a known field of type `expected` needs.
    pub fn must_be(self, expected: WireType) -> Result<(), WireError> {
        if self == expected { Ok(()) } else { Err(WireError::WrongWireType { actual: self, expected }) }
    }
}

/// The fields of one message, read front to back.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
    /// Depth budget of this message's fields (see [`RECURSION_LIMIT`]).
    depth: u32,
}

impl<'a> Fields<'a> {
    /// The fields of a top-level message.
    pub fn new(bytes: &'a [u8]) -> Self {
        Fields { rest: bytes, depth: RECURSION_LIMIT }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes not read yet (so a caller can tell how far it has read).
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// The next field's number and wire type, or `None` at the end.
    #[inline]
    pub fn next_key(&mut self) -> Result<Option<(u32, WireType)>, WireError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError::InvalidKey(key));
        }
        let wire_type = WireType::from_key(key)?;
        let tag = (key as u32) >> 3;
        if tag == 0 {
            return Err(WireError::InvalidTag);
        }
        Ok(Some((tag, wire_type)))
    }

    /// A varint (prost: at most ten bytes, the tenth at most 1).
    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        // Keys and the lengths of labels and samples are one byte.
        if let Some((&byte, rest)) = self.rest.split_first()
            && byte < 0x80
        {
            self.rest = rest;
            return Ok(u64::from(byte));
        }
        self.long_varint()
    }

    /// A varint of two bytes or more (timestamps, long lengths).
    fn long_varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (i * 7);
            if byte < 0x80 {
                if i == 9 && byte >= 2 {
                    return Err(WireError::InvalidVarint);
                }
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError::InvalidVarint)
    }

    /// Eight little-endian bytes (`double`, `fixed64`).
    #[inline]
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let (head, rest) = self.rest.split_first_chunk::<8>().ok_or(WireError::BufferUnderflow)?;
        self.rest = rest;
        Ok(u64::from_le_bytes(*head))
    }

    /// A length-delimited field's bytes.
    #[inline]
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        if len > self.rest.len() as u64 {
            return Err(WireError::BufferUnderflow);
        }
        let (bytes, rest) = self.rest.split_at(len as usize);
        self.rest = rest;
        Ok(bytes)
    }

    /// A `string` field.
    #[inline]
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        utf8(self.bytes()?)
    }

    /// The fields of an embedded message (wire type already checked), one level deeper.
    #[inline]
    pub fn message(&mut self) -> Result<Fields<'a>, WireError> {
        if self.depth == 0 {
            return Err(WireError::RecursionLimit);
        }
        let bytes = self.bytes()?;
        Ok(Fields { rest: bytes, depth: self.depth - 1 })
    }

    /// Reads a message of two strings, fields 1 and 2 (`prometheus.Label`,
    /// `tsrelay.v1.Label`): `("", "")` for absent ones.
    pub fn name_value(self) -> Result<(&'a str, &'a str), WireError> {
        let (name, value) = self.name_value_bytes()?;
        Ok((utf8(name)?, utf8(value)?))
    }

    /// [`Self::name_value`] without checking that the two strings kept are UTF-8,
    /// for a decoder that can tell it checked the same bytes before; the caller
    /// checks them otherwise. A string sent twice is checked as it is replaced
    /// (prost refuses the message for either copy).
    pub fn name_value_bytes(mut self) -> Result<(&'a [u8], &'a [u8]), WireError> {
        let (mut name, mut value): (Option<&[u8]>, Option<&[u8]>) = (None, None);
        while let Some((tag, wire_type)) = self.next_key()? {
            match tag {
                1 | 2 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    let text = self.bytes()?;
                    let slot = if tag == 1 { &mut name } else { &mut value };
                    if let Some(replaced) = slot.replace(text) {
                        utf8(replaced)?;
                    }
                }
                _ => self.skip(tag, wire_type)?,
            }
        }
        Ok((name.unwrap_or_default(), value.unwrap_or_default()))
    }

    /// Reads a sample message: `double value = 1`, `int64 timestamp = 2`,
    /// and the `int64` fields `ignored` (checked, not kept: remote-write 2.0's
    /// `start_timestamp`).
    pub fn value_timestamp(mut self, ignored: &[u32]) -> Result<(f64, i64), WireError> {
        let (mut value, mut timestamp) = (0.0, 0);
        while let Some((tag, wire_type)) = self.next_key()? {
            match tag {
                1 => {
                    wire_type.must_be(WireType::SixtyFourBit)?;
                    value = f64::from_bits(self.fixed64()?);
                }
                2 => {
                    wire_type.must_be(WireType::Varint)?;
                    timestamp = self.varint()? as i64;
                }
                _ if ignored.contains(&tag) => {
                    wire_type.must_be(WireType::Varint)?;
                    self.varint()?;
                }
                _ => self.skip(tag, wire_type)?,
            }
        }
        Ok((value, timestamp))
    }

    /// Reads field `tag` of a series when it is one of the two fields
    /// `prometheus.TimeSeries` and `tsrelay.v1.Series` share (1: a label, 2: a
    /// sample), appending it to `labels` or `samples`; false for another field.
    pub fn label_or_sample(
        &mut self,
        tag: u32,
        wire_type: WireType,
        labels: &mut Vec<(&'a str, &'a str)>,
        samples: &mut Vec<(f64, i64)>,
    ) -> Result<bool, WireError> {
        self.series_field(tag, wire_type, Fields::name_value, labels, samples)
    }

    /// [`Self::label_or_sample`] with the label's strings as unchecked bytes (see
    /// [`Self::name_value_bytes`]).
    pub fn label_bytes_or_sample(
        &mut self,
        tag: u32,
        wire_type: WireType,
        labels: &mut Vec<(&'a [u8], &'a [u8])>,
        samples: &mut Vec<(f64, i64)>,
    ) -> Result<bool, WireError> {
        self.series_field(tag, wire_type, Fields::name_value_bytes, labels, samples)
    }

    /// Both of the above: a label read by `read_label`, or a sample.
    #[inline(always)]
    fn series_field<L>(
        &mut self,
        tag: u32,
        wire_type: WireType,
        read_label: impl FnOnce(Fields<'a>) -> Result<L, WireError>,
        labels: &mut Vec<L>,
        samples: &mut Vec<(f64, i64)>,
    ) -> Result<bool, WireError> {
        match tag {
            1 => {
                wire_type.must_be(WireType::LengthDelimited)?;
                labels.push(read_label(self.message()?)?);
            }
            2 => {
                wire_type.must_be(WireType::LengthDelimited)?;
                samples.push(self.message()?.value_timestamp(&[])?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Skips a field this decoder does not read.
    pub fn skip(&mut self, tag: u32, wire_type: WireType) -> Result<(), WireError> {
        self.skip_at(tag, wire_type, self.depth)
    }

    fn skip_at(&mut self, tag: u32, wire_type: WireType, depth: u32) -> Result<(), WireError> {
        if depth == 0 {
            return Err(WireError::RecursionLimit);
        }
        match wire_type {
            WireType::Varint => {
                self.varint()?;
            }
            WireType::SixtyFourBit => {
                self.fixed64()?;
            }
            WireType::ThirtyTwoBit => {
                let (_, rest) = self.rest.split_first_chunk::<4>().ok_or(WireError::BufferUnderflow)?;
                self.rest = rest;
            }
            WireType::LengthDelimited => {
                self.bytes()?;
            }
            WireType::StartGroup => loop {
                // A group ends at its own end tag; running out of bytes first
                // is the varint error prost reports for a missing key.
                let Some((inner, inner_type)) = self.next_key()? else { return Err(WireError::InvalidVarint) };
                if inner_type == WireType::EndGroup {
                    if inner != tag {
                        return Err(WireError::UnexpectedEndGroup);
                    }
                    break;
                }
                self.skip_at(inner, inner_type, depth - 1)?;
            },
            WireType::EndGroup => return Err(WireError::UnexpectedEndGroup),
        }
        Ok(())
    }
}

/// The bytes of a `string` field as text; prost refuses a message whose string is not UTF-8.
#[inline]
pub fn utf8(bytes: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| WireError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Each case read as a `prometheus.Sample` (fields 1 `double` and 2
    /// `int64` known, the rest skipped): prost and the reader agree on whether
    /// it is valid.
    #[test]
    fn refuses_what_prost_refuses() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x08\x01",                                         // varint field 1
            b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",     // ten-byte varint, u64::MAX
            b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02",     // past u64::MAX
            b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", // eleven bytes
            b"\x08\x80",                                         // truncated varint
            b"\x00\x01",                                         // tag 0
            b"\x0e",                                             // wire type 6
            b"\x0f",                                             // wire type 7
            b"\x80\x80\x80\x80\x20",                             // key over u32
            b"\x12\x05abc",                                      // length past the end
            b"\x09\x01\x02\x03",                                 // short fixed64
            b"\x0d\x01\x02\x03\x04",                             // fixed32
            b"\x0b\x08\x01\x0c",                                 // group 1 … end 1
            b"\x0b\x08\x01\x14",                                 // group 1 … end 2
            b"\x0b\x08\x01",                                     // group never ended
            b"\x0c",                                             // stray end group
        ];
        for case in cases {
            let prost_ok = crate::proto::prometheus::Sample::decode(*case).is_ok();
            let mut fields = Fields::new(case);
            let ours = (|| {
                while let Some((tag, wire_type)) = fields.next_key()? {
                    match (tag, wire_type) {
                        (1, _) => {
                            wire_type.must_be(WireType::SixtyFourBit)?;
                            fields.fixed64()?;
                        }
                        (2, _) => {
                            wire_type.must_be(WireType::Varint)?;
                            fields.varint()?;
                        }
                        _ => fields.skip(tag, wire_type)?,
                    }
                }
                Ok::<_, WireError>(())
            })();
            assert_eq!(ours.is_ok(), prost_ok, "{case:?}: ours {ours:?}");
        }
    }

    #[test]
    fn nesting_stops_where_prost_stops() {
        for depth in [97usize, 98, 99, 100, 101] {
            // Field 3 of `Sample` is unknown: a chain of nested groups.
            let mut bytes = Vec::new();
            bytes.extend(std::iter::repeat_n(0x1b, depth));
            bytes.extend(std::iter::repeat_n(0x1c, depth));
            let prost_ok = crate::proto::prometheus::Sample::decode(bytes.as_slice()).is_ok();
            let mut fields = Fields::new(&bytes);
            let ours = (|| {
                while let Some((tag, wire_type)) = fields.next_key()? {
                    fields.skip(tag, wire_type)?;
                }
                Ok::<_, WireError>(())
            })();
            assert_eq!(ours.is_ok(), prost_ok, "depth {depth}: {ours:?}");
        }
    }
}
