//! `mediatorctl call …`: calls in progress and recent call records, with their media figures.

use clap::Subcommand;
use mediator_proto::control::v1 as pb;
use serde_json::{Value, json};

use crate::output::{Show, or_dash, print_list, print_one, when};
use crate::{Ctx, Failure, usage_error};

pub const EXAMPLES: &str = "\
Examples:
  mediatorctl call list
  mediatorctl call show 42
  mediatorctl call recent --limit 20
  mediatorctl call end 42 --reason \"stuck call, ticket 1234\"
  mediatorctl --output json call show 42";

#[derive(Subcommand, Debug)]
pub enum CallCmd {
    /// Calls in progress.
    #[command(
        after_help = "Examples:\n  mediatorctl call list\n  mediatorctl --output json call list"
    )]
    List,
    /// One call (in progress or recent) with its legs and, per stream, the forwarding path,
    /// packets, bytes, loss and jitter from the dataplane.
    #[command(after_help = "Examples:\n  mediatorctl call show 42")]
    Show {
        /// The call's id (from `call list` or `call recent`).
        id: String,
    },
    /// Ends a call in progress from Mediator's side: BYE on both legs of an answered call, 487
    /// to a caller still waiting (and CANCEL to the gateway). Prints the call's record.
    #[command(
        after_help = "Examples:\n  mediatorctl call end 42\n  mediatorctl call end 42 --reason \"stuck call\""
    )]
    End {
        /// The call's id (from `call list`).
        id: String,
        /// Why, kept as the record's end reason (default: "ended by the operator").
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// Records of ended calls, newest first.
    #[command(
        after_help = "Examples:\n  mediatorctl call recent\n  mediatorctl call recent --limit 5"
    )]
    Recent {
        /// At most this many (0: all that are kept, up to 1000).
        #[arg(long, value_name = "N", default_value_t = 0)]
        limit: u32,
    },
}

pub async fn run(ctx: &mut Ctx, cmd: CallCmd) -> Result<(), Failure> {
    let out = ctx.out;
    let client = &mut ctx.calls;
    match cmd {
        CallCmd::List => {
            let calls = client
                .list_calls(pb::ListCallsRequest {})
                .await?
                .into_inner();
            print_list(out, &calls.calls)
        }
        CallCmd::Show { id } => {
            let id = call_id(&id)?;
            let c = client
                .get_call(pb::GetCallRequest { id })
                .await?
                .into_inner();
            print_one(out, &c)
        }
        CallCmd::End { id, reason } => {
            let id = call_id(&id)?;
            let c = client
                .end_call(pb::EndCallRequest { id, reason })
                .await?
                .into_inner();
            print_one(out, &c)
        }
        CallCmd::Recent { limit } => {
            let calls = client
                .list_recent_calls(pb::ListRecentCallsRequest { limit })
                .await?
                .into_inner();
            print_list(out, &calls.calls)
        }
    }
}

fn call_id(id: &str) -> Result<u64, Failure> {
    id.trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| usage_error(format!("call id '{id}' is not a number of 1 or more")))
}

fn duration(ms: u64) -> String {
    format!("{}.{:01}s", ms / 1000, ms % 1000 / 100)
}

/// One direction's figures; the current path only while the call is up (a deleted session has
/// been withdrawn, so its counters say what carried it).
fn flow_text(f: &pb::MediaFlow, live: bool) -> String {
    let now = if !live {
        String::new()
    } else if f.path_reason.is_empty() {
        format!(", now {}", f.path)
    } else {
        format!(", now {} ({})", f.path, f.path_reason)
    };
    let drops = f.srtp_auth_failures + f.srtp_replays + f.srtp_bad_mki + f.srtp_other_drops;
    let srtp = if drops == 0 {
        String::new()
    } else {
        format!(
            "; srtp dropped: auth {}, replay {}, mki {}, other {}",
            f.srtp_auth_failures, f.srtp_replays, f.srtp_bad_mki, f.srtp_other_drops
        )
    };
    format!(
        "{} from {}: {} pkts / {} bytes, by xdp {} / userspace {}{now}; {}, jitter {:.2} ms{srtp}",
        f.kind,
        f.from_side,
        f.packets,
        f.bytes,
        f.xdp_packets,
        f.userspace_packets,
        loss_text(f.lost),
        f.jitter_ms
    )
}

/// RFC 3550's cumulative loss is expected less received: negative when duplicates outnumber
/// the losses, which is what it then says.
fn loss_text(lost: i64) -> String {
    if lost < 0 {
        format!("lost 0 ({} duplicates)", lost.unsigned_abs())
    } else {
        format!("lost {lost}")
    }
}

/// A stream's encryption per leg, e.g. "pool side AES_CM_128_HMAC_SHA1_80, gateway side RTP".
fn srtp_text(s: &pb::CallStream) -> String {
    let leg = |suite: &str| {
        if suite.is_empty() {
            "RTP".to_string()
        } else {
            format!("SRTP {suite}")
        }
    };
    let mut t = format!(
        "encryption: pool side {}, gateway side {}",
        leg(&s.pool_srtp),
        leg(&s.gateway_srtp)
    );
    if s.srtp_passthrough {
        t.push_str(" (passthrough: the peers' keys, end to end)");
    }
    t
}

