//! mediatorctl, the real binary, against a real mediator-control: the README's walkthrough run
//! command by command, JSON output, every exit code, and mediator-control's own settings errors.

use std::path::Path;
use std::process::Command;

use mediator_tests::control::Control;
use mediator_tests::daemon::built_binary;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ctl_in(dir: &Path, endpoint: &str, args: &[&str]) -> Out {
    let out = Command::new(built_binary("mediatorctl"))
        .args(args)
        .env("MEDIATOR_ENDPOINT", endpoint)
        .current_dir(dir)
        .output()
        .expect("run mediatorctl");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ctl(endpoint: &str, args: &[&str]) -> Out {
    ctl_in(&std::env::temp_dir(), endpoint, args)
}

/// The `mediatorctl` commands of the README's walkthrough, continuation lines joined.
fn walkthrough() -> Vec<Vec<String>> {
    let readme = include_str!("../../README.md");
    let start = readme.find("### Walkthrough").expect("walkthrough section");
    let block = &readme[start..];
    let block = &block[block.find("```sh").expect("code block") + 5..];
    let block = &block[..block.find("```").expect("end of block")];
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if !line.ends_with('\\') {
            commands.push(shell_words(&current));
            current.clear();
        }
    }
    commands
}

/// Splits a command line the way the shell would for these examples (single quotes only).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            // An unquoted '#' starting a word begins a comment, as in the shell.
            '#' if !quoted && !in_word => break,
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough_works_as_written() {
    let mut d = Control::start("cli-walk").expect("daemon");
    d.client().await.expect("up");
    let dir = std::env::temp_dir().join(format!("mediatorctl-walk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let commands = walkthrough();
    assert!(commands.len() >= 12, "{commands:?}");
    let mut route_test = None;
    for cmd in &commands {
        assert_eq!(cmd[0], "mediatorctl", "{cmd:?}");
        let args: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
        let out = ctl_in(&dir, &d.endpoint(), &args);
        assert_eq!(
            out.code, 0,
            "{cmd:?}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        if args[..2] == ["route", "test"] {
            route_test = Some(out.stdout);
        }
    }
    let rt = route_test.expect("the walkthrough tests a route");
    let lines: Vec<&str> = rt.lines().filter(|l| l.contains("redmond-local")).collect();
    assert_eq!(lines.len(), 2, "{rt}");
    assert!(
        lines[0].contains("gw1-5068")
            && lines[0].contains("14255550100")
            && !lines[0].contains("+1425"),
        "{rt}"
    );
    assert!(
        lines[1].contains("gw1.contoso.com") && lines[1].contains("+14255550100"),
        "{rt}"
    );
    assert!(
        dir.join("topology.toml").exists(),
        "export --file wrote the document"
    );

    // JSON output has the document's shape and the revision.
    let out = ctl(
        &d.endpoint(),
        &["--output", "json", "trunk", "show", "gw1-5068"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json_like::Value = serde_json_like::parse(&out.stdout);
    assert_eq!(
        v.get("pool"),
        Some("pool2.contoso.com".into()),
        "moved by the walkthrough: {}",
        out.stdout
    );
    assert_eq!(v.get("transport"), Some("tcp".into()));
    assert!(v.get("revision").is_some(), "{}", out.stdout);
    let out = ctl(&d.endpoint(), &["trunk-config", "effective", "gw1-5068"]);
    assert!(
        out.stdout.contains("response_code_rules") && out.stdout.contains("global"),
        "{}",
        out.stdout
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Just enough JSON reading for these assertions, without a JSON dependency in this crate.
mod serde_json_like {
    pub struct Value(String);
    pub fn parse(s: &str) -> Value {
        Value(s.to_string())
    }
    impl Value {
        /// The string or number value of a top-level key, as text.
        pub fn get(&self, key: &str) -> Option<String> {
            let pat = format!("\"{key}\":");
            let at = self.0.find(&pat)? + pat.len();
            let rest = self.0[at..].trim_start();
            if let Some(r) = rest.strip_prefix('"') {
                return r.split('"').next().map(str::to_string);
            }
            rest.split([',', '\n', '}'])
                .next()
                .map(|x| x.trim().to_string())
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_error_messages() {
    let mut d = Control::start("cli-err").expect("daemon");
    d.client().await.expect("up");
    let e = d.endpoint();
    let pool = [
        "pool",
        "add",
        "pool1.contoso.com",
        "--site",
        "redmond",
        "--dataplane",
        "198.18.1.1:7400",
        "--pool-side-listen",
        "198.18.1.1:5060",
        "--gateway-side-address",
        "198.18.2.1",
        "--next-hop",
        "fe.contoso.com:5061",
    ];
    assert_eq!(ctl(&e, &pool).code, 0);
    let out = ctl(&e, &pool);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    let gw = [
        "gateway",
        "add",
        "gw1.contoso.com",
        "--kind",
        "pstn-gateway",
        "--site",
        "redmond",
        "--pool",
        "pool1.contoso.com",
        "--gateway-port",
        "5067",
        "--pool-port",
        "5067",
    ];
    assert_eq!(ctl(&e, &gw).code, 0);
    let out = ctl(&e, &["pool", "remove", "pool1.contoso.com"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("failed precondition")
            && out.stderr.contains("trunk 'gw1.contoso.com'"),
        "{}",
        out.stderr
    );
    let out = ctl(
        &e,
        &[
            "pool",
            "set",
            "pool1.contoso.com",
            "--site",
            "dublin",
            "--revision",
            "9",
        ],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("aborted") && out.stderr.contains("revision 1, not 9"),
        "{}",
        out.stderr
    );
    let out = ctl(
        &e,
        &[
            "route",
            "add",
            "r",
            "--pattern",
            "^(",
            "--trunk",
            "gw1.contoso.com",
            "--usage",
            "Local",
        ],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("pattern"), "{}", out.stderr);
    let out = ctl(&e, &["trunk", "show", "nope"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);

    // Usage errors: 64, before anything is sent.
    for args in [
        vec!["pool", "frobnicate"],
        vec!["pool", "set", "pool1.contoso.com"],
        vec![
            "trunk-config",
            "set",
            "global",
            "--response-code",
            "408:503",
        ],
        vec![
            "gateway",
            "add",
            "gw2.contoso.com",
            "--kind",
            "fax",
            "--site",
            "x",
            "--pool",
            "p",
            "--gateway-port",
            "1",
            "--pool-port",
            "1",
        ],
        vec!["trunk", "move", "--to-pool", "pool1.contoso.com"],
    ] {
        let out = ctl(&e, &args);
        assert_eq!(out.code, 64, "{args:?}: {}", out.stderr);
    }
    // A bad document: refused with every error located; nothing changed.
    let dir = std::env::temp_dir().join(format!("mediatorctl-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("bad.toml"), "[[pool]]\nname = \"Bad Name\"\n").expect("write");
    let out = ctl_in(&dir, &e, &["topology", "import", "bad.toml"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("line"), "located: {}", out.stderr);
    assert_eq!(
        ctl(&e, &["pool", "show", "pool1.contoso.com"]).code,
        0,
        "still there"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Nobody listening: 69.
    let port = mediator_tests::daemon::free_port();
    let out = ctl(&format!("http://127.0.0.1:{port}"), &["pool", "list"]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(out.stderr.contains("cannot reach"), "{}", out.stderr);
}

#[test]
fn help_has_examples_and_completions_print() {
    let subcommands: &[&[&str]] = &[
        &[],
        &["pool", "add"],
        &["pool", "set"],
        &["pool", "drain"],
        &["gateway", "add"],
        &["trunk", "add"],
        &["trunk", "move"],
        &["trunk-config", "set"],
        &["trunk-config", "effective"],
        &["usage", "add"],
        &["route", "add"],
        &["route", "test"],
        &["topology", "import"],
    ];
    for sub in subcommands {
        let mut args: Vec<&str> = sub.to_vec();
        args.push("--help");
        let out = ctl("http://127.0.0.1:1", &args);
        assert_eq!(out.code, 0, "{args:?}");
        assert!(
            out.stdout.contains("Examples:"),
            "{args:?} has examples:\n{}",
            out.stdout
        );
    }
    let out = ctl("http://127.0.0.1:1", &["completions", "bash"]);
    assert!(
        out.code == 0 && out.stdout.contains("mediatorctl"),
        "{}",
        out.stderr
    );
}

#[test]
fn control_daemon_settings_errors_are_named() {
    let bin = built_binary("mediator-control");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(&bin)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = run(&["--check-config"], &[]);
    assert!(
        code == 0 && text.contains("127.0.0.1:7300"),
        "defaults: {text}"
    );
    let dir = std::env::temp_dir().join(format!("mediator-control-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("control.toml");
    std::fs::write(&file, "data_dri = \"/tmp/x\"\n").expect("write");
    let (code, text) = run(
        &["--check-config", "--config", file.to_str().expect("path")],
        &[],
    );
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("data_dri"), "{text}");
    // TLS settings: all three or none, and a file that is not a certificate is named.
    let (code, text) = run(
        &["--check-config", "--tls-certificate", "/nonexistent.pem"],
        &[],
    );
    assert!(code == 78 && text.contains("all three or none"), "{text}");
    let (code, text) = run(
        &[
            "--check-config",
            "--tls-certificate",
            file.to_str().expect("path"),
            "--tls-private-key",
            file.to_str().expect("path"),
            "--tls-ca",
            file.to_str().expect("path"),
        ],
        &[],
    );
    assert!(code == 78 && text.contains("tls_certificate"), "{text}");
    std::fs::write(&file, "grpc_listen = \"127.0.0.1:7311\"\n").expect("write");
    let (code, text) = run(
        &["--check-config", "--config", file.to_str().expect("path")],
        &[("MEDIATOR_GRPC_LISTEN", "127.0.0.1:7322")],
    );
    assert!(
        code == 0 && text.contains("7322"),
        "env beats the file: {text}"
    );
    let (code, _) = run(&["--grpc-listen", "nonsense"], &[]);
    assert_eq!(code, 64);
    // Off loopback without authentication only when the operator says so.
    for (flag, field) in [
        ("--grpc-listen", "grpc_listen"),
        ("--metrics-listen", "metrics_listen"),
    ] {
        let (code, text) = run(&["--check-config", flag, "198.18.0.1:7399"], &[]);
        assert!(
            code == 78
                && text.contains(&format!(
                    "{field}: 198.18.0.1:7399 is not a loopback address"
                )),
            "{text}"
        );
        let (code, text) = run(
            &[
                "--check-config",
                "--insecure-listen",
                flag,
                "198.18.0.1:7399",
            ],
            &[],
        );
        assert_eq!(code, 0, "{text}");
    }
    // Session timers: no Min-SE below RFC 4028's 90 s, no interval below the Min-SE.
    let (code, text) = run(&["--check-config", "--min-se-secs", "60"], &[]);
    assert!(code == 78 && text.contains("min_se_secs: 60"), "{text}");
    let (code, text) = run(
        &[
            "--check-config",
            "--min-se-secs",
            "600",
            "--session-expires-secs",
            "300",
        ],
        &[],
    );
    assert!(
        code == 78 && text.contains("session_expires_secs: 300"),
        "{text}"
    );
    let (code, text) = run(&["--check-config", "--session-expires-secs", "900"], &[]);
    assert!(
        code == 0 && text.contains("session_expires_secs: 900"),
        "{text}"
    );
    // Media timeouts the relay would refuse on every call are refused here, named.
    let (code, text) = run(&["--check-config", "--hold-timeout-secs", "30"], &[]);
    assert!(code == 78 && text.contains("hold_timeout_secs"), "{text}");
    let (code, text) = run(
        &[
            "--check-config",
            "--media-timeout-secs",
            "300",
            "--hold-timeout-secs",
            "100",
        ],
        &[],
    );
    assert!(
        code == 78 && text.contains("shorter than media_timeout_secs"),
        "{text}"
    );
    let (code, text) = run(
        &[
            "--check-config",
            "--media-timeout-secs",
            "3",
            "--media-timeout-ends-calls",
            "false",
        ],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    // DNS servers: an address alone gets port 53; anything else is named.
    let (code, text) = run(
        &[
            "--check-config",
            "--dns-server",
            "198.18.0.53,[2001:2::53]:5353",
        ],
        &[],
    );
    assert!(
        code == 0 && text.contains("198.18.0.53:53") && text.contains("[2001:2::53]:5353"),
        "{text}"
    );
    let (code, text) = run(&["--check-config", "--dns-server", "dns.example"], &[]);
    assert!(code == 64 && text.contains("'dns.example'"), "{text}");
    std::fs::write(&file, "dns_servers = [\"198.18.0.53\", \"bogus\"]\n").expect("write");
    let (code, text) = run(
        &["--check-config", "--config", file.to_str().expect("path")],
        &[],
    );
    assert!(
        code == 78 && text.contains("dns_servers: 'bogus'"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
