//! The hub scenario shared by the SQLite and PostgreSQL tests.
use ips::{
    blocklists::lapi,
    hub::{HubStore, server},
};

/// The enrolment token the scenario uses.
pub const TOKEN: &str = "enrol-me-please-0123";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn enrol(hub: &str, token: &str, name: &str) -> (u16, serde_json::Value) {
    let mut r = agent()
        .post(&format!("{hub}/v1/hub/enroll"))
        .send_json(serde_json::json!({ "token": token, "name": name }))
        .expect("enrol");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or_default())
}

fn push(hub: &str, key: &str, values: &[&str]) -> u16 {
    let now = ips::calendar::now_ms();
    let body: Vec<_> = values
        .iter()
        .map(|v| serde_json::json!({ "value": v, "scenario": "ssh-bf", "time_ms": now }))
        .collect();
    agent()
        .post(&format!("{hub}/v1/hub/signals"))
        .header("X-Api-Key", key)
        .send_json(body)
        .expect("push")
        .status()
        .as_u16()
}

fn values(d: &lapi::Delta) -> Vec<String> {
    d.new.iter().map(|(p, _, _)| p.to_string()).collect()
}

/// Five agents against a hub on `store`: enrolment, K = 3 consensus, a poisoner that cannot list,
/// deltas through the CrowdSec-shaped stream.
pub fn five_agents(store: HubStore) {
    let addr = server::spawn(store, "127.0.0.1:0".parse().expect("addr")).expect("hub up");
    let hub = format!("http://{addr}");
    assert_eq!(enrol(&hub, "wrong", "x").0, 403);
    let keys: Vec<String> = (0..5)
        .map(|i| {
            let (status, v) = enrol(&hub, TOKEN, &format!("agent{i}"));
            assert_eq!(status, 201);
            v["api_key"].as_str().expect("key").to_owned()
        })
        .collect();
    assert_eq!(push(&hub, "not-a-key", &["203.0.113.9"]), 403);

    // Agent 4 reports 198.18.0.66 a hundred times: still one agent.
    for _ in 0..100 {
        assert_eq!(push(&hub, &keys[4], &["198.18.0.66"]), 200);
    }
    // Two agents report 203.0.113.9: below K = 3.
    push(&hub, &keys[0], &["203.0.113.9"]);
    push(&hub, &keys[1], &["203.0.113.9"]);
    let client = ips::http::agent(std::time::Duration::from_secs(10));
    let first = lapi::pull(&client, &hub, &keys[3], true).expect("pull");
    assert!(first.new.is_empty());
    // A third agent: listed. Agent 3 gets it as a delta.
    push(&hub, &keys[2], &["203.0.113.9"]);
    let d = lapi::pull(&client, &hub, &keys[3], false).expect("pull");
    assert_eq!(values(&d), ["203.0.113.9"]);
    assert!(d.new[0].1 > 0, "a positive duration");
    // Nothing new since: an empty delta.
    let d = lapi::pull(&client, &hub, &keys[3], false).expect("pull");
    assert_eq!(d, lapi::Delta::default());
    // Another agent starting up gets the whole list; the poisoner's address is not on it.
    let d = lapi::pull(&client, &hub, &keys[4], true).expect("pull");
    assert_eq!(values(&d), ["203.0.113.9"]);
    // The plain list needs a key too.
    let status = agent()
        .get(&format!("{hub}/v1/hub/list"))
        .call()
        .expect("list")
        .status()
        .as_u16();
    assert_eq!(status, 403);
    let list = agent()
        .get(&format!("{hub}/v1/hub/list"))
        .header("X-Api-Key", &keys[0])
        .call()
        .expect("list")
        .body_mut()
        .read_to_string()
        .expect("body");
    assert_eq!(list, "203.0.113.9\n");

    // Catch-alls are refused however many report them: nothing shorter than the minimum
    // prefix is listed.
    for key in &keys {
        let mut r = agent()
            .post(&format!("{hub}/v1/hub/signals"))
            .header("X-Api-Key", key)
            .send_json(serde_json::json!([
                {"value": "32.0.0.0/3", "scenario": "x", "time_ms": 0},
                {"value": "2000::/3", "scenario": "x", "time_ms": 0},
            ]))
            .expect("push");
        let v: serde_json::Value = r.body_mut().read_json().expect("answer");
        assert_eq!(v["refused"], 2, "{v}");
    }
    let d = lapi::pull(&client, &hub, &keys[3], false).expect("pull");
    assert_eq!(d, lapi::Delta::default(), "a catch-all was listed");

    // Wrong enrolment tokens are throttled per address (one was sent at the start).
    let statuses: Vec<u16> = (0..6).map(|_| enrol(&hub, "wrong", "x").0).collect();
    assert_eq!(statuses, [403, 403, 403, 403, 429, 429], "{statuses:?}");
    // Even the right token waits out the minute from that address.
    assert_eq!(enrol(&hub, TOKEN, "late").0, 429);
}

/// One holder of the enrolment token enrols ten agents at once on a hub whose trust ramps over
/// 7 days (K = 3, `store`'s config): fresh, they list nothing; half-way up the ramp six of them
/// reach K where five do not; three approved agents reach it at once.
pub fn sybil(mut h: HubStore) {
    const DAY: i64 = 86_400_000;
    let sig = |v: &str, t: i64| ips::hub::Signal {
        value: v.parse().expect("value"),
        scenario: "ssh-bf".into(),
        time_ms: t,
    };
    let sybils: Vec<i64> = (0..10)
        .map(|i| h.enrol(TOKEN, &format!("s{i}"), 0).expect("enrol").0)
        .collect();
    for a in &sybils {
        h.push(*a, &[sig("45.1.2.3", 1000)], 1000).expect("push");
    }
    assert!(
        h.listed().expect("listed").is_empty(),
        "fresh agents listed alone"
    );
    let at = 3 * DAY + DAY / 2;
    for a in &sybils[..5] {
        h.push(*a, &[sig("45.1.2.4", at)], at).expect("push");
    }
    assert!(h.listed().expect("listed").is_empty());
    h.push(sybils[5], &[sig("45.1.2.4", at)], at).expect("push");
    assert_eq!(
        h.listed().expect("listed"),
        vec!["45.1.2.4".parse().expect("value")]
    );
    let fresh: Vec<i64> = (0..3)
        .map(|i| h.enrol(TOKEN, &format!("ok{i}"), at).expect("enrol").0)
        .collect();
    for i in 0..3 {
        assert!(h.approve(&format!("ok{i}")).expect("approve"));
    }
    assert!(!h.approve("nobody").expect("approve"));
    for a in &fresh {
        h.push(*a, &[sig("45.1.2.5", at + 1)], at + 1)
            .expect("push");
    }
    assert_eq!(h.listed().expect("listed").len(), 2);
}
