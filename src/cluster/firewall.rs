//! Reading a node's host firewall and a k3s server's flannel backend, for
//! `observe` and `status`. Both answers come from a node, so they are
//! untrusted: the listing is parsed by [`crate::firewall::parse_listing`]
//! into addresses and networks, the backend into a known name or a plain
//! word; nothing else the node said travels further.
//!
//! Reads only: writing the firewall is `crate::node::firewall`'s.

use crate::firewall::{parse_listing, FlannelBackend};
use crate::plan::{NodeFirewall, NodeName, ObservedBackend, OtherBackend};
use crate::secret::Secret;
use crate::ssh::pool::NodeConnector;
use crate::ssh::{RemoteCommand, RemoteExec};

use super::{ClusterError, ClusterReads};

/// The command that lists a node's firewall (docs/node-contract.md).
pub const READ_FIREWALL: &str = "sudo nft -j list table inet kiwi";

/// The command that prints every place a k3s server's `flannel-backend`
/// can be set, in k3s' order: `/etc/rancher/k3s/config.yaml`, then
/// `/etc/rancher/k3s/config.yaml.d/*.yaml` (a later file's value wins), then
/// the `k3s` unit file and its drop-ins
/// `/etc/systemd/system/k3s.service.d/*.conf`, whose `ExecStart` flags win
/// over every config file. Each file is preceded by [`SOURCE_START`], its
/// path and [`SOURCE_PATH_END`]; [`backend_from_sources`] orders them by
/// name itself (byte order, as k3s and systemd do), whatever the node's
/// locale made of the globs. The config files hold the cluster's token, so
/// the whole answer is kept as a [`Secret`] and only the backend's value is
/// taken from it.
pub const READ_FLANNEL_BACKEND: &str = "sudo sh -c 'for f in /etc/rancher/k3s/config.yaml \
     /etc/rancher/k3s/config.yaml.d/*.yaml /etc/systemd/system/k3s.service \
     /etc/systemd/system/k3s.service.d/*.conf; do \
     if [ -f \"$f\" ]; then printf \"\\036%s\\037\" \"$f\"; cat -- \"$f\"; fi; done'";

/// Starts one file in the answer to [`READ_FLANNEL_BACKEND`] (ASCII RS).
pub const SOURCE_START: char = '\u{1e}';
/// Ends a file's path in that answer (ASCII US).
pub const SOURCE_PATH_END: char = '\u{1f}';
/// The k3s server's config file.
const K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// Its drop-in directory, with the `/`.
const K3S_CONFIG_D: &str = "/etc/rancher/k3s/config.yaml.d/";
/// The k3s server's unit file, as k3s' install script writes it.
const K3S_UNIT: &str = "/etc/systemd/system/k3s.service";
/// The unit's drop-in directory, with the `/`.
const K3S_UNIT_D: &str = "/etc/systemd/system/k3s.service.d/";

impl<C: NodeConnector> ClusterReads<C> {
    /// The node's firewall. `Err` when the node cannot be reached (its
    /// firewall was not read); an answer that is not a listing is
    /// [`NodeFirewall::Unreadable`], with kiwi-infra's own words.
    pub async fn firewall_of(&self, node: &NodeName) -> Result<NodeFirewall, ClusterError> {
        let exec = self.pool.connect(node).await?;
        let out = exec
            .run(&RemoteCommand {
                command: READ_FIREWALL.to_string(),
                stdin: None,
                timeout: self.command_timeout,
            })
            .await?;
        Ok(firewall_from_answer(out.status, &out.stdout, &out.stderr))
    }

    /// The flannel backend a k3s server's config selects; `Err` when it
    /// cannot be read (no config, node unreachable).
    pub async fn flannel_backend_of(
        &self,
        node: &NodeName,
    ) -> Result<ObservedBackend, ClusterError> {
        let exec = self.pool.connect(node).await?;
        let out = self
            .run(&exec, READ_FLANNEL_BACKEND, self.command_timeout, &[])
            .await?;
        Ok(backend_from_sources(&Secret::new(out.stdout)))
    }
}

