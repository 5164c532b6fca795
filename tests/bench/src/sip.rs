//! `--via-sip`: the bench's sessions as real calls through mediator-control, for the modes that
//! run mediator-dataplane.
//!
//! SIPp places the calls from the pool side (the Front End) to +1425…, which the lab topology
//! routes to the gateway, where a second SIPp answers. Both SDPs name the bench's peers and the
//! run's codec and ptime, so Mediator asks the dataplane for sessions between the same addresses
//! the direct mode programs — with the ids, ports and settings a call gets. The relay ports each
//! call got come from the control API (`GetCall`: the relay's media address on each side, as in
//! the SDP each side received). After the runs every call is ended through the API (`EndCall`:
//! a BYE on both legs), and both SIPp instances must count every call as completed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use mediator_proto::control::v1 as pb;

use super::stop_requested;
use super::traffic::{GW_PEER_PORT, Media, POOL_PEER_PORT};
use mediator_tests::calls::{lab_control, scenario};
use mediator_tests::control::Control;
use mediator_tests::lab::{GW_PEER, GW_RELAY, Lab, POOL_PEER, POOL_RELAY};
use mediator_tests::sipp::{Uac, UacRun};

/// Calls SIPp places per second.
pub const CALL_RATE: u32 = 200;
/// What the calls dial: the lab topology routes +1425 to the gateway's root trunk.
const DIALED: &str = "+14255550100";
/// SIPp's own bound on how long it runs; the bench ends the calls long before.
const SIPP_LIMIT: Duration = Duration::from_secs(3600);

