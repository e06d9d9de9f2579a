//! Whatever bytes arrive on the tunnel, decoding returns a message or an error: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::tunnel::{AgentMessage, CloudMessage, request_id_of};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(message) = AgentMessage::decode(text) {
            // What decodes must encode and decode to the same message.
            assert_eq!(AgentMessage::decode(&message.encode()).ok(), Some(message));
        }
        if let Ok(message) = CloudMessage::decode(text) {
            assert_eq!(CloudMessage::decode(&message.encode()).ok(), Some(message));
        }
        let _ = request_id_of(text);
    }
});