/// Reads the answer to [`READ_FIREWALL`].
pub fn firewall_from_answer(status: Option<i32>, stdout: &str, stderr: &str) -> NodeFirewall {
    match status {
        Some(0) => match parse_listing(stdout) {
            Ok(listing) => NodeFirewall::Present {
                peers: listing.elements.get(crate::firewall::PEERS4).cloned(),
                operators: listing.operator_networks(),
                ruleset: listing.ruleset,
            },
            Err(e) => NodeFirewall::Unreadable {
                reason: e.to_string(),
            },
        },
        // nft's words for a table that does not exist.
        Some(1) if stderr.contains("No such file or directory") => NodeFirewall::Absent,
        Some(127) => NodeFirewall::Unreadable {
            reason: "nft is not installed (Debian's and Ubuntu's nftables package)".into(),
        },
        other => NodeFirewall::Unreadable {
            reason: format!(
                "`{READ_FIREWALL}` exited with status {}",
                other.map_or_else(|| "none (killed)".to_string(), |s| s.to_string())
            ),
        },
    }
}

/// Reads the answer to [`READ_FLANNEL_BACKEND`]: the last config file that
/// sets `flannel-backend` wins, and a `flannel-backend` flag in the unit's
/// `ExecStart` (after its drop-ins) wins over them, as in k3s; none means
/// k3s' default, `vxlan`.
///
/// Whatever kiwi-infra cannot read as k3s would makes the backend unknown
/// ([`ObservedBackend::Other`] without a name), never a guess: a config
/// file that is not a YAML mapping (k3s would not start with it), a YAML
/// merge key `<<` (go-yaml applies it, serde_norway does not), a unit whose
/// `ExecStart` is not one command, a flag value systemd would expand or
/// unquote, a `--config` flag (k3s then reads another file), a file the
/// read did not ask for. A backend is named only when it is one k3s
/// documents ([`OtherBackend`]): nothing of the files but that name leaves
/// this function.
pub fn backend_from_sources(answer: &Secret) -> ObservedBackend {
    read_sources(answer).unwrap_or(ObservedBackend::Other(None))
}

/// [`backend_from_sources`], `None` for unknown.
fn read_sources(answer: &Secret) -> Option<ObservedBackend> {
    let mut configs: Vec<(&str, &str)> = Vec::new();
    let mut config_d: Vec<(&str, &str)> = Vec::new();
    let mut unit: Option<&str> = None;
    let mut unit_d: Vec<(&str, &str)> = Vec::new();
    for source in answer.expose().split(SOURCE_START).skip(1) {
        let (path, text) = source.split_once(SOURCE_PATH_END)?;
        if path == K3S_CONFIG {
            configs.push((path, text));
        } else if path == K3S_UNIT {
            unit = Some(text);
        } else if let Some(name) = path.strip_prefix(K3S_CONFIG_D) {
            config_d.push((name, text));
        } else if let Some(name) = path.strip_prefix(K3S_UNIT_D) {
            unit_d.push((name, text));
        } else {
            return None;
        }
    }
    if configs.len() > 1 {
        return None;
    }
    // k3s (Go's filepath.Glob) and systemd take their drop-ins in byte order.
    config_d.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    unit_d.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

    let mut chosen: Option<String> = None;
    for (_, text) in configs.iter().chain(&config_d) {
        let value = serde_norway::from_str::<serde_norway::Value>(text).ok()?;
        if has_merge_key(&value) {
            return None;
        }
        match value {
            serde_norway::Value::Null => {}
            serde_norway::Value::Mapping(map) => {
                if let Some(value) = map.get("flannel-backend") {
                    chosen = Some(value.as_str()?.to_string());
                }
            }
            _ => return None,
        }
    }
    let mut commands: Vec<String> = Vec::new();
    for text in unit.into_iter().chain(unit_d.iter().map(|(_, t)| *t)) {
        exec_starts(text, &mut commands);
    }
    let flag = match commands.as_slice() {
        [] => None,
        [command] => {
            let flags = go_flags(&split_command(command)?);
            if let Some(value) = flags.backend {
                Some(value?)
            } else if flags.config {
                return None;
            } else {
                None
            }
        }
        // systemd refuses a second ExecStart for k3s' Type=notify unit.
        _ => return None,
    };
    Some(match flag.or(chosen) {
        None => ObservedBackend::Known(FlannelBackend::Vxlan),
        Some(value) => match value.parse::<FlannelBackend>() {
            Ok(known) => ObservedBackend::Known(known),
            Err(_) => ObservedBackend::Other(OtherBackend::from_name(&value)),
        },
    })
}

