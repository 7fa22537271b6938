//! The part of a node's cloud-init user data that the simulator honours, read into plain data
//! before anything touches the node's filesystem. A real node's cloud-init does much more;
//! the simulator takes what decides how the tool can reach and recognise the node:
//!
//! - `hostname`;
//! - `users[]` (`name`, `ssh_authorized_keys`): who may log in, by public key only;
//! - `disable_root` (cloud-init's default is `true` once there is any cloud-config);
//! - `ssh_keys.ed25519_private` / `ed25519_public`: the node's SSH host key;
//! - `write_files[]` (`path`, `content`, `permissions`, `encoding: b64`, `append`).
//!
//! - `runcmd` entries of the form `[systemctl, enable, --now, UNIT]` (the firewall template's
//!   `nftables`): the simulator runs them with the stand-in `systemctl` at first boot.
//!
//! Other `runcmd` entries and `packages` are not executed: the stand-in programs linked into
//! every node stand for what they would install. A user data script (`#!…`) is not run either.

use russh::keys::ssh_encoding::base64::{Base64, Encoding};
use russh::keys::{PrivateKey, PublicKey};
use serde_json::Value;

/// Why user data cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UserDataError {
    /// Not YAML, or not a mapping.
    #[error("user data is not a cloud-config mapping")]
    NotCloudConfig(#[source] Option<serde_norway::Error>),
    /// A field has the wrong shape.
    #[error("user data field {field}: {reason}")]
    Field {
        /// Dotted path of the field, e.g. `write_files[2].permissions`.
        field: String,
        /// What is wrong (never the value of a secret).
        reason: String,
    },
}

/// One login user from `users[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginUser {
    /// User name.
    pub name: String,
    /// Public keys in OpenSSH format (`ssh-ed25519 AAAA… comment`).
    pub authorized_keys: Vec<PublicKey>,
}

/// One `write_files` entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFile {
    /// Absolute path inside the node.
    pub path: String,
    /// Bytes to write.
    pub content: Vec<u8>,
    /// Mode bits (cloud-init's default is 0644).
    pub mode: u32,
    /// Append instead of replacing.
    pub append: bool,
}

/// A `runcmd` entry `[systemctl, enable, (--now), UNIT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnableUnit {
    /// The unit's name (letters, digits, `-`, `_`, `.`, `@`).
    pub unit: String,
    /// Whether `--now` starts it too.
    pub now: bool,
}

/// What the simulator takes from a node's user data.
#[derive(Debug, Default)]
pub struct CloudConfig {
    /// `hostname`.
    pub hostname: Option<String>,
    /// `users[]` entries that are mappings (the string `default` is skipped).
    pub users: Vec<LoginUser>,
    /// Whether root may not log in.
    pub disable_root: bool,
    /// The preset ed25519 host key, if any.
    pub host_key: Option<PrivateKey>,
    /// Files to write, in order.
    pub write_files: Vec<WriteFile>,
    /// Units `runcmd` enables (and starts, with `--now`) at first boot, in order.
    pub enable_units: Vec<EnableUnit>,
    /// Keys of the document that the simulator does not act on (e.g. `runcmd`), for a log line.
    pub ignored: Vec<String>,
}

/// Reads user data. `Ok(None)` means it is not a cloud-config (e.g. a shell script), which a
/// simulated node does not run.
pub fn parse(text: &str) -> Result<Option<CloudConfig>, UserDataError> {
    if text.starts_with("#!") {
        return Ok(None);
    }
    let doc: Value =
        serde_norway::from_str(text).map_err(|e| UserDataError::NotCloudConfig(Some(e)))?;
    let Value::Object(map) = doc else {
        return Err(UserDataError::NotCloudConfig(None));
    };
    let mut config = CloudConfig {
        disable_root: true,
        ..CloudConfig::default()
    };
    for (key, value) in &map {
        match key.as_str() {
            "hostname" => config.hostname = Some(string(value, "hostname")?.to_owned()),
            "users" => config.users = users(value)?,
            "disable_root" => config.disable_root = boolean(value, "disable_root")?,
            "ssh_keys" => config.host_key = host_key(value)?,
            "write_files" => config.write_files = write_files(value)?,
            "runcmd" => {
                config.enable_units = enable_units(value);
                config.ignored.push(key.clone());
            }
            _ => config.ignored.push(key.clone()),
        }
    }
    Ok(Some(config))
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> UserDataError {
    UserDataError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

fn string<'a>(value: &'a Value, name: &str) -> Result<&'a str, UserDataError> {
    value
        .as_str()
        .ok_or_else(|| field(name, "must be a string"))
}

