//! CrowdSec interoperability, both ways: the daemon serves the LAPI bouncer endpoints (checked
//! with our LAPI client and raw requests), and pulls decisions from a LAPI (a stub serving the
//! shapes CrowdSec sends) into the kernel.
use std::{
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use ips::blocklists::lapi;
use ips_tests::{Lab, http_stub, in_netns, packet::Frame};

fn get(ns: &str, url: &str, key: Option<&str>) -> (u16, String) {
    let (url, key) = (url.to_owned(), key.map(str::to_owned));
    in_netns(ns, move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.get(&url);
        if let Some(k) = key {
            req = req.header("X-Api-Key", &k);
        }
        let mut resp = req.call().expect("request");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().expect("body"))
    })
}

fn pull(lab: &Lab, key: &str, startup: bool) -> lapi::Delta {
    let key = key.to_owned();
    in_netns(&lab.a, move || {
        let client = ips::http::agent(std::time::Duration::from_secs(10));
        lapi::pull(&client, "http://127.0.0.1:8080", &key, startup).expect("pull")
    })
}

fn values(v: &[(ips::prefix::Prefix, i64, String)]) -> Vec<String> {
    v.iter().map(|(p, _, _)| p.to_string()).collect()
}

#[test]
fn serves_the_bouncer_stream_with_api_keys() {
    let mut lab = Lab::new("lapi");
    lab.start_daemon();
    lab.ips(&["decisions", "add", "203.0.113.7", "--reason", "manual test"]);
    let added = lab.ips_json(&["bouncers", "add", "nginx"]);
    let key = added["api_key"].as_str().expect("key").to_owned();
    assert_eq!(key.len(), 64);
    // No key, a wrong key: 403.
    let (s, _) = get(
        &lab.a,
        "http://127.0.0.1:8080/v1/decisions/stream?startup=true",
        None,
    );
    assert_eq!(s, 403);
    let (s, _) = get(
        &lab.a,
        "http://127.0.0.1:8080/v1/decisions/stream?startup=true",
        Some("nope"),
    );
    assert_eq!(s, 403);
    // Startup: everything active.
    let d = pull(&lab, &key, true);
    assert_eq!(values(&d.new), ["203.0.113.7"]);
    // Then deltas only.
    lab.ips(&["decisions", "add", "198.51.100.0/24", "--duration", "1h"]);
    let d = pull(&lab, &key, false);
    assert_eq!(values(&d.new), ["198.51.100.0/24"]);
    assert!(d.deleted.is_empty());
    lab.ips(&["decisions", "delete", "203.0.113.7"]);
    let d = pull(&lab, &key, false);
    assert!(d.new.is_empty());
    assert_eq!(
        d.deleted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["203.0.113.7"]
    );
    // Blocklist entries reach bouncers too, and a list refresh sends only what changed.
    let list = lab.dir.join("l.txt");
    let path = list.to_string_lossy().into_owned();
    std::fs::write(&list, "45.0.0.0/24\n45.1.1.1\n").expect("write list");
    lab.ips(&["blocklist", "import", &path, "--name", "l"]);
    let d = pull(&lab, &key, false);
    assert_eq!(values(&d.new), ["45.0.0.0/24", "45.1.1.1"]);
    assert!(d.deleted.is_empty());
    std::fs::write(&list, "45.0.0.0/24\n45.2.2.2\n").expect("write list");
    lab.ips(&["blocklist", "import", &path, "--name", "l"]);
    let d = pull(&lab, &key, false);
    assert_eq!(values(&d.new), ["45.2.2.2"]);
    assert_eq!(
        d.deleted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["45.1.1.1"]
    );
    let d = pull(&lab, &key, true);
    assert_eq!(
        values(&d.new),
        ["198.51.100.0/24", "45.0.0.0/24", "45.2.2.2"]
    );
    // The whole set startup pulls share is made again after any change: a second bouncer
    // starting after a ban and after an unban sees each.
    let other = lab.ips_json(&["bouncers", "add", "other"])["api_key"]
        .as_str()
        .expect("key")
        .to_owned();
    lab.ips(&["decisions", "add", "45.9.9.9"]);
    let d = pull(&lab, &other, true);
    assert_eq!(
        values(&d.new),
        ["198.51.100.0/24", "45.9.9.9", "45.0.0.0/24", "45.2.2.2"]
    );
    lab.ips(&["decisions", "delete", "45.9.9.9"]);
    let d = pull(&lab, &other, true);
    assert_eq!(
        values(&d.new),
        ["198.51.100.0/24", "45.0.0.0/24", "45.2.2.2"]
    );
    let d = pull(&lab, &key, true);
    assert_eq!(
        values(&d.new),
        ["198.51.100.0/24", "45.0.0.0/24", "45.2.2.2"]
    );
    let d = pull(&lab, &key, false);
    assert_eq!(values(&d.new), Vec::<String>::new());
    assert_eq!(
        d.deleted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "the bouncer started after 45.9.9.9 came and went"
    );
    // Nothing new: CrowdSec's shape with nulls.
    let (s, body) = get(
        &lab.a,
        "http://127.0.0.1:8080/v1/decisions/stream",
        Some(&key),
    );
    assert_eq!((s, body.as_str()), (200, r#"{"new":null,"deleted":null}"#));
    // Point queries.
    let (s, body) = get(
        &lab.a,
        "http://127.0.0.1:8080/v1/decisions?ip=198.51.100.9",
        Some(&key),
    );
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v[0]["value"], "198.51.100.0/24");
    assert_eq!(v[0]["scope"], "Range");
    assert_eq!(v[0]["type"], "ban");
    assert_eq!(v[0]["origin"], "cscli");
    let (_, body) = get(
        &lab.a,
        "http://127.0.0.1:8080/v1/decisions?ip=192.0.2.1",
        Some(&key),
    );
    assert_eq!(body, "null");
    // Without a filter: every active decision, as CrowdSec answers.
    let (s, body) = get(&lab.a, "http://127.0.0.1:8080/v1/decisions", Some(&key));
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(3)), "{body}");
    let list = lab.ips_json(&["bouncers", "list"]);
    assert!(list[0]["last_pull_ms"].as_i64().unwrap_or(0) > 0);
}

