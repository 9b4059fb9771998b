//! OpenSSH messages (6.x to 9.x, `sshd` and `sshd-session`) and pam_unix lines about sshd.
use super::{Event, Kind, Service, Skip, ip, port_after, word_after};

/// True for the program names sshd logs under.
pub fn is_sshd(program: &str) -> bool {
    matches!(
        program,
        "sshd" | "sshd-session" | "sshd-auth" | "sshd(pam_unix)"
    )
}

fn ssh_event(time_ms: i64, msg: &str, after: &str, kind: Kind) -> Result<Event<'static>, Skip> {
    let token = word_after(msg, after).ok_or(Skip::NotInteresting)?;
    let source = ip(token).ok_or(Skip::BadAddress)?;
    let mut e = Event::new(time_ms, source, Service::Ssh, kind);
    e.port = port_after(msg);
    Ok(e)
}

/// `... user NAME from ADDR` or `... user NAME ADDR port` (user names have no spaces).
fn user_then_addr<'a>(
    time_ms: i64,
    msg: &'a str,
    key: &str,
    kind: Kind,
) -> Result<Event<'a>, Skip> {
    let at = msg.find(key).ok_or(Skip::NotInteresting)? + key.len();
    let rest = &msg[at..];
    // "invalid user  from 1.2.3.4" has an empty user name.
    let (user, rest) = rest.split_once(' ').ok_or(Skip::NotInteresting)?;
    let rest = rest.strip_prefix("from ").unwrap_or(rest);
    let token = rest.split(' ').next().unwrap_or(rest);
    let source = ip(token).ok_or(Skip::BadAddress)?;
    let mut e = Event::new(time_ms, source, Service::Ssh, kind);
    e.user = (!user.is_empty()).then_some(user);
    e.port = port_after(rest);
    Ok(e)
}

