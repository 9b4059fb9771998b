//! The HTTP client the daemon's pull and push jobs use: built once per job and reused, so
//! connections are kept alive between fetches. Statuses are answers, not errors.
use std::time::Duration;

/// A client whose requests give up after `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}