/// True when a YAML merge key (`<<`, plain, quoted or tagged) is anywhere in
/// `value`: k3s' go-yaml would merge it, serde_norway keeps it as a key.
fn has_merge_key(value: &serde_norway::Value) -> bool {
    use serde_norway::Value;
    match value {
        Value::Mapping(map) => map
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_key(k) || has_merge_key(v)),
        Value::Sequence(items) => items.iter().any(has_merge_key),
        Value::Tagged(tagged) => {
            tagged.tag.to_string().contains("merge") || has_merge_key(&tagged.value)
        }
        _ => false,
    }
}

/// Adds the `ExecStart=` commands of one unit file or drop-in to
/// `commands`, as systemd does: continuation lines joined, only the
/// `[Service]` section, an empty `ExecStart=` clears the list.
fn exec_starts(unit: &str, commands: &mut Vec<String>) {
    let joined = unit.replace("\\\n", " ");
    let mut in_service = false;
    for line in joined.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.starts_with(['#', ';']) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "ExecStart" {
            continue;
        }
        let value = value.trim();
        if value.is_empty() {
            commands.clear();
        } else {
            commands.push(value.to_string());
        }
    }
}

/// One word of an `ExecStart` command, quotes removed as systemd removes
/// them.
struct Word {
    text: String,
    /// False when systemd would change the word further (backslash
    /// escapes, `$` variables, `%` specifiers, quotes inside it): its text
    /// is then not what k3s gets.
    plain: bool,
}

/// The words of an `ExecStart` command; `None` when systemd would refuse it
/// (an unterminated quote).
fn split_command(command: &str) -> Option<Vec<Word>> {
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Some(words);
        };
        let mut word = Word {
            text: String::new(),
            plain: true,
        };
        if first == '\'' || first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some(c) if c == first => break,
                    Some(c) => {
                        word.plain &= !matches!(c, '\\' | '$' | '%');
                        word.text.push(c);
                    }
                    None => return None,
                }
            }
            word.plain &= chars.peek().is_none_or(|c| c.is_whitespace());
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.plain &= !matches!(c, '\\' | '$' | '%' | '\'' | '"');
                word.text.push(c);
            }
        }
        words.push(word);
    }
}

/// What k3s' flag parser (Go's, through urfave/cli) takes from a command's
/// words.
struct GoFlags {
    /// The last `flannel-backend` value: `Some(None)` when it is not one
    /// kiwi-infra can read (systemd would change it, or it is missing).
    backend: Option<Option<String>>,
    /// Whether `-c`/`--config` names another config file.
    config: bool,
}

