//! Gateways named by FQDN in the namespace lab, resolved by a real DNS server (Debian's dnsmasq
//! in the relay namespace, serving NAPTR, SRV and A records for `lab.test` with a 2 s TTL) and
//! called through SIPp: failover between two SRV targets (503, then silence), the SRV weights
//! over many calls after a record change that mediator-control picks up without a restart, an
//! unresolvable name refused at once with a Warning, what `mediatorctl gateway show` lists, and
//! TLS verified against the name. And the resolver itself against dnsmasq on loopback.

use std::time::{Duration, Instant};

use mediator_proto::control::v1 as pb;
use mediator_tests::calls::{CallLab, TOPOLOGY, scenario};
use mediator_tests::dnsmasq::{DnsServer, Record};
use mediator_tests::lab::{GW_PEER, POOL_PEER, POOL_RELAY, in_netns, privileged};
use mediator_tests::sipp::Uas;

const DNS_PORT: u16 = 5353;

/// The lab's topology plus an SBC found by NAPTR/SRV (pool-side port 5090, a 2 s fast failover)
/// routed for +1999, and a gateway whose name does not exist routed for +1998.
const FQDN_GATEWAYS: &str = r#"
[[gateway]]
name = "sbc.lab.test"
kind = "sbc"
site = "lab"
root_trunk = { gateway_port = 0, transport = "udp", pool = "pool.lab.mediator", pool_port = 5090 }

[[trunk_configuration]]
name = "trunk:sbc.lab.test"
[trunk_configuration.settings]
fast_failover_timeout_secs = 2

[[voice_route]]
name = "dns"
pattern = '^\+1999(\d{7})$'
trunks = ["sbc.lab.test"]
pstn_usages = ["Lab"]

[[gateway]]
name = "nowhere.lab.test"
kind = "sbc"
site = "lab"
root_trunk = { gateway_port = 0, transport = "udp", pool = "pool.lab.mediator", pool_port = 5091 }

[[voice_route]]
name = "unresolvable"
pattern = '^\+1998(\d{7})$'
trunks = ["nowhere.lab.test"]
pstn_usages = ["Lab"]
"#;

fn uas(lab: &CallLab, port: u16, name: &str) -> Uas {
    let sf = scenario(name);
    let args: Vec<&str> = if name == "uas" {
        vec![]
    } else {
        vec!["-sf", &sf]
    };
    Uas::start(&lab.lab.gw.name, GW_PEER, port, &args).expect("gateway uas")
}

/// The SRV records of the SBC: `(target, port, priority, weight)`, each target at the gateway.
fn sbc_records(targets: &[(&str, u16, u16, u16)]) -> Vec<Record> {
    let mut r = vec![Record::naptr(
        "sbc.lab.test",
        "SIP+D2U",
        "_sip._udp.sbc.lab.test",
    )];
    for (name, port, priority, weight) in targets {
        r.push(Record::host(name, GW_PEER));
        r.push(Record::srv(
            "_sip._udp.sbc.lab.test",
            name,
            *port,
            *priority,
            *weight,
        ));
    }
    r
}

