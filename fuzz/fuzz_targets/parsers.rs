//! Any bytes as a log line, through every parser and, when they give an event, the scenario
//! engine with the built-in scenarios: nothing may panic.
#![no_main]
use std::cell::RefCell;

use ips::{
    parsers::{self, Clock, LogType},
    scenarios::{Engine, builtin},
};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::new(builtin(), 10_000));
}

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let clock = Clock::utc(1_795_737_600_000);
    let mut alerts = Vec::new();
    for kind in [
        LogType::Auto,
        LogType::Sshd,
        LogType::Nginx,
        LogType::Syslog,
    ] {
        if let Ok(e) = parsers::parse(kind, &line, &clock) {
            ENGINE.with(|engine| engine.borrow_mut().pour(&e, &line, &mut alerts));
        }
    }
});
