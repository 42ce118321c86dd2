//! `tsrelay.v1.WriteRequest` as the gRPC server receives it: the bytes of its
//! series, copied once out of the frame, walked in place by
//! [`crate::codecs::protobuf::decode_bytes`]. The generated server takes this
//! type instead of the generated message (build.rs maps it), so no `String`
//! per label and no `Series` tree is built.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, check_wire_type, decode_varint, encode_key, encode_varint, skip_field};

/// The series fields of a request, re-encoded as they came (field 1, length,
/// bytes), and its `id`. Other fields are checked and skipped, as prost
/// skips fields it does not know.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawWriteRequest {
    /// The request's `id` (field 2).
    pub id: u64,
    /// Every `series` field (1), key and length included: a `WriteRequest`
    /// holding only the series.
    pub series: Vec<u8>,
}

const SERIES: u32 = 1;
const ID: u32 = 2;

impl prost::Message for RawWriteRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.series);
        if self.id != 0 {
            encode_key(ID, WireType::Varint, buf);
            encode_varint(self.id, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            SERIES => {
                check_wire_type(WireType::LengthDelimited, wire_type)?;
                let len = decode_varint(buf)?;
                if len > buf.remaining() as u64 {
                    // A length past the end: prost words the error, given the
                    // length again in front of what is left.
                    let mut length = Vec::with_capacity(10);
                    encode_varint(len, &mut length);
                    return skip_field(WireType::LengthDelimited, tag, &mut length.as_slice().chain(&mut *buf), ctx);
                }
                encode_key(SERIES, WireType::LengthDelimited, &mut self.series);
                encode_varint(len, &mut self.series);
                let start = self.series.len();
                self.series.resize(start + len as usize, 0);
                buf.copy_to_slice(&mut self.series[start..]);
                Ok(())
            }
            ID => {
                check_wire_type(WireType::Varint, wire_type)?;
                self.id = decode_varint(buf)?;
                Ok(())
            }
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let id = if self.id != 0 { 1 + prost::encoding::encoded_len_varint(self.id) } else { 0 };
        self.series.len() + id
    }

    fn clear(&mut self) {
        self.id = 0;
        self.series.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Label, Sample, Series, WriteRequest};
    use prost::Message;

    /// The raw form holds exactly the series bytes: walking it gives what
    /// decoding the generated message gives, and it encodes back to the same bytes.
    #[test]
    fn keeps_the_series_bytes_and_the_id() {
        let req = WriteRequest {
            id: 42,
            series: vec![
                Series {
                    labels: vec![Label { name: "__name__".into(), value: "up".into() }],
                    samples: vec![Sample { value: 1.0, timestamp: 5 }],
                    ..Default::default()
                };
                2
            ],
        };
        let bytes = req.encode_to_vec();
        let raw = RawWriteRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(raw.id, 42);
        assert_eq!(raw.encode_to_vec(), bytes);
        let limits = crate::codecs::limits::DecodeLimits::unlimited();
        let walked = crate::codecs::protobuf::decode_bytes(&raw.series, 1, &limits).expect("walks");
        let generated = crate::codecs::protobuf::decode_request(req, 1);
        assert!(walked.samples.len() == 2 && walked.same_as(&crate::codecs::protobuf::Decoded { id: 0, ..generated }));
        // A series field with the wrong wire type or a length past the end is refused.
        assert!(RawWriteRequest::decode(&b"\x08\x01"[..]).is_err());
        assert!(RawWriteRequest::decode(&b"\x0a\x05ab"[..]).is_err());
    }
}