/// Parses an sshd message (the part after `sshd[pid]: `).
pub fn parse(msg: &str, time_ms: i64) -> Result<Event<'_>, Skip> {
    let msg = msg.trim_end();
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("Failed ") {
        // "Failed password for [invalid user ]NAME from ADDR port N ssh2"
        let key = if rest.contains(" for invalid user ") {
            " for invalid user "
        } else {
            " for "
        };
        return user_then_addr(time_ms, msg, key, Kind::AuthFailed);
    }
    if msg.starts_with("Invalid user ") {
        return user_then_addr(time_ms, msg, "Invalid user ", Kind::InvalidUser);
    }
    if msg.starts_with("Accepted ") {
        return user_then_addr(time_ms, msg, " for ", Kind::AuthSuccess);
    }
    if msg.starts_with("Connection closed by authenticating user ") {
        return user_then_addr(time_ms, msg, "authenticating user ", Kind::PreauthClosed);
    }
    if msg.starts_with("Connection closed by invalid user ")
        || msg.starts_with("Disconnected from invalid user ")
    {
        return user_then_addr(time_ms, msg, "invalid user ", Kind::PreauthClosed);
    }
    if msg.starts_with("Disconnected from authenticating user ") {
        return user_then_addr(time_ms, msg, "authenticating user ", Kind::PreauthClosed);
    }
    if msg.starts_with("maximum authentication attempts exceeded for ") {
        let key = if msg.contains(" for invalid user ") {
            " for invalid user "
        } else {
            " for "
        };
        return user_then_addr(time_ms, msg, key, Kind::MaxAuthAttempts);
    }
    if msg.starts_with("Unable to negotiate with ") {
        return ssh_event(
            time_ms,
            msg,
            "Unable to negotiate with ",
            Kind::NegotiationFailed,
        );
    }
    if msg.starts_with("Did not receive identification string from ") {
        return ssh_event(time_ms, msg, " from ", Kind::NoIdentification);
    }
    if let Some(rest) = msg.strip_prefix("banner exchange: Connection from ") {
        return ssh_event(time_ms, rest, "", Kind::NoIdentification).map(|mut e| {
            e.port = port_after(rest);
            e
        });
    }
    if msg.starts_with("kex_exchange_identification: ") || msg.starts_with("Bad protocol version") {
        // These carry no address; the "Connection closed by ADDR" line after them does.
        return Err(Skip::NotInteresting);
    }
    if msg.contains("authentication failure;") && msg.contains("rhost=") {
        let rhost = word_after(msg, "rhost=").unwrap_or("");
        if rhost.is_empty() {
            return Err(Skip::NotInteresting);
        }
        let Some(source) = ip(rhost) else {
            // A reverse-resolved name: never looked up on the hot path.
            return if rhost.contains(|c: char| c.is_ascii_alphabetic()) && !rhost.contains(':') {
                Err(Skip::HostnameSource)
            } else {
                Err(Skip::BadAddress)
            };
        };
        let mut e = Event::new(time_ms, source, Service::Ssh, Kind::AuthFailed);
        e.user = word_after(msg, " user=").filter(|u| !u.is_empty());
        return Ok(e);
    }
    Err(Skip::NotInteresting)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(msg: &str) -> Result<Event<'_>, Skip> {
        parse(msg, 0)
    }

    #[test]
    fn failed_passwords_and_keys() {
        let e = ev("Failed password for root from 203.0.113.5 port 52214 ssh2").unwrap();
        assert_eq!(
            (e.kind, e.user, e.port),
            (Kind::AuthFailed, Some("root"), Some(52214))
        );
        assert_eq!(e.source.to_string(), "203.0.113.5");
        let e = ev("Failed password for invalid user oracle from 203.0.113.5 port 1 ssh2").unwrap();
        assert_eq!(e.user, Some("oracle"));
        let e = ev("Failed publickey for git from 2001:db8::5 port 4242 ssh2: ED25519 SHA256:abc")
            .unwrap();
        assert_eq!(e.source.to_string(), "2001:db8::5");
        assert_eq!(e.port, Some(4242));
        let e = ev("Failed none for invalid user  from 203.0.113.5 port 9 ssh2").unwrap();
        assert_eq!(e.user, None);
    }

    #[test]
    fn invalid_users_old_and_new() {
        let e = ev("Invalid user admin from 198.51.100.7 port 33012").unwrap();
        assert_eq!((e.kind, e.user), (Kind::InvalidUser, Some("admin")));
        let e = ev("Invalid user test from 198.51.100.7").unwrap(); // OpenSSH 6
        assert_eq!(e.port, None);
        let e = ev("Invalid user  from 198.51.100.7 port 1").unwrap();
        assert_eq!(e.user, None);
    }

    #[test]
    fn preauth_and_limits() {
        let e = ev("Connection closed by authenticating user root 192.0.2.4 port 50000 [preauth]")
            .unwrap();
        assert_eq!((e.kind, e.user), (Kind::PreauthClosed, Some("root")));
        let e =
            ev("Connection closed by invalid user admin 192.0.2.4 port 50000 [preauth]").unwrap();
        assert_eq!(e.user, Some("admin"));
        let e = ev("Disconnected from invalid user pi 192.0.2.4 port 1 [preauth]").unwrap();
        assert_eq!(e.kind, Kind::PreauthClosed);
        let e = ev("error: maximum authentication attempts exceeded for root from 192.0.2.4 port 22 ssh2 [preauth]").unwrap();
        assert_eq!(e.kind, Kind::MaxAuthAttempts);
        let e = ev("error: maximum authentication attempts exceeded for invalid user ftp from 192.0.2.4 port 22 ssh2 [preauth]").unwrap();
        assert_eq!(e.user, Some("ftp"));
    }

    #[test]
    fn scanners() {
        let e = ev("Unable to negotiate with 192.0.2.9 port 40000: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]").unwrap();
        assert_eq!((e.kind, e.port), (Kind::NegotiationFailed, Some(40000)));
        let e = ev("Did not receive identification string from 192.0.2.9 port 61000").unwrap();
        assert_eq!(e.kind, Kind::NoIdentification);
        let e = ev("Did not receive identification string from 192.0.2.9").unwrap();
        assert_eq!(e.port, None);
        let e =
            ev("banner exchange: Connection from 192.0.2.9 port 51234: invalid format").unwrap();
        assert_eq!((e.kind, e.port), (Kind::NoIdentification, Some(51234)));
        assert_eq!(
            ev("error: kex_exchange_identification: Connection closed by remote host"),
            Err(Skip::NotInteresting)
        );
    }

    #[test]
    fn pam_unix_rhost() {
        let e = ev("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.77  user=root").unwrap();
        assert_eq!((e.kind, e.user), (Kind::AuthFailed, Some("root")));
        let e = ev(
            "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ",
        )
        .unwrap();
        assert_eq!(e.user, None);
        assert_eq!(
            ev(
                "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root"
            ),
            Err(Skip::HostnameSource)
        );
        assert_eq!(
            ev("authentication failure; logname= rhost= user=x"),
            Err(Skip::NotInteresting)
        );
    }

    #[test]
    fn success_and_noise() {
        let e =
            ev("Accepted publickey for deploy from 192.0.2.1 port 22 ssh2: RSA SHA256:x").unwrap();
        assert_eq!((e.kind, e.user), (Kind::AuthSuccess, Some("deploy")));
        assert_eq!(
            ev("Server listening on 0.0.0.0 port 22."),
            Err(Skip::NotInteresting)
        );
        assert_eq!(
            ev("Failed password for root from not-an-ip port 22 ssh2"),
            Err(Skip::BadAddress)
        );
    }
}