#[test]
fn pulls_decisions_from_a_lapi() {
    let mut lab = Lab::new("lapic");
    let step = Arc::new(Mutex::new(0u32));
    let seen_keys = Arc::new(Mutex::new(Vec::new()));
    let (step2, keys2) = (step.clone(), seen_keys.clone());
    let port = http_stub(&lab.a, move |head| {
        keys2
            .lock()
            .expect("keys")
            .push(head.contains("x-api-key: k3y"));
        if !head.contains("x-api-key: k3y") {
            return (403, vec![], r#"{"message":"access forbidden"}"#.into());
        }
        if head.contains("startup=true") {
            return (200, vec![], r#"{"new":[
                {"duration":"3h59m55.7s","id":1,"origin":"CAPI","scenario":"crowdsecurity/ssh-bf","scope":"Ip","type":"ban","value":"1.2.3.4"},
                {"duration":"1h","id":2,"origin":"cscli","scenario":"manual","scope":"range","type":"ban","value":"5.6.0.0/16"},
                {"duration":"1h","id":3,"origin":"crowdsec","scenario":"x","scope":"Ip","type":"simulation:ban","value":"4.4.4.4"}
            ],"deleted":null}"#.into());
        }
        let s = *step2.lock().expect("step");
        if s == 1 {
            (200, vec![], r#"{"new":null,"deleted":[{"duration":"-1h","id":1,"origin":"CAPI","scenario":"x","scope":"Ip","type":"ban","value":"1.2.3.4/32"}]}"#.into())
        } else {
            (200, vec![], r#"{"new":null,"deleted":null}"#.into())
        }
    });
    lab.write_config(&format!(
        "[[crowdsec]]\nname = \"up\"\nurl = \"http://127.0.0.1:{port}\"\napi_key = \"k3y\"\ninterval = \"1s\"\n"
    ));
    lab.start_daemon();
    let dropped = |src: &str, id: u32| {
        lab.exchange_quick(&[Frame::udp(src, id).build()])
            .is_empty()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(dropped("1.2.3.4", 1) && dropped("5.6.7.8", 2)) {
        assert!(
            Instant::now() < deadline,
            "LAPI decisions not enforced:\n{}",
            lab.daemon_log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert!(!dropped("4.4.4.4", 3), "simulation decisions are not bans");
    let list = lab.ips_json(&["decisions", "list", "--value", "1.2.3.4"]);
    assert_eq!(list[0]["origin"], "lapi:up");
    // The LAPI deletes 1.2.3.4.
    *step.lock().expect("step") = 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    while dropped("1.2.3.4", 4) {
        assert!(Instant::now() < deadline, "LAPI deletion not applied");
        thread::sleep(Duration::from_millis(200));
    }
    assert!(dropped("5.6.7.8", 5));
    assert!(
        seen_keys.lock().expect("keys").iter().all(|k| *k),
        "every pull sends the key"
    );
    // The LAPI is a source like a list: `ips blocklist status` shows it.
    let sources = lab.ips_json(&["blocklist", "status"]);
    let up = sources
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "up"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(up["kind"], "lapi", "{sources}");
    assert!(up["last_success_ms"].as_i64().unwrap_or(0) > 0, "{sources}");
    assert!(up["dropped"].as_u64().unwrap_or(0) > 0, "{sources}");
}
