//! Invariants checked: the segment-header and record decoders never panic on
//! any bytes and any salt; a decoded header or canonical record re-encodes to
//! the same bytes; a record's checksum is the one `docs/format.md` defines;
//! a length above `RECORD_PAYLOAD_MAX` is refused before use; `encode_record`
//! of any fields decodes back to them. The body and its input layout are
//! `statewal::sim::fuzz::decode_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| statewal::sim::fuzz::decode_record(data));
