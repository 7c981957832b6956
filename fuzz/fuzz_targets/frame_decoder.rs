//! Fuzzes the bridge's frame and message decoder with arbitrary bytes from a terminal: it must
//! never panic, never take more than it was given, and whatever decodes must encode back to a
//! body that decodes to the same message.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mtml_bridge::wire::Envelope;
use mtml_bridge::wire::frame::take_body;

fuzz_target!(|data: &[u8]| {
    let mut buffer = BytesMut::from(data);
    while let Ok(Some(body)) = take_body(&mut buffer) {
        if let Ok(envelope) = Envelope::decode(&body) {
            let again = Envelope::decode(&envelope.encode()).expect("re-encoded message decodes");
            assert_eq!(again.message.type_name(), envelope.message.type_name());
            assert_eq!(again.seq, envelope.seq);
        }
    }
    // The same bytes as a bare body.
    let _ = Envelope::decode(data);
});