/// `mediatorctl gateway show NAME` once its output contains `want` (within `limit`).
fn show_until(lab: &CallLab, gateway: &str, want: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let (code, text) = lab.ctl(&["gateway", "show", gateway]).expect("mediatorctl");
        assert_eq!(code, 0, "{text}");
        if text.contains(want) || start.elapsed() > limit {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn attempts(c: &pb::Call) -> Vec<(String, u32)> {
    c.attempts
        .iter()
        .map(|a| (a.trunk.clone(), a.status))
        .collect()
}

/// One INVITE from the Front End to `dialed` over raw UDP; the first final response's text and
/// how long it took.
fn invite_once(pool_ns: String, dialed: &'static str) -> (String, Duration) {
    in_netns(&pool_ns, move || {
        let s = std::net::UdpSocket::bind(format!("{POOL_PEER}:0")).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let port = s.local_addr().expect("addr").port();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {POOL_PEER}\r\ns=-\r\nc=IN IP4 {POOL_PEER}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\n"
        );
        let invite = format!(
            "INVITE sip:{dialed}@{POOL_RELAY}:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {POOL_PEER}:{port};branch=z9hG4bK-dns-{dialed}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+14255551000@{POOL_PEER}>;tag=d1\r\n\
             To: <sip:{dialed}@{POOL_RELAY}>\r\n\
             Call-ID: dns-{dialed}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:fe@{POOL_PEER}:{port}>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let start = Instant::now();
        s.send_to(invite.as_bytes(), format!("{POOL_RELAY}:5060"))
            .expect("send");
        let mut buf = [0u8; 8192];
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(n) = s.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                let code: u16 = m
                    .get(8..11)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or_default();
                if code >= 200 {
                    return (m, start.elapsed());
                }
            }
        }
        (String::new(), start.elapsed())
    })
}