fn boolean(value: &Value, name: &str) -> Result<bool, UserDataError> {
    value
        .as_bool()
        .ok_or_else(|| field(name, "must be true or false"))
}

fn users(value: &Value) -> Result<Vec<LoginUser>, UserDataError> {
    let list = value
        .as_array()
        .ok_or_else(|| field("users", "must be a list"))?;
    let mut users = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        // `- default` means the distribution's default user, which a simulated node has none of.
        if entry.is_string() {
            continue;
        }
        let name = entry
            .get("name")
            .ok_or_else(|| field(format!("users[{i}].name"), "is missing"))
            .and_then(|v| string(v, &format!("users[{i}].name")))?;
        let mut authorized_keys = Vec::new();
        if let Some(keys) = entry.get("ssh_authorized_keys") {
            let keys = keys.as_array().ok_or_else(|| {
                field(format!("users[{i}].ssh_authorized_keys"), "must be a list")
            })?;
            for (k, key) in keys.iter().enumerate() {
                let at = format!("users[{i}].ssh_authorized_keys[{k}]");
                let key = PublicKey::from_openssh(string(key, &at)?.trim())
                    .map_err(|e| field(at, format!("is not an OpenSSH public key: {e}")))?;
                authorized_keys.push(key);
            }
        }
        users.push(LoginUser {
            name: name.to_owned(),
            authorized_keys,
        });
    }
    Ok(users)
}

fn host_key(value: &Value) -> Result<Option<PrivateKey>, UserDataError> {
    let Some(private) = value.get("ed25519_private") else {
        return Ok(None);
    };
    let private = string(private, "ssh_keys.ed25519_private")?;
    // The parse error could quote key material: say only that it failed.
    let key = PrivateKey::from_openssh(private.trim()).map_err(|_| {
        field(
            "ssh_keys.ed25519_private",
            "is not an unencrypted OpenSSH private key",
        )
    })?;
    if key.algorithm() != russh::keys::Algorithm::Ed25519 {
        return Err(field("ssh_keys.ed25519_private", "is not an ed25519 key"));
    }
    if let Some(public) = value.get("ed25519_public") {
        let public = PublicKey::from_openssh(string(public, "ssh_keys.ed25519_public")?.trim())
            .map_err(|e| {
                field(
                    "ssh_keys.ed25519_public",
                    format!("is not an OpenSSH public key: {e}"),
                )
            })?;
        if public.key_data() != key.public_key().key_data() {
            return Err(field(
                "ssh_keys.ed25519_public",
                "does not belong to ssh_keys.ed25519_private",
            ));
        }
    }
    Ok(Some(key))
}

/// The `systemctl enable` entries of `runcmd` (list form only; a shell string is not parsed).
fn enable_units(value: &Value) -> Vec<EnableUnit> {
    let Some(list) = value.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let words: Vec<&str> = entry
                .as_array()?
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()?;
            let (now, unit) = match words.as_slice() {
                ["systemctl", "enable", "--now", unit] => (true, *unit),
                ["systemctl", "enable", unit] => (false, *unit),
                _ => return None,
            };
            let safe = !unit.is_empty()
                && unit
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
            safe.then(|| EnableUnit {
                unit: unit.to_owned(),
                now,
            })
        })
        .collect()
}

