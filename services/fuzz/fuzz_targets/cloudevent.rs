//! CloudEvents as they arrive from NATS or RabbitMQ (anyone who can publish on the bus).
//! Invariant: an event signet accepts serialises to one it accepts again, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_bus::event::Event;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = Event::from_json(data) else {
        return;
    };
    let Ok(bytes) = event.to_json() else {
        return;
    };
    match Event::from_json(&bytes) {
        Ok(again) => assert_eq!(again, event),
        Err(e) => panic!(
            "event parsed, but its serialisation {:?} does not: {e}",
            String::from_utf8_lossy(&bytes)
        ),
    }
});