/// mediator-control's resolver against dnsmasq on loopback: the RFC 3263 steps for each kind
/// of query, and the failures it reports.
#[tokio::test(flavor = "multi_thread")]
async fn the_resolver_follows_naptr_srv_and_address_records() {
    use mediator_b2bua::dns::Query;
    use mediator_control::dns::{MIN_REFRESH, Resolver};
    use mediator_sip::Transport;
    let port = mediator_tests::daemon::free_port();
    let _dns = DnsServer::start(
        None,
        port,
        "lab.test",
        &[
            // r: NAPTR per transport (TCP preferred by order), each to its own SRV owner.
            Record::naptr_ordered("r.lab.test", 10, "SIP+D2T", "_sip._tcp.r.lab.test"),
            Record::naptr_ordered("r.lab.test", 20, "SIP+D2U", "_sip._udp.r.lab.test"),
            Record::srv("_sip._udp.r.lab.test", "u1.lab.test", 5080, 1, 0),
            Record::srv("_sip._tcp.r.lab.test", "t1.lab.test", 5090, 1, 0),
            Record::host("u1.lab.test", "198.18.2.11"),
            Record::host("t1.lab.test", "198.18.2.12"),
            // s: TLS is not offered there.
            Record::srv_none("_sips._tcp.s.lab.test"),
            // h: addresses only, both families.
            Record::host("h.lab.test", "198.18.2.7"),
            Record::host("h.lab.test", "2001:2:0:2::7"),
            // n: a NAPTR record leading nowhere.
            Record::naptr("n.lab.test", "SIP+D2U", "_sip._udp.none.lab.test"),
        ],
    )
    .expect("dnsmasq");
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let r = Resolver::new(&[server]).expect("resolver");
    let q = |host: &str, port: u16, t: Transport| Query::of(host, port, t).expect("an FQDN");

    let (udp, ttl) = r
        .resolve(&q("r.lab.test", 0, Transport::Udp))
        .await
        .expect("udp");
    assert_eq!(udp.how, "NAPTR");
    assert_eq!(
        udp.addresses(),
        vec!["198.18.2.11:5080".parse().expect("addr")],
        "the NAPTR record of the transport asked, not the preferred one"
    );
    assert!(
        ttl >= MIN_REFRESH && ttl <= Duration::from_secs(2),
        "the records' 2 s TTL: {ttl:?}"
    );
    let (tcp, _) = r
        .resolve(&q("R.lab.test", 0, Transport::Tcp))
        .await
        .expect("tcp");
    assert_eq!(
        tcp.addresses(),
        vec!["198.18.2.12:5090".parse().expect("addr")]
    );

    let (h, _) = r
        .resolve(&q("h.lab.test", 0, Transport::Udp))
        .await
        .expect("h");
    assert_eq!(
        h.how, "A/AAAA",
        "no NAPTR or SRV: the name on the default port"
    );
    assert_eq!(
        h.addresses(),
        vec![
            "198.18.2.7:5060".parse().expect("addr"),
            "[2001:2:0:2::7]:5060".parse().expect("addr")
        ],
        "both families, IPv4 first"
    );
    let (h, _) = r
        .resolve(&q("h.lab.test", 0, Transport::Tls))
        .await
        .expect("h");
    assert_eq!(h.targets[0].port, 5061, "TLS's default port");
    let (h, _) = r
        .resolve(&q("h.lab.test", 5077, Transport::Udp))
        .await
        .expect("h");
    assert_eq!(
        (h.how, h.targets[0].port),
        ("A/AAAA", 5077),
        "a port given: no SRV"
    );

    let e = r
        .resolve(&q("s.lab.test", 0, Transport::Tls))
        .await
        .expect_err("s");
    assert!(e.contains("not offered"), "{e}");
    let e = r
        .resolve(&q("n.lab.test", 0, Transport::Udp))
        .await
        .expect_err("n");
    assert!(e.contains("no SRV record"), "{e}");
    let e = r
        .resolve(&q("missing.lab.test", 0, Transport::Udp))
        .await
        .expect_err("missing");
    assert!(e.contains("missing.lab.test") && e.len() < 200, "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fqdn_gateways_fail_over_between_srv_targets_honour_weights_and_ttls() {
    if !privileged("fqdn_gateways_fail_over_between_srv_targets_honour_weights_and_ttls") {
        return;
    }
    let dns_server = format!("127.0.0.1:{DNS_PORT}");
    let mut lab = CallLab::build("dns", &["30000-30999"], &["--dns-server", &dns_server])
        .await
        .expect("call lab");
    let mut dns = DnsServer::start(
        Some(&lab.lab.relay.name),
        DNS_PORT,
        "lab.test",
        &sbc_records(&[("a.lab.test", 5080, 10, 0), ("b.lab.test", 5081, 20, 0)]),
    )
    .expect("dnsmasq");
    let mut topo = lab.control.client().await.expect("client");
    topo.import_topology(pb::ImportTopologyRequest {
        toml: format!("{TOPOLOGY}\n{FQDN_GATEWAYS}"),
        dry_run: false,
    })
    .await
    .expect("the lab with FQDN gateways");

    // What the operator sees: the NAPTR → SRV → A answer, its targets, when it expires.
    let shown = show_until(
        &lab,
        "sbc.lab.test",
        "b.lab.test:5081",
        Duration::from_secs(15),
    );
    assert!(
        shown.contains("resolved sbc.lab.test (udp, SRV)")
            && shown.contains("NAPTR until ")
            && shown.contains("10/0 a.lab.test:5080 [198.18.2.2]")
            && shown.contains("20/0 b.lab.test:5081 [198.18.2.2]"),
        "{shown}\n{}",
        dns.log()
    );
    // The SIP runtime has bound port 5090 by now (it did so with the import).

    // The first target answers 503: the second one takes the call.
    let first = uas(&lab, 5080, "uas_503");
    let _second = uas(&lab, 5081, "uas");
    let run = lab.from_pool("+19995550100", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(1).await.expect("recent")[0];
    assert_eq!(
        attempts(c),
        vec![
            ("sbc.lab.test via 198.18.2.2:5080".to_string(), 503),
            ("sbc.lab.test via 198.18.2.2:5081".to_string(), 200)
        ],
        "{c:?}"
    );
    assert_eq!((c.status, c.trunk.as_str()), (200, "sbc.lab.test"));

    // The first target is silent: fast failover (2 s) to the second.
    drop(first);
    let run = lab.from_pool("+19995550101", 1, &[]).expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(2).await.expect("recent")[0];
    assert_eq!(
        attempts(c),
        vec![
            ("sbc.lab.test via 198.18.2.2:5080".to_string(), 408),
            ("sbc.lab.test via 198.18.2.2:5081".to_string(), 200)
        ],
        "{c:?}"
    );

    // The zone changes: two targets of one priority, weights 75 and 25. mediator-control picks
    // it up when the 2 s TTL runs out — no restart, no reload.
    dns.set(&sbc_records(&[
        ("b.lab.test", 5081, 10, 75),
        ("c.lab.test", 5082, 10, 25),
    ]))
    .expect("new records");
    let _third = uas(&lab, 5082, "uas");
    let shown = show_until(
        &lab,
        "sbc.lab.test",
        "10/25 c.lab.test:5082",
        Duration::from_secs(15),
    );
    assert!(
        shown.contains("10/75 b.lab.test:5081") && !shown.contains("a.lab.test"),
        "the new records replaced the old:\n{shown}\n{}",
        dns.log()
    );
    let before = lab.recent().await.expect("recent").len();
    const CALLS: u32 = 40;
    let run = lab
        .from_pool("+19995550102", CALLS, &["-sn", "uac"])
        .expect("uac");
    assert_eq!(
        (run.successful, run.failed),
        (u64::from(CALLS), 0),
        "{run:?}\n{}",
        lab.log()
    );
    let recent = lab
        .wait_recent(before + CALLS as usize)
        .await
        .expect("recent");
    let firsts: Vec<String> = recent
        .iter()
        .take(CALLS as usize)
        .map(|c| {
            c.attempts
                .first()
                .map(|a| a.trunk.clone())
                .unwrap_or_default()
        })
        .collect();
    let heavy = firsts
        .iter()
        .filter(|t| t.as_str() == "sbc.lab.test via 198.18.2.2:5081")
        .count();
    let light = firsts
        .iter()
        .filter(|t| t.as_str() == "sbc.lab.test via 198.18.2.2:5082")
        .count();
    // 30 and 10 expected; each bound is more than 4 standard deviations (2.7) away.
    assert_eq!(heavy + light, CALLS as usize, "{firsts:?}");
    assert!(
        (19..=39).contains(&heavy) && light >= 1,
        "weights 75/25 over {CALLS} calls went {heavy}/{light}"
    );

    // A name that does not exist: 503 at once with a Warning naming it, no session made.
    let pool_ns = lab.lab.pool.name.clone();
    let (reply, took) = tokio::task::spawn_blocking(move || invite_once(pool_ns, "+19985550100"))
        .await
        .expect("caller");
    assert!(reply.starts_with("SIP/2.0 503"), "{reply}\n{}", lab.log());
    let warning = reply
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("warning:"))
        .unwrap_or_default();
    assert!(
        warning.contains("nowhere.lab.test"),
        "the Warning names the name: {reply}"
    );
    // Nothing waits for DNS: the answer comes well before a UDP INVITE's first retransmissions
    // would give up (generous for a busy machine; a lookup held up would take 2 s × 2 attempts).
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    let shown = show_until(
        &lab,
        "nowhere.lab.test",
        "unresolved",
        Duration::from_secs(5),
    );
    assert!(
        shown.contains("resolved nowhere.lab.test (udp, SRV)") && shown.contains("unresolved ("),
        "{shown}"
    );
    assert!(
        lab.active().await.expect("active").is_empty(),
        "no call left behind"
    );
}

/// A TLS gateway named `tls.lab.test` (an A record, port given): one accepted connection
/// presenting certificate `cert` (`gateway-fqdn`: names tls.lab.test; `gateway`: only its IP),
/// answering an INVITE with 200 and a BYE with 200. Returns what it received, or why the
/// connection ended (a failed handshake).
fn tls_gateway(
    dir: std::path::PathBuf,
    ns: String,
    cert: &'static str,
) -> std::thread::JoinHandle<String> {
    use mediator_tests::tls::{TlsPeer, response};
    let listener =
        in_netns(&ns, move || std::net::TcpListener::bind("198.18.2.2:5071")).expect("bind 5071");
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut peer = match TlsPeer::accept_as(&listener, &dir, cert, Duration::from_secs(20)) {
            Ok(p) => p,
            Err(e) => return format!("no connection: {e}"),
        };
        let contact = "<sip:gw@198.18.2.2:5071;transport=tls>";
        let sdp = "v=0\r\no=- 1 1 IN IP4 198.18.2.2\r\ns=-\r\nc=IN IP4 198.18.2.2\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n";
        loop {
            let msg = match peer.read(Duration::from_secs(20)) {
                Ok(m) => m,
                Err(e) => {
                    seen.push_str(&format!("ended: {e:#}"));
                    break;
                }
            };
            seen.push_str(&msg);
            seen.push_str("\n----\n");
            let reply = if msg.starts_with("INVITE ") {
                Some(response(&msg, "200 OK", "tlsgw", contact, Some(sdp)))
            } else if msg.starts_with("BYE ") {
                Some(response(&msg, "200 OK", "", contact, None))
            } else {
                None
            };
            if let Some(r) = reply
                && peer.send(&r).is_err()
            {
                break;
            }
            if msg.starts_with("BYE ") {
                break;
            }
        }
        seen
    })
}

