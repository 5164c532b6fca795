//! Cutting a TCP or TLS byte stream into SIP messages (RFC 3261 18.3: Content-Length is
//! mandatory on streams) and answering RFC 5626 CRLF keep-alives. Bounded: a peer that never ends
//! its headers, or announces a body too large, gets an error and its connection closed. Linear:
//! the search for the end of the headers resumes where the last one stopped, and once they have
//! ended the message's length is known, so a message sent a byte at a time costs no more to frame
//! than one sent at once.

use super::message::MAX_MESSAGE_BYTES;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("headers longer than {MAX_MESSAGE_BYTES} bytes without an end")]
    HeadersTooLong,
    #[error("no Content-Length, which a stream transport requires")]
    NoContentLength,
    #[error("malformed Content-Length")]
    BadContentLength,
    #[error("message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A double-CRLF keep-alive ping: answer with a single CRLF pong.
    Ping,
}

#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the end of the headers without finding it.
    scanned: usize,
    /// The length of the message at the front of `buf`, once its headers have ended.
    total: Option<usize>,
    /// Bytes examined by the header search since the start (a test's measure of linearity).
    #[cfg(test)]
    examined: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(headers: &[u8]) -> Result<usize, FrameError> {
    let text = std::str::from_utf8(headers).map_err(|_| FrameError::BadContentLength)?;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            return value
                .trim()
                .parse()
                .map_err(|_| FrameError::BadContentLength);
        }
    }
    Err(FrameError::NoContentLength)
}

impl Framer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// After [`Self::next_frame`] answered `None`: whether nothing but CRLFs is buffered (no
    /// message has begun to arrive). Constant time: a message that has begun has been searched.
    pub fn is_between_messages(&self) -> bool {
        self.total.is_none() && self.scanned == 0
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let total = match self.total {
            Some(total) => total,
            None => {
                if self.scanned == 0 {
                    // Between messages.
                    if self.buf.starts_with(b"\r\n\r\n") {
                        self.buf.drain(..4);
                        return Ok(Some(Frame::Ping));
                    }
                    // Stray CRLFs between messages (RFC 3261 7.5) are skipped.
                    let leading = self
                        .buf
                        .iter()
                        .take_while(|&&b| b == b'\r' || b == b'\n')
                        .count();
                    if leading == self.buf.len() {
                        return Ok(None); // only CRLFs so far: a ping may be arriving
                    }
                    self.buf.drain(..leading);
                }
                // Resume the search where it stopped (less the 3 bytes a terminator split
                // across reads may have begun with).
                let from = self.scanned.saturating_sub(3);
                #[cfg(test)]
                {
                    self.examined += self.buf.len() - from;
                }
                let Some(i) = find(&self.buf[from..], b"\r\n\r\n") else {
                    self.scanned = self.buf.len();
                    if self.buf.len() > MAX_MESSAGE_BYTES {
                        return Err(FrameError::HeadersTooLong);
                    }
                    return Ok(None);
                };
                let end = from + i;
                let body = content_length(&self.buf[..end])?;
                let total = (end + 4).checked_add(body).ok_or(FrameError::TooLarge)?;
                if total > MAX_MESSAGE_BYTES {
                    return Err(FrameError::TooLarge);
                }
                self.total = Some(total);
                total
            }
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        self.total = None;
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.drain(..total).collect())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 60 KB of headers and body sent a byte at a time: framed with each byte examined a
    /// bounded number of times (a rescan on every read would examine ~1.8 G).
    #[test]
    fn a_message_trickled_a_byte_at_a_time_is_framed_in_linear_work() {
        let body = vec![b'x'; 30_000];
        let mut msg = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n".to_vec();
        for i in 0..600 {
            msg.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "y".repeat(40)).as_bytes());
        }
        msg.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        msg.extend_from_slice(&body);
        assert!(msg.len() > 60_000 && msg.len() <= MAX_MESSAGE_BYTES);
        let mut f = Framer::default();
        let mut frames = Vec::new();
        for b in &msg {
            f.push(std::slice::from_ref(b));
            while let Some(frame) = f.next_frame().expect("frames") {
                frames.push(frame);
            }
        }
        assert_eq!(frames, [Frame::Message(msg.clone())]);
        assert!(
            f.examined < 4 * msg.len(),
            "{} bytes examined for a {}-byte message",
            f.examined,
            msg.len()
        );
    }

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn cuts_messages_split_and_joined_anyhow() {
        let mut stream = Vec::new();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(&MSG.to_ascii_lowercase().replace_content_length());
        for chunk in [1, 3, 7, 64, 4096] {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                f.push(piece);
                while let Some(frame) = f.next_frame().expect("frame") {
                    got.push(frame);
                }
            }
            assert_eq!(got.len(), 3, "chunk {chunk}: {got:?}");
            assert_eq!(got[0], Frame::Message(MSG.to_vec()));
            assert_eq!(got[1], Frame::Ping);
        }
    }

    trait Lower {
        fn replace_content_length(&self) -> Vec<u8>;
    }
    impl Lower for Vec<u8> {
        /// The compact form `l:` (lower-cased message, as a peer may send it).
        fn replace_content_length(&self) -> Vec<u8> {
            String::from_utf8_lossy(self)
                .replace("content-length:", "l:")
                .into_bytes()
        }
    }

    #[test]
    fn refuses_what_has_no_end() {
        let mut f = Framer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::NoContentLength));
        let mut f = Framer::default();
        f.push(
            format!(
                "INVITE sip:a@b SIP/2.0\r\nContent-Length: {}\r\n\r\n",
                MAX_MESSAGE_BYTES
            )
            .as_bytes(),
        );
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge));
        let mut f = Framer::default();
        f.push(&vec![b'a'; MAX_MESSAGE_BYTES + 1]);
        assert_eq!(f.next_frame(), Err(FrameError::HeadersTooLong));
    }
}
