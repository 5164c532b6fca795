//! Debian's baresip as a lab peer: a real SIP client with SDES SRTP (RFC 4568) that no one here
//! wrote, run headless from a private configuration directory — no terminal, no sound card, no
//! registration. It sends a tone read from a WAV file (module aufile) and requires SRTP
//! (`mediaenc=srtp-mand`): it offers RTP/SAVP with one `a=crypto` (AES_CM_128_HMAC_SHA1_80, no
//! MKI) and refuses plain RTP. Killed on drop, its directory removed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Baresip {
    child: Option<Child>,
    dir: PathBuf,
}

/// A WAV file of `secs` seconds of a `hz` tone: 8 kHz, mono, 16-bit (what aufile needs).
fn tone_wav(path: &std::path::Path, hz: f64, secs: u32) -> std::io::Result<()> {
    let samples = 8000 * secs;
    let mut b = Vec::with_capacity(44 + samples as usize * 2);
    let data_len = samples * 2;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let v = (f64::from(i) * hz * std::f64::consts::TAU / 8000.0).sin() * 8000.0;
        b.extend_from_slice(&(v as i16).to_le_bytes());
    }
    std::fs::write(path, b)
}

impl Baresip {
    /// Starts baresip in `ns` listening for SIP on `ip:port` (UDP), RTP on `rtp_ports`
    /// ("MIN-MAX"), as `user`; it dials `dial` when given, answers calls by itself otherwise, and
    /// hangs up and exits after `secs` seconds.
    pub fn start(
        ns: &str,
        ip: &str,
        port: u16,
        rtp_ports: &str,
        user: &str,
        dial: Option<&str>,
        secs: u32,
    ) -> anyhow::Result<Baresip> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mediator-baresip-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let wav = dir.join("tone.wav");
        tone_wav(&wav, 440.0, secs + 5)?;
        let config = format!(
            "poll_method epoll\n\
             sip_listen {ip}:{port}\n\
             call_local_timeout 30\n\
             call_max_calls 2\n\
             audio_source aufile,{}\n\
             audio_player none,none\n\
             audio_alert none,none\n\
             audio_buffer 20-160\n\
             audio_level no\n\
             rtp_ports {rtp_ports}\n\
             rtcp_mux no\n\
             jitter_buffer_delay 0-10\n\
             rtp_timeout 0\n\
             net_interface {ip}\n\
             dns_server 127.0.0.1:53\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aufile.so\n\
             module srtp.so\n\
             module_tmp account.so\n\
             module_app menu.so\n",
            wav.display()
        );
        std::fs::write(dir.join("config"), config)?;
        let answer = if dial.is_none() {
            ";answermode=auto"
        } else {
            ""
        };
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{ip}>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU,PCMA;ptime=20{answer}\n"
            ),
        )?;
        std::fs::write(dir.join("contacts"), "")?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{ns}"))
            .arg("--")
            .arg("baresip")
            .arg("-f")
            .arg(&dir)
            .arg("-t")
            .arg(secs.to_string());
        if let Some(uri) = dial {
            cmd.arg("-e").arg(format!("/dial {uri}"));
        }
        let log = std::fs::File::create(dir.join("log"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting baresip (is it installed? .ci/setup installs it)")?;
        Ok(Baresip {
            child: Some(child),
            dir,
        })
    }

    /// What baresip logged (its calls, their media encryption, its errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Waits for baresip to exit by itself, at most `limit`; its log.
    pub fn wait(&mut self, limit: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        let Some(child) = self.child.as_mut() else {
            bail!("baresip is not running");
        };
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("baresip did not exit within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = None;
        Ok(self.log())
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
