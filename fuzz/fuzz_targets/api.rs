//! Any bytes as the body of each API request: a clear error or a value, never a panic.
#![no_main]
use ips::api::{AddRequest, AllowRequest, BouncerRequest, DetachRequest, ImportRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<AddRequest>(data);
    let _ = serde_json::from_slice::<AllowRequest>(data);
    let _ = serde_json::from_slice::<ImportRequest>(data);
    let _ = serde_json::from_slice::<DetachRequest>(data);
    let _ = serde_json::from_slice::<BouncerRequest>(data);
    let _ = serde_json::from_slice::<ips::decisions::NewDecision>(data);
});