/// Reads `-name=value`, `--name=value`, `-name value` and `--name value`,
/// as Go's flag package does, for the two flags that matter here. A word
/// systemd would still change counts as that flag when it starts like it
/// (its value is then unknown).
fn go_flags(words: &[Word]) -> GoFlags {
    let mut flags = GoFlags {
        backend: None,
        config: false,
    };
    let mut i = 0;
    while let Some(word) = words.get(i) {
        i += 1;
        let Some(name) = word
            .text
            .strip_prefix("--")
            .or_else(|| word.text.strip_prefix('-'))
        else {
            continue;
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name, None),
        };
        let is_backend = name.starts_with("flannel-backend");
        let is_config = name.starts_with("config") || name == "c";
        if !is_backend && !is_config {
            continue;
        }
        let value = match inline {
            Some(v) => (word.plain && name == "flannel-backend").then(|| v.to_string()),
            None => {
                let next = words.get(i).filter(|n| n.plain).map(|n| n.text.clone());
                i += 1;
                next.filter(|_| word.plain && name == "flannel-backend")
            }
        };
        if is_backend {
            flags.backend = Some(value);
        } else {
            flags.config = true;
        }
    }
    flags
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_table_a_missing_nft_and_garbage_are_told_apart() {
        assert_eq!(
            firewall_from_answer(
                Some(1),
                "",
                "Error: No such file or directory\nlist table inet kiwi\n"
            ),
            NodeFirewall::Absent
        );
        assert!(matches!(
            firewall_from_answer(Some(127), "", "bash: nft: command not found"),
            NodeFirewall::Unreadable { reason } if reason.contains("not installed")
        ));
        let NodeFirewall::Unreadable { reason } =
            firewall_from_answer(Some(0), "\u{1b}]0;owned\u{7}{not json", "")
        else {
            panic!("garbage is unreadable");
        };
        assert!(
            !reason.contains('\u{1b}') && !reason.contains("owned"),
            "{reason}"
        );
        let NodeFirewall::Unreadable { reason } =
            firewall_from_answer(Some(2), "", "\u{1b}[2Jsecret")
        else {
            panic!();
        };
        assert!(!reason.contains("secret"));
    }

    #[test]
    fn the_captured_listing_reads_as_present_with_its_peers() {
        let json = include_str!("../../tests/fixtures/firewall/nft-list-table-inet-kiwi.json");
        let NodeFirewall::Present { peers, ruleset, .. } = firewall_from_answer(Some(0), json, "")
        else {
            panic!("present");
        };
        assert!(!peers.unwrap().is_empty());
        let input = ruleset.chain("input").unwrap();
        assert_eq!(
            input.base.as_ref().map(|b| &b.policy),
            Some(&crate::firewall::Verdict::Drop)
        );
    }

    fn sources(files: &[(&str, &str)]) -> Secret {
        Secret::new(
            files
                .iter()
                .map(|(path, text)| format!("{SOURCE_START}{path}{SOURCE_PATH_END}{text}"))
                .collect::<String>(),
        )
    }

    const CONFIG: &str = "/etc/rancher/k3s/config.yaml";

    #[test]
    fn a_backend_is_a_known_name_k3s_default_or_one_k3s_documents() {
        let one = |text: &str| backend_from_sources(&sources(&[(CONFIG, text)]));
        assert_eq!(
            backend_from_sources(&Secret::new(String::new())),
            ObservedBackend::Known(FlannelBackend::Vxlan)
        );
        assert_eq!(
            one("token: \"s3cret\"\nflannel-backend: \"wireguard-native\"\n"),
            ObservedBackend::Known(FlannelBackend::WireguardNative)
        );
        for (name, other) in [
            ("host-gw", OtherBackend::HostGw),
            ("none", OtherBackend::None),
            ("ipsec", OtherBackend::Ipsec),
            ("wireguard", OtherBackend::Wireguard),
        ] {
            assert_eq!(
                one(&format!("flannel-backend: {name}\n")),
                ObservedBackend::Other(Some(other))
            );
        }
        for unknown in ["udp", "extension", "\"\\e[31mred\"", "VXLAN"] {
            assert_eq!(
                one(&format!("flannel-backend: {unknown}\n")),
                ObservedBackend::Other(None),
                "{unknown}"
            );
        }
        assert_eq!(
            one("token: x\n"),
            ObservedBackend::Known(FlannelBackend::Vxlan)
        );
    }

    /// Found by an attacker: the first server's token is 32 lowercase hex
    /// characters, a "plain word", and a config whose `flannel-backend`
    /// held it (an alias to the token's anchor, a mis-edit) had it shown
    /// as the backend's name in `plan` and `status`.
    #[test]
    fn the_token_is_never_shown_as_a_backend_name() {
        let token = "0123456789abcdef0123456789abcdef";
        for config in [
            format!("token: &t {token}\nflannel-backend: *t\n"),
            format!("token: {token}\nflannel-backend: {token}\n"),
        ] {
            let seen = backend_from_sources(&sources(&[(CONFIG, &config)]));
            assert_eq!(seen, ObservedBackend::Other(None));
            assert!(!format!("{seen:?}").contains(token));
        }
        let unit =
            format!("[Service]\nExecStart=/usr/local/bin/k3s server --flannel-backend={token}\n");
        let seen = backend_from_sources(&sources(&[(K3S_UNIT, &unit)]));
        assert_eq!(seen, ObservedBackend::Other(None));
    }

    /// Found by an attacker: k3s reads its config with go-yaml, which
    /// applies `<<` merge keys; serde_norway keeps `<<` as a key, so a
    /// drop-in `<<: {flannel-backend: vxlan}` was read as "not set".
    #[test]
    fn a_merge_key_anywhere_makes_the_backend_unknown() {
        for dropin in [
            "<<: {flannel-backend: vxlan}\n",
            "base: &b {flannel-backend: vxlan}\n<<: *b\n",
            "\"<<\": {flannel-backend: vxlan}\n",
            "node-label: [a=b]\nextra:\n  - {<<: {x: y}}\n",
            "? !!merge <<\n: {flannel-backend: vxlan}\n",
        ] {
            assert_eq!(
                backend_from_sources(&sources(&[
                    (CONFIG, "token: x\nflannel-backend: wireguard-native\n"),
                    ("/etc/rancher/k3s/config.yaml.d/99-local.yaml", dropin),
                ])),
                ObservedBackend::Other(None),
                "{dropin}"
            );
        }
        assert_eq!(
            backend_from_sources(&sources(&[(
                CONFIG,
                "<<: {flannel-backend: vxlan}\nflannel-backend: wireguard-native\n"
            )])),
            ObservedBackend::Other(None)
        );
    }

    /// Found by an attacker: Go's flag parser takes `-flannel-backend=x` and
    /// `-flannel-backend x` as well as the `--` spellings; only `--` was
    /// read, so a single-dash flag in the unit went unseen.
    #[test]
    fn go_flag_spellings_in_the_unit_are_all_read() {
        let wg = ObservedBackend::Known(FlannelBackend::WireguardNative);
        for flag in [
            "-flannel-backend=wireguard-native",
            "-flannel-backend wireguard-native",
            "--flannel-backend=wireguard-native",
            "--flannel-backend wireguard-native",
            "\"--flannel-backend=wireguard-native\"",
            "'-flannel-backend' 'wireguard-native'",
            "--flannel-backend=vxlan -flannel-backend=wireguard-native",
        ] {
            let unit = format!(
                "[Service]\nExecStart=/usr/local/bin/k3s \\\n    server \\\n    {flag} \\\n"
            );
            assert_eq!(
                backend_from_sources(&sources(&[
                    (CONFIG, "flannel-backend: vxlan\n"),
                    (K3S_UNIT, &unit),
                ])),
                wg,
                "{flag}"
            );
        }
        // A value k3s gets only after systemd expands or unescapes it, a
        // missing value, a config file k3s reads instead of config.yaml:
        // unknown.
        for flag in [
            "--flannel-backend=$BACKEND",
            "--flannel-backend ${BACKEND}",
            "--flannel-backend=wire\\x67uard-native",
            "--flannel-backend=\"vxlan\"",
            "\"--flannel-backend\"=vxlan",
            "--flannel-backend",
            "--config /etc/k3s-other.yaml",
            "-c=/etc/k3s-other.yaml",
        ] {
            let unit = format!("[Service]\nExecStart=/usr/local/bin/k3s server {flag}\n");
            assert_eq!(
                backend_from_sources(&sources(&[
                    (CONFIG, "flannel-backend: vxlan\n"),
                    (K3S_UNIT, &unit),
                ])),
                ObservedBackend::Other(None),
                "{flag}"
            );
        }
    }

    /// Found by an attacker: a systemd drop-in
    /// `/etc/systemd/system/k3s.service.d/*.conf` that replaces the unit's
    /// `ExecStart` was not read.
    #[test]
    fn unit_drop_ins_are_read_after_the_unit_as_systemd_does() {
        let wg = ObservedBackend::Known(FlannelBackend::WireguardNative);
        let vx = ObservedBackend::Known(FlannelBackend::Vxlan);
        let unit = "[Unit]\nDescription=k3s\n[Service]\nType=notify\nExecStartPre=-/sbin/modprobe overlay\nExecStart=/usr/local/bin/k3s \\\n    server \\\n    '--flannel-backend=wireguard-native' \\\n\n";
        let read = |drop_ins: &[(&str, &str)]| {
            let mut files = vec![(CONFIG, "token: x\n"), (K3S_UNIT, unit)];
            files.extend_from_slice(drop_ins);
            backend_from_sources(&sources(&files))
        };
        assert_eq!(read(&[]), wg);
        // A drop-in that resets ExecStart and sets another command wins.
        let vxlan_dropin =
            "[Service]\nExecStart=\nExecStart=/usr/local/bin/k3s server -flannel-backend vxlan\n";
        assert_eq!(
            read(&[(
                "/etc/systemd/system/k3s.service.d/override.conf",
                vxlan_dropin
            )]),
            vx
        );
        // Without a flag, the config files' value applies again.
        assert_eq!(
            read(&[(
                "/etc/systemd/system/k3s.service.d/override.conf",
                "[Service]\nExecStart=\nExecStart=/usr/local/bin/k3s server\n"
            )]),
            vx
        );
        // Drop-ins apply in the order of their names, whatever the answer's.
        let wg_dropin = "[Service]\nExecStart=\nExecStart=/usr/local/bin/k3s server --flannel-backend=wireguard-native\n";
        assert_eq!(
            read(&[
                ("/etc/systemd/system/k3s.service.d/20-b.conf", wg_dropin),
                ("/etc/systemd/system/k3s.service.d/10-a.conf", vxlan_dropin),
            ]),
            wg
        );
        // A second ExecStart without a reset: systemd refuses the unit.
        assert_eq!(
            read(&[(
                "/etc/systemd/system/k3s.service.d/override.conf",
                "[Service]\nExecStart=/usr/local/bin/k3s server --flannel-backend=vxlan\n"
            )]),
            ObservedBackend::Other(None)
        );
        // Other keys and sections of a drop-in change nothing.
        assert_eq!(
            read(&[(
                "/etc/systemd/system/k3s.service.d/env.conf",
                "[Unit]\nExecStart=/usr/local/bin/k3s server --flannel-backend=vxlan\n[Service]\nEnvironment=A=1\n# ExecStart=\n"
            )]),
            wg
        );
        // A file the command does not print: unknown, never a guess.
        assert_eq!(
            read(&[("/run/systemd/system/k3s.service.d/x.conf", vxlan_dropin)]),
            ObservedBackend::Other(None)
        );
    }

    /// Found by an attacker: only `^flannel-backend:` lines of config.yaml
    /// were read, so a quoted key, a flow mapping, a drop-in file or a unit
    /// flag that selects another backend went unseen (and the firewall
    /// opened the wrong backend's ports).
    #[test]
    fn every_place_k3s_reads_the_backend_from_is_read_in_k3s_order() {
        let wg = ObservedBackend::Known(FlannelBackend::WireguardNative);
        let vx = ObservedBackend::Known(FlannelBackend::Vxlan);
        for written in [
            "\"flannel-backend\": vxlan\n",
            "{token: s3cret, flannel-backend: vxlan}\n",
            "flannel-backend: wireguard-native\nflannel-backend: vxlan\n",
        ] {
            let seen = backend_from_sources(&sources(&[(CONFIG, written)]));
            // A duplicate key is not YAML: unknown, never a guess.
            assert!(
                seen == vx || seen == ObservedBackend::Other(None),
                "{written}: {seen:?}"
            );
        }
        assert_eq!(
            backend_from_sources(&sources(&[(
                CONFIG,
                "{token: s3cret, flannel-backend: vxlan}"
            )])),
            vx
        );
        // A drop-in file wins over config.yaml, the later one over the earlier.
        assert_eq!(
            backend_from_sources(&sources(&[
                (CONFIG, "flannel-backend: wireguard-native\n"),
                (
                    "/etc/rancher/k3s/config.yaml.d/10-a.yaml",
                    "flannel-backend: host-gw\n"
                ),
                (
                    "/etc/rancher/k3s/config.yaml.d/20-b.yaml",
                    "flannel-backend: vxlan\n"
                ),
                (
                    "/etc/rancher/k3s/config.yaml.d/30-c.yaml",
                    "node-label: [a=b]\n"
                ),
            ])),
            vx
        );
        // A unit flag wins over every file, in either spelling.
        for unit in [
            "[Service]\nExecStart=/usr/local/bin/k3s \\\n    server \\\n    '--flannel-backend=wireguard-native' \\\n",
            "[Service]\nExecStart=/usr/local/bin/k3s server --flannel-backend wireguard-native\n",
        ] {
            assert_eq!(
                backend_from_sources(&sources(&[
                    (CONFIG, "flannel-backend: vxlan\n"),
                    (K3S_UNIT, unit),
                ])),
                wg,
                "{unit}"
            );
        }
        assert_eq!(
            backend_from_sources(&sources(&[
                (CONFIG, "flannel-backend: wireguard-native\n"),
                (K3S_UNIT, "[Service]\nExecStart=/usr/local/bin/k3s server\n"),
            ])),
            wg
        );
        // A config k3s could not read leaves the backend unknown.
        assert_eq!(
            backend_from_sources(&sources(&[(CONFIG, "- a list\n")])),
            ObservedBackend::Other(None)
        );
        assert_eq!(
            backend_from_sources(&sources(&[(CONFIG, "flannel-backend: [vxlan]\n")])),
            ObservedBackend::Other(None)
        );
    }
}
