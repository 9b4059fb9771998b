//! Blocklist import end to end: a list file becomes drops at XDP under its own origin, without
//! the private ranges it contains, and a re-import applies only the difference.
use ips_tests::{Lab, packet::Frame};

fn frames(srcs: &[(&str, u32)]) -> Vec<Vec<u8>> {
    srcs.iter()
        .map(|(s, id)| Frame::udp(s, *id).build())
        .collect()
}

#[test]
fn import_filters_aggregates_and_replaces() {
    let mut lab = Lab::new("list");
    lab.start_daemon();
    let list = lab.dir.join("level1.netset");
    std::fs::write(
        &list,
        "# FireHOL-style list\n10.0.0.0/8\n1.2.3.0/24\n5.6.7.8\n5.6.7.9 ; adjacent\n2a00:1::/32\nbogus\n",
    )
    .expect("write list");
    let path = list.to_string_lossy().into_owned();
    let r = lab.ips_json(&["blocklist", "import", &path, "--name", "level1"]);
    assert_eq!(r["prepared"]["read"], 5);
    assert_eq!(r["prepared"]["filtered"]["private"], 1);
    assert_eq!(r["prepared"]["rejected"]["not an address or prefix"], 1);
    assert_eq!(r["entries"], 3, "5.6.7.8 and .9 merge into a /31: {r}");
    let got = lab.exchange(&frames(&[
        ("1.2.3.9", 1),
        ("5.6.7.9", 2),
        ("10.0.0.5", 3),
        ("2a00:1:ffff::1", 4),
        ("8.8.8.8", 5),
    ]));
    assert_eq!(
        got,
        vec![3, 5],
        "private range must not be banned by a list"
    );
    let status = lab.ips_json(&["status"]);
    let origin = status["origins"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "list:level1").cloned())
        .expect("drops attributed to the list");
    assert_eq!(origin["dropped_v4"], 2);
    assert_eq!(origin["dropped_v6"], 1);

    // The list changes: 1.2.3.0/24 leaves it, 9.9.9.0/24 joins.
    std::fs::write(&list, "5.6.7.8/31\n2a00:1::/32\n9.9.9.0/24\n").expect("write list");
    let r = lab.ips_json(&["blocklist", "import", &path, "--name", "level1"]);
    assert_eq!(
        (r["added"].as_u64(), r["removed"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    let got = lab.exchange(&frames(&[("1.2.3.9", 6), ("9.9.9.9", 7), ("5.6.7.8", 8)]));
    assert_eq!(got, vec![6]);
}