const TLS_GATEWAY: &str = r#"
[[gateway]]
name = "tls.lab.test"
kind = "sbc"
site = "lab"
root_trunk = { gateway_port = 5071, transport = "tls", pool = "pool.lab.mediator", pool_port = 5071 }

[[voice_route]]
name = "tls-by-name"
pattern = '^\+1997(\d{7})$'
trunks = ["tls.lab.test"]
pstn_usages = ["Lab"]
"#;

/// TLS to a gateway named by FQDN: the certificate must name it (one naming only its address is
/// refused, the caller gets 503 at once); and once a second configured name resolves to the same
/// address and port, it must name both.
#[tokio::test(flavor = "multi_thread")]
async fn tls_to_a_gateway_named_by_fqdn_verifies_the_certificate_against_the_name() {
    if !privileged("tls_to_a_gateway_named_by_fqdn_verifies_the_certificate_against_the_name") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mediator-dnstls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    mediator_tests::tls::certificates(&dir).expect("certificates");
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (p("mediator.pem"), p("mediator.key"), p("ca.pem"));
    let dns_server = format!("127.0.0.1:{DNS_PORT}");
    let mut lab = CallLab::build(
        "dnstls",
        &["30000-30999"],
        &[
            "--tls-certificate",
            &cert,
            "--tls-private-key",
            &key,
            "--tls-ca",
            &ca,
            "--dns-server",
            &dns_server,
        ],
    )
    .await
    .expect("call lab");
    let dns = DnsServer::start(
        Some(&lab.lab.relay.name),
        DNS_PORT,
        "lab.test",
        &[
            Record::host("tls.lab.test", GW_PEER),
            Record::host("alias.lab.test", GW_PEER),
        ],
    )
    .expect("dnsmasq");
    let mut topo = lab.control.client().await.expect("client");
    topo.import_topology(pb::ImportTopologyRequest {
        toml: format!("{TOPOLOGY}\n{TLS_GATEWAY}"),
        dry_run: false,
    })
    .await
    .expect("the lab with a TLS gateway named by FQDN");
    let shown = show_until(
        &lab,
        "tls.lab.test",
        "tls.lab.test:5071 [198.18.2.2]",
        Duration::from_secs(15),
    );
    assert!(
        shown.contains("resolved tls.lab.test:5071 (tls)") && shown.contains("A/AAAA until "),
        "{shown}\n{}",
        dns.log()
    );

    // The certificate names tls.lab.test: the call goes through, addressed by name.
    let gateway = tls_gateway(dir.clone(), lab.lab.gw.name.clone(), "gateway-fqdn");
    let run = lab
        .from_pool("+19975550100", 1, &["-sn", "uac", "-d", "500"])
        .expect("uac");
    let seen = gateway.join().expect("tls gateway");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "{run:?}\n{seen}\n{}",
        lab.log()
    );
    assert!(
        seen.contains("INVITE sip:+19975550100@tls.lab.test:5071;user=phone;transport=tls SIP/2.0")
            && seen.contains("BYE "),
        "{seen}"
    );

    // The certificate names only the address: Mediator refuses the connection, and the caller
    // gets an error instead of a call to an unverified peer.
    let gateway = tls_gateway(dir.clone(), lab.lab.gw.name.clone(), "gateway");
    let pool_ns = lab.lab.pool.name.clone();
    let (reply, _) = tokio::task::spawn_blocking(move || invite_once(pool_ns, "+19975550101"))
        .await
        .expect("caller");
    let seen = gateway.join().expect("tls gateway");
    assert!(
        !seen.contains("INVITE "),
        "nothing was sent over the unverified connection: {seen}"
    );
    // A failed handshake is a transport error, treated as a 503 at once (RFC 3261 §8.1.3.1).
    assert!(
        reply.starts_with("SIP/2.0 503"),
        "the caller gets an error: {reply}\n{}",
        lab.log()
    );
    let c = &lab.wait_recent(2).await.expect("recent")[0];
    assert_eq!(
        attempts(c),
        vec![("tls.lab.test via 198.18.2.2:5071".to_string(), 503)],
        "{c:?}"
    );
    let log = lab.log();
    assert!(
        log.contains("tls.lab.test") && log.to_ascii_lowercase().contains("certificate"),
        "the log says why: {log}"
    );

    // A second configured name resolves to the same address and port: a connection there
    // must be valid for both names, so a certificate naming only alias.lab.test (the first, the
    // handshake's SNI) is refused for lacking tls.lab.test, and one naming both is taken.
    topo.import_topology(pb::ImportTopologyRequest {
        toml: format!("{TOPOLOGY}\n{TLS_GATEWAY}\n{ALIAS_GATEWAY}"),
        dry_run: false,
    })
    .await
    .expect("a second name for the TLS gateway's address");
    let shown = show_until(
        &lab,
        "alias.lab.test",
        "alias.lab.test:5071 [198.18.2.2]",
        Duration::from_secs(15),
    );
    assert!(
        shown.contains("resolved alias.lab.test:5071 (tls)"),
        "{shown}"
    );
    let gateway = tls_gateway(dir.clone(), lab.lab.gw.name.clone(), "gateway-alias");
    let pool_ns = lab.lab.pool.name.clone();
    let (reply, _) = tokio::task::spawn_blocking(move || invite_once(pool_ns, "+19975550102"))
        .await
        .expect("caller");
    let seen = gateway.join().expect("tls gateway");
    assert!(!seen.contains("INVITE "), "{seen}");
    assert!(reply.starts_with("SIP/2.0 503"), "{reply}\n{}", lab.log());
    let log = lab.log();
    assert!(
        log.lines().any(
            |l| l.contains("does not name every configured name") && l.contains("tls.lab.test")
        ),
        "the log names the name the certificate lacks: {log}"
    );
    let gateway = tls_gateway(dir.clone(), lab.lab.gw.name.clone(), "gateway-both");
    let run = lab
        .from_pool("+19975550103", 1, &["-sn", "uac", "-d", "500"])
        .expect("uac");
    let seen = gateway.join().expect("tls gateway");
    assert_eq!(
        (run.successful, run.failed),
        (1, 0),
        "a certificate naming both: {run:?}\n{seen}\n{}",
        lab.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second gateway name for the TLS gateway's address and port (its own pool port).
const ALIAS_GATEWAY: &str = r#"
[[gateway]]
name = "alias.lab.test"
kind = "sbc"
site = "lab"
root_trunk = { gateway_port = 5071, transport = "tls", pool = "pool.lab.mediator", pool_port = 5072 }
"#;