/// The SDP keys both scenarios take: the bench peer's address and the codec (not SIPp's own
/// `media_ip`/`media_port`, which name SIPp's media sockets and win over a `-key`).
fn sdp_keys(addr: &str, port: u16, media: &Media) -> Vec<String> {
    [
        ("bench_addr", addr.to_string()),
        ("bench_port", port.to_string()),
        ("pt", media.codec.payload_type.to_string()),
        ("rtpmap", media.codec.rtpmap.to_string()),
        ("ptime", media.ptime_ms.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| ["-key".to_string(), k.to_string(), v])
    .collect()
}

/// `n` calls up through mediator-control, with the SIPp peers that hold them.
pub struct Calls {
    // Dropped in this order: the callers, the gateway, then mediator-control.
    uac: Option<Uac>,
    uas: Option<Uac>,
    control: Control,
    ids: Vec<u64>,
    /// How long setting the calls up took.
    pub setup: Duration,
}

/// Places `sessions` calls with `media` through mediator-control in `lab` (its pool served by the
/// dataplane on 127.0.0.1:7400) and returns them with each call's relay addresses (pool side,
/// gateway side).
pub async fn place(
    lab: &Lab,
    sessions: usize,
    media: &Media,
) -> anyhow::Result<(Calls, Vec<(SocketAddr, SocketAddr)>)> {
    let n = u32::try_from(sessions).context("too many calls")?;
    let control = lab_control(lab, "bench-sip", &["127.0.0.1:7400".to_string()], &[])
        .await
        .context("starting mediator-control")?;
    let uas_sf = scenario("bench_uas");
    let keys = sdp_keys(GW_PEER, GW_PEER_PORT, media);
    let mut args: Vec<&str> = vec!["-sf", &uas_sf];
    args.extend(keys.iter().map(String::as_str));
    let uas = Uac::serve(&lab.gw.name, GW_PEER, 5060, n, SIPP_LIMIT, &args)?;
    // Give the gateway a moment to bind before the calls arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let uac_sf = scenario("bench_uac");
    let keys = sdp_keys(POOL_PEER, POOL_PEER_PORT, media);
    let limit = n.to_string();
    let mut args: Vec<&str> = vec!["-sf", &uac_sf, "-s", DIALED, "-l", &limit];
    args.extend(keys.iter().map(String::as_str));
    let target = format!("{POOL_RELAY}:5060");
    let started = Instant::now();
    let uac = Uac::start(
        &lab.pool.name,
        POOL_PEER,
        &target,
        n,
        CALL_RATE,
        SIPP_LIMIT,
        &args,
    )?;
    let mut calls = Calls {
        uac: Some(uac),
        uas: Some(uas),
        control,
        ids: Vec::new(),
        setup: Duration::ZERO,
    };
    let addrs = calls.wait_up(sessions, started).await?;
    Ok((calls, addrs))
}

impl Calls {
    /// Waits until `sessions` calls are confirmed, then reads their relay addresses.
    async fn wait_up(
        &mut self,
        sessions: usize,
        started: Instant,
    ) -> anyhow::Result<Vec<(SocketAddr, SocketAddr)>> {
        let mut client = self.control.calls().await?;
        let patience = Duration::from_secs(30)
            + Duration::from_secs(2 * sessions as u64 / u64::from(CALL_RATE));
        let confirmed = loop {
            if stop_requested() {
                bail!("interrupted");
            }
            let calls = client
                .list_calls(pb::ListCallsRequest {})
                .await
                .context("listing calls")?
                .into_inner()
                .calls;
            let up: Vec<u64> = calls
                .iter()
                .filter(|c| c.state == "confirmed")
                .map(|c| c.id)
                .collect();
            if up.len() >= sessions {
                break up;
            }
            let uac = self.uac.as_mut().context("the callers are gone")?;
            if !uac.running() || started.elapsed() > patience {
                let gateway = self.uas.as_ref().map(Uac::errors).unwrap_or_default();
                bail!(
                    "{} of {sessions} calls were up after {:.1} s{}; the callers' SIPp errors:\n{}\nthe gateway's:\n{}\nmediator-control's log ends:\n{}",
                    up.len(),
                    started.elapsed().as_secs_f64(),
                    if uac.running() {
                        ""
                    } else {
                        " and the callers' SIPp had stopped"
                    },
                    tail(&uac.errors(), 20),
                    tail(&gateway, 20),
                    tail(&self.control.log(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.setup = started.elapsed();
        let (pool_ip, gw_ip): (IpAddr, IpAddr) = (POOL_RELAY.parse()?, GW_RELAY.parse()?);
        let mut addrs = Vec::with_capacity(sessions);
        for id in confirmed {
            let call = client
                .get_call(pb::GetCallRequest { id })
                .await
                .with_context(|| format!("reading call {id}"))?
                .into_inner();
            let [stream] = call.streams.as_slice() else {
                bail!(
                    "call {id} has {} media streams, not one",
                    call.streams.len()
                );
            };
            let parse = |what: &str, s: &str, ip: IpAddr| -> anyhow::Result<SocketAddr> {
                let a: SocketAddr = s.parse().with_context(|| {
                    format!("call {id}: the relay's {what} media address '{s}'")
                })?;
                ensure!(
                    a.ip() == ip,
                    "call {id}: the relay's {what} media address {a} is not on {ip}"
                );
                Ok(a)
            };
            addrs.push((
                parse("pool-side", &stream.pool_media, pool_ip)?,
                parse("gateway-side", &stream.gateway_media, gw_ip)?,
            ));
            self.ids.push(id);
        }
        Ok(addrs)
    }

    pub fn count(&self) -> usize {
        self.ids.len()
    }

    /// Ends every call through the API and checks that both sides saw each one end: the callers
    /// and the gateway both count every call as completed (each got its BYE and answered it).
    pub async fn hang_up(mut self) -> anyhow::Result<()> {
        let mut client = self.control.calls().await?;
        for &id in &self.ids {
            let rec = client
                .end_call(pb::EndCallRequest {
                    id,
                    reason: "mediator-bench is done".into(),
                })
                .await
                .with_context(|| format!("ending call {id}"))?
                .into_inner();
            ensure!(
                rec.state == "ended" && rec.status == 200,
                "call {id} ended as {} {}",
                rec.status,
                rec.end_reason
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let n = self.ids.len() as u64;
        for (who, sipp) in [("callers", self.uac.take()), ("gateway", self.uas.take())] {
            let sipp = sipp.context("SIPp is gone")?;
            let run = tokio::task::block_in_place(|| sipp.wait_until(deadline))
                .with_context(|| format!("the {who}' SIPp after the calls were ended"))?;
            check_completed(who, &run, n)?;
        }
        Ok(())
    }
}

fn check_completed(who: &str, run: &UacRun, n: u64) -> anyhow::Result<()> {
    ensure!(
        run.exit_code == 0 && run.successful == n && run.failed == 0,
        "the {who}' SIPp completed {} of {n} calls ({} failed, exit code {}):\n{}",
        run.successful,
        run.failed,
        run.exit_code,
        tail(&run.errors, 20)
    );
    Ok(())
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Codec;

    #[test]
    fn sdp_keys_name_the_peer_and_the_codec() {
        let media = Media::new(Codec::parse("opus").expect("opus"), 20, None);
        let keys = sdp_keys("198.18.1.2", 4000, &media);
        assert_eq!(
            keys.join(" "),
            "-key bench_addr 198.18.1.2 -key bench_port 4000 -key pt 111 \
             -key rtpmap opus/48000/2 -key ptime 20"
        );
    }

    #[test]
    fn a_sipp_run_counts_as_complete_only_with_every_call_and_exit_0() {
        let run = |exit_code, successful, failed| UacRun {
            exit_code,
            successful,
            failed,
            errors: String::new(),
            rtt_ms: Vec::new(),
        };
        assert!(check_completed("callers", &run(0, 10, 0), 10).is_ok());
        assert!(check_completed("callers", &run(0, 9, 0), 10).is_err());
        assert!(check_completed("callers", &run(1, 10, 0), 10).is_err());
        assert!(check_completed("callers", &run(0, 10, 1), 10).is_err());
    }
}
