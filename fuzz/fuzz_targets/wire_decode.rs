//! The wire decoder on arbitrary bytes: never panics, and whatever decodes
//! encodes again to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster::wire::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data)
        && let Ok(again) = m.encode()
    {
        assert_eq!(Message::decode(&again).ok(), Some(m));
    }
});
