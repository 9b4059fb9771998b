//! `ips config init`: looks at this host for the services ips protects (sshd, nginx, Apache)
//! and writes an `ips.toml` that follows their logs, as `cscli setup` does. Pure over a root
//! directory, so it is tested on a scratch tree.
use std::path::{Path, PathBuf};

/// A log source found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// What it is, for people (`sshd`, `nginx`, `apache`).
    pub service: &'static str,
    /// Where it is read from, for people.
    pub from: String,
    /// Its `[[acquisition]]` table.
    pub toml: String,
}

fn file_source(paths: &[PathBuf], log_type: &str) -> String {
    let list: Vec<String> = paths
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!(
        "[[acquisition]]\ntype = \"file\"\npaths = [{}]\nlog_type = \"{log_type}\"\n",
        list.join(", ")
    )
}

/// The log sources of the services found under `root` (`/` on a real host): sshd from
/// `/var/log/auth.log` or `/var/log/secure` when one exists, else from the journal when the
/// host has one; nginx and Apache access logs when their log folders exist.
pub fn detect(root: &Path) -> Vec<Found> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    let mut found = Vec::new();
    if let Some(auth) = ["/var/log/auth.log", "/var/log/secure"]
        .into_iter()
        .find(|p| at(p).exists())
    {
        found.push(Found {
            service: "sshd",
            from: auth.into(),
            toml: file_source(&[PathBuf::from(auth)], "sshd"),
        });
    } else if at("/run/systemd/journal").exists() || at("/var/log/journal").exists() {
        found.push(Found {
            service: "sshd",
            from: "the systemd journal (ssh.service, sshd.service)".into(),
            toml: "[[acquisition]]\ntype = \"journald\"\nargs = [\"-u\", \"ssh.service\", \"-u\", \"sshd.service\"]\nlog_type = \"sshd\"\n".into(),
        });
    }
    for (service, dir, pattern) in [
        ("nginx", "/var/log/nginx", "/var/log/nginx/*access.log"),
        ("apache", "/var/log/apache2", "/var/log/apache2/*access.log"),
        ("apache", "/var/log/httpd", "/var/log/httpd/*access_log"),
    ] {
        if at(dir).is_dir() {
            found.push(Found {
                service,
                from: pattern.into(),
                toml: file_source(&[PathBuf::from(pattern)], "nginx"),
            });
        }
    }
    found
}

/// The text of an `ips.toml` for what was found.
pub fn config_text(found: &[Found]) -> String {
    let mut text = String::from(
        "# ips.toml, written by `ips config init`. Check it with `ips config check`; a running\n\
         # daemon reads it again on `systemctl reload ips` (or `ips reload`).\n\n\
         [enforcer]\n\
         # Where XDP drops banned sources: \"auto\" is the interface of the default route.\n\
         interfaces = [\"auto\"]\n\
         mode = \"auto\"\n\n\
         [store]\n\
         path = \"/var/lib/ips/ips.db\"\n\n\
         [api]\n\
         # The CLI's way in: root and members of group ips.\n\
         socket = \"/run/ips/ips.sock\"\n\n\
         [allowlist]\n\
         # Never banned. Add the addresses you manage this host from.\n\
         entries = [\"127.0.0.0/8\", \"::1\"]\n\n\
         [log]\n\
         level = \"info\"\n\
         format = \"text\"\n",
    );
    if found.is_empty() {
        text.push_str(
            "\n# No sshd, nginx or Apache log was found: add an [[acquisition]] table, or\n\
             # nothing is detected (blocklists and manual bans still work).\n",
        );
    }
    for f in found {
        text.push_str(&format!("\n# {} ({})\n{}", f.service, f.from, f.toml));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_services_of_a_host() {
        let root = std::env::temp_dir().join(format!("ips-setup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("var/log/nginx")).unwrap();
        std::fs::create_dir_all(root.join("run/systemd/journal")).unwrap();
        let found = detect(&root);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].service, "sshd");
        assert!(
            found[0].toml.contains("journald"),
            "no auth.log: the journal"
        );
        assert_eq!(found[1].service, "nginx");
        std::fs::write(root.join("var/log/auth.log"), "").unwrap();
        let found = detect(&root);
        assert!(found[0].toml.contains("/var/log/auth.log"));
        let text = config_text(&found);
        let config = crate::config::Config::from_toml(&text, Path::new("init.toml")).unwrap();
        assert_eq!(config.acquisition.len(), 2);
        assert_eq!(config.enforcer.interfaces, ["auto"]);
        let none = config_text(&detect(&root.join("empty")));
        assert!(none.contains("No sshd, nginx or Apache log was found"));
        crate::config::Config::from_toml(&none, Path::new("init.toml")).unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }
}