impl Show for pb::Call {
    const PLURAL: &'static str = "calls";
    const COLUMNS: &'static [&'static str] = &[
        "ID",
        "DIRECTION",
        "STATE",
        "TRUNK",
        "CALLER",
        "DIALED",
        "DURATION",
        "STATUS",
        "END",
    ];

    fn json(&self) -> Result<Value, Failure> {
        Ok(json!({
            "id": self.id,
            "direction": self.direction,
            "state": self.state,
            "pool": self.pool,
            "trunk": self.trunk,
            "route": self.route,
            "gateway": self.gateway,
            "dialed": self.dialed,
            "caller": self.caller,
            "called": self.called,
            "calling": self.calling,
            "legs": self.legs.iter().map(|l| json!({
                "side": l.side, "sip_call_id": l.sip_call_id, "peer": l.peer,
                "local": l.local, "transport": l.transport,
            })).collect::<Vec<_>>(),
            "attempts": self.attempts.iter().map(|a| json!({"trunk": a.trunk, "status": a.status})).collect::<Vec<_>>(),
            "media_bypass": self.media_bypass,
            "streams": self.streams.iter().map(|s| json!({
                "index": s.index, "session_id": s.session_id, "relay": s.relay, "path": s.path,
                "pool_media": s.pool_media, "gateway_media": s.gateway_media,
                "pool_srtp": s.pool_srtp, "gateway_srtp": s.gateway_srtp,
                "srtp_passthrough": s.srtp_passthrough,
                "flows": s.flows.iter().map(|f| json!({
                    "kind": f.kind, "from_side": f.from_side, "path": f.path,
                    "path_reason": f.path_reason, "packets": f.packets, "bytes": f.bytes,
                    "xdp_packets": f.xdp_packets, "userspace_packets": f.userspace_packets,
                    "lost": f.lost, "jitter_ms": f.jitter_ms,
                    "srtp_auth_failures": f.srtp_auth_failures, "srtp_replays": f.srtp_replays,
                    "srtp_bad_mki": f.srtp_bad_mki, "srtp_other_drops": f.srtp_other_drops,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "started_unix_ms": self.started_unix_ms,
            "answered_unix_ms": self.answered_unix_ms,
            "ended_unix_ms": self.ended_unix_ms,
            "duration_ms": self.duration_ms,
            "status": self.status,
            "end_reason": self.end_reason,
        }))
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.direction.clone(),
            self.state.clone(),
            or_dash(self.trunk.clone()),
            or_dash(self.caller.clone()),
            or_dash(self.dialed.clone()),
            duration(self.duration_ms),
            if self.status == 0 {
                "-".into()
            } else {
                self.status.to_string()
            },
            or_dash(self.end_reason.clone()),
        ]
    }

    fn fields(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("id".into(), self.id.to_string()),
            ("direction".into(), self.direction.clone()),
            ("state".into(), self.state.clone()),
            ("pool".into(), self.pool.clone()),
            ("trunk".into(), or_dash(self.trunk.clone())),
            ("route".into(), or_dash(self.route.clone())),
            ("gateway".into(), or_dash(self.gateway.clone())),
            (
                "caller / dialed".into(),
                format!(
                    "{} -> {}",
                    or_dash(self.caller.clone()),
                    or_dash(self.dialed.clone())
                ),
            ),
            (
                "sent as".into(),
                format!(
                    "{} -> {}",
                    or_dash(self.calling.clone()),
                    or_dash(self.called.clone())
                ),
            ),
        ];
        for (i, l) in self.legs.iter().enumerate() {
            f.push((
                if i == 0 { "legs".into() } else { String::new() },
                format!(
                    "{}: {} {} via {} (Call-ID {})",
                    l.side, l.transport, l.peer, l.local, l.sip_call_id
                ),
            ));
        }
        let tried: Vec<String> = self
            .attempts
            .iter()
            .map(|a| format!("{} {}", a.trunk, a.status))
            .collect();
        f.push(("attempts".into(), or_dash(tried.join(", "))));
        f.push(("started".into(), when(self.started_unix_ms)));
        f.push(("answered".into(), when(self.answered_unix_ms)));
        f.push(("ended".into(), when(self.ended_unix_ms)));
        f.push(("duration".into(), duration(self.duration_ms)));
        if self.status != 0 {
            f.push(("end".into(), format!("{} {}", self.status, self.end_reason)));
        }
        f.push(("media bypass".into(), self.media_bypass.to_string()));
        let live = self.state != "ended";
        for s in &self.streams {
            f.push((
                format!("stream {}", s.index),
                format!("session {} on relay {}", s.session_id, s.relay),
            ));
            if !s.pool_media.is_empty() || !s.gateway_media.is_empty() {
                f.push((
                    String::new(),
                    format!(
                        "relay media: pool side {}, gateway side {}",
                        or_dash(s.pool_media.clone()),
                        or_dash(s.gateway_media.clone())
                    ),
                ));
            }
            f.push((String::new(), srtp_text(s)));
            let dropped = |fl: &pb::MediaFlow| {
                fl.srtp_auth_failures + fl.srtp_replays + fl.srtp_bad_mki + fl.srtp_other_drops > 0
            };
            for fl in s
                .flows
                .iter()
                .filter(|fl| fl.packets > 0 || dropped(fl) || live)
            {
                f.push((String::new(), flow_text(fl, live)));
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_loss_is_shown_as_duplicates() {
        assert_eq!(loss_text(3), "lost 3");
        assert_eq!(loss_text(0), "lost 0");
        assert_eq!(loss_text(-2), "lost 0 (2 duplicates)");
        let f = pb::MediaFlow {
            lost: -2,
            ..Default::default()
        };
        let text = flow_text(&f, false);
        assert!(
            text.contains("lost 0 (2 duplicates)") && !text.contains("-2"),
            "{text}"
        );
    }
}