fn write_files(value: &Value) -> Result<Vec<WriteFile>, UserDataError> {
    let list = value
        .as_array()
        .ok_or_else(|| field("write_files", "must be a list"))?;
    let mut files = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = |name: &str| format!("write_files[{i}].{name}");
        let path = entry
            .get("path")
            .ok_or_else(|| field(at("path"), "is missing"))
            .and_then(|v| string(v, &at("path")))?;
        if !path.starts_with('/') {
            return Err(field(at("path"), "must be absolute"));
        }
        let raw = match entry.get("content") {
            None => "",
            Some(v) => string(v, &at("content"))?,
        };
        let content = match entry.get("encoding").and_then(Value::as_str) {
            None | Some("text/plain") => raw.as_bytes().to_vec(),
            Some("b64" | "base64") => {
                let compact: String = raw.split_whitespace().collect();
                Base64::decode_vec(&compact)
                    .map_err(|_| field(at("content"), "is not valid base64"))?
            }
            Some(other) => {
                return Err(field(
                    at("encoding"),
                    format!("{other:?} is not supported by simulated nodes (use b64 or none)"),
                ))
            }
        };
        let mode = match entry.get("permissions") {
            None => 0o644,
            Some(v) => permissions(v).ok_or_else(|| {
                field(at("permissions"), "must be an octal mode such as \"0600\"")
            })?,
        };
        let append = match entry.get("append") {
            None => false,
            Some(v) => boolean(v, &at("append"))?,
        };
        files.push(WriteFile {
            path: path.to_owned(),
            content,
            mode,
            append,
        });
    }
    Ok(files)
}

/// cloud-init takes an octal string; an unquoted `0644` may reach us as the number 644
/// (YAML 1.2), whose digits are still meant as octal.
fn permissions(value: &Value) -> Option<u32> {
    let digits = match value {
        Value::String(s) => s.trim().trim_start_matches("0o").to_owned(),
        Value::Number(n) => n.as_u64()?.to_string(),
        _ => return None,
    };
    u32::from_str_radix(&digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINypcjaubx2P1Xf2o865Z4jJezyyZ6ZT+mKQYT+McoAd op@kiwi";

    #[test]
    fn the_base_template_shape_is_understood() {
        let text = format!(
            "#cloud-config\nhostname: mesh-1\nusers:\n  - default\n  - name: kiwi\n    \
             ssh_authorized_keys:\n      - {PUBLIC}\ndisable_root: true\nwrite_files:\n  - path: \
             /etc/a\n    permissions: \"0600\"\n    content: |\n      hello\n  - path: /etc/b\n    \
             encoding: b64\n    content: aGk=\n    permissions: 0755\nruncmd:\n  - [systemctl, \
             reload, ssh]\n  - [systemctl, enable, --now, nftables]\n  - [systemctl, enable, \
             \"a;b\"]\n  - systemctl enable k3s\n"
        );
        let c = parse(&text).unwrap().unwrap();
        assert_eq!(c.hostname.as_deref(), Some("mesh-1"));
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.users[0].name, "kiwi");
        assert_eq!(c.users[0].authorized_keys.len(), 1);
        assert!(c.disable_root);
        assert_eq!(c.write_files[0].content, b"hello\n");
        assert_eq!(c.write_files[0].mode, 0o600);
        assert_eq!(c.write_files[1].content, b"hi");
        assert_eq!(c.write_files[1].mode, 0o755);
        assert_eq!(c.ignored, vec!["runcmd".to_owned()]);
        assert_eq!(
            c.enable_units,
            vec![EnableUnit {
                unit: "nftables".into(),
                now: true
            }]
        );
        assert!(c.host_key.is_none());
    }

    #[test]
    fn scripts_are_not_cloud_config_and_garbage_is_an_error() {
        assert!(parse("#!/bin/sh\necho hi\n").unwrap().is_none());
        assert!(parse("- a\n- b\n").is_err());
        let err = parse("users:\n  - name: kiwi\n    ssh_authorized_keys: [nonsense]\n")
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("users[0].ssh_authorized_keys[0]"),
            "{err}"
        );
    }

    #[test]
    fn a_host_key_whose_public_half_does_not_match_is_refused() {
        let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
            &[7; 32],
        ));
        let pem = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap();
        let ok = format!(
            "ssh_keys:\n  ed25519_private: |\n{}\n",
            pem.lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let parsed = parse(&ok).unwrap().unwrap();
        assert_eq!(parsed.host_key.unwrap().public_key(), key.public_key());
        let bad = format!("{ok}  ed25519_public: {PUBLIC}\n");
        let err = parse(&bad).err().unwrap().to_string();
        assert!(err.contains("does not belong"), "{err}");
        assert!(!err.contains("PRIVATE KEY"), "{err}");
    }
}
