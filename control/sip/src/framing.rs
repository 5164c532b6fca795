//! Cutting a TCP or TLS byte stream into SIP messages (RFC 3261 18.3: Content-Length is
//! mandatory on streams) and answering RFC 5626 CRLF keep-alives. Bounded: a peer that never ends
//! its headers, or announces a body too large, gets an error and its connection closed.

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

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
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
        if leading > 0 && leading < self.buf.len() {
            self.buf.drain(..leading);
        }
        let Some(end) = find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > MAX_MESSAGE_BYTES {
                return Err(FrameError::HeadersTooLong);
            }
            return Ok(None);
        };
        let header_end = end + 4;
        let body = content_length(&self.buf[..end])?;
        let total = header_end.checked_add(body).ok_or(FrameError::TooLarge)?;
        if total > MAX_MESSAGE_BYTES {
            return Err(FrameError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.drain(..total).collect())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
