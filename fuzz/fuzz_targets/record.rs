//! The record decoder on arbitrary bytes: never panics, and a record it accepts re-encodes to
//! the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut offset = 0;
    while offset < data.len() {
        if let Some((sequence, payload_len, size)) = spillq::__fuzz::parse_record(data, offset) {
            assert!(size >= 16 + payload_len && size % 8 == 0);
            let payload = &data[offset + 16..offset + 16 + payload_len];
            let framed = spillq::__fuzz::encode_record(sequence, payload);
            assert_eq!(
                &framed[..16 + payload_len],
                &data[offset..offset + 16 + payload_len]
            );
            offset += size;
        } else {
            offset += 8;
        }
    }
    // A record framed from the input always parses back.
    let sequence = data.len() as u64;
    let framed = spillq::__fuzz::encode_record(sequence, data);
    assert_eq!(
        spillq::__fuzz::parse_record(&framed, 0),
        Some((sequence, data.len(), framed.len()))
    );
});
