//! WebSocket frames (RFC 6455 5.2) followed by their headers only, in one direction of a
//! tunnel: enough to know where a frame ends (so that a Close of the pump's own can go
//! between two frames) and whether a Close has passed. Payloads are skipped, never
//! read or copied.

/// The longest frame header: two bytes, a 64-bit length, a mask.
const LONGEST_HEAD: usize = 14;

/// Where one direction of a WebSocket tunnel is in its frames.
#[derive(Debug, Default)]
pub(super) struct Frames {
    /// Payload bytes of the current frame still to pass.
    payload: u64,
    /// A frame header passed in part, and how much of it.
    head: [u8; LONGEST_HEAD],
    have: usize,
    /// A Close frame has passed: a closing handshake is under way.
    pub closed: bool,
}

impl Frames {
    /// Between two frames: the next byte to pass starts a frame.
    pub fn at_boundary(&self) -> bool {
        self.payload == 0 && self.have == 0
    }

    /// Follows `bytes`, the next ones to pass this way.
    pub fn pass(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload > 0 {
                let n = self.payload.min(bytes.len() as u64);
                self.payload -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            // A header: its first two bytes say how long it is.
            let want = if self.have < 2 { 2 } else { head_len(self.head[1]) };
            let n = (want - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have >= 2 && self.have == head_len(self.head[1]) {
                self.payload = payload_len(&self.head[..self.have]);
                self.closed |= self.head[0] & 0x0f == OP_CLOSE;
                self.have = 0;
            }
        }
    }
}

const OP_CLOSE: u8 = 0x8;

/// A header's length from its second byte (the mask bit and the 7-bit length).
fn head_len(second: u8) -> usize {
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// The payload length a whole header gives.
fn payload_len(head: &[u8]) -> u64 {
    match head[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
        127 => u64::from_be_bytes(head[2..10].try_into().expect("eight bytes")),
        short => u64::from(short),
    }
}

/// Going Away (RFC 6455 7.4.1): the server end is going down, or the connection was
/// kept too long.
pub const GOING_AWAY: u16 = 1001;

/// Internal Error (RFC 6455 7.4.1): the server met a condition it did not expect; sent
/// for a member that went away without closing.
pub const INTERNAL_ERROR: u16 = 1011;

/// A Close frame as a server sends it (unmasked) with `code` and `reason` (cut to the
/// 123 bytes a control frame has room for, at a character boundary).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.push(0x80 | OP_CLOSE);
    frame.push((2 + reason.len()) as u8);
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client sends it (masked, with a zero mask: the payload as it is).
    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(payload);
        frame
    }

    /// Passes `stream` in pieces of `piece` bytes; the boundaries seen after each piece.
    fn boundaries(stream: &[u8], piece: usize) -> Vec<usize> {
        let mut frames = Frames::default();
        let mut at = Vec::new();
        let mut passed = 0;
        for chunk in stream.chunks(piece) {
            frames.pass(chunk);
            passed += chunk.len();
            if frames.at_boundary() {
                at.push(passed);
            }
        }
        at
    }

    #[test]
    fn frames_of_every_length_form_are_followed_however_their_bytes_are_split() {
        let frames = [
            masked(0x1, b"hello"),
            masked(0x2, &[7; 126]),
            masked(0x2, &[]),
            masked(0x1, &vec![b'x'; 70_000]),
            close_frame(1000, "bye"),
        ];
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for frame in &frames {
            stream.extend_from_slice(frame);
            ends.push(stream.len());
        }
        // One byte at a time: at a boundary exactly at each frame's end.
        assert_eq!(boundaries(&stream, 1), ends);
        // Any split: never at a boundary inside a frame.
        for piece in [2, 3, 5, 13, 14, 127, 4096, stream.len()] {
            for at in boundaries(&stream, piece) {
                assert!(
                    ends.contains(&at),
                    "piece {piece}: boundary at {at}, frames end at {ends:?}"
                );
            }
        }
        let mut whole = Frames::default();
        whole.pass(&stream);
        assert!(whole.at_boundary() && whole.closed);
    }

    #[test]
    fn a_close_is_seen_only_once_its_header_is_whole() {
        let mut frames = Frames::default();
        frames.pass(&masked(0x1, b"text"));
        assert!(!frames.closed);
        let close = masked(0x8, &1000u16.to_be_bytes());
        frames.pass(&close[..1]);
        assert!(!frames.closed && !frames.at_boundary());
        frames.pass(&close[1..]);
        assert!(frames.closed && frames.at_boundary());
    }

    #[test]
    fn a_close_frame_carries_its_code_and_a_reason_cut_to_fit() {
        assert_eq!(close_frame(GOING_AWAY, "idle"), b"\x88\x06\x03\xe9idle");
        let long = "é".repeat(100);
        let frame = close_frame(GOING_AWAY, &long);
        assert_eq!(frame.len(), 4 + 122, "cut at a character boundary under 123 bytes");
        assert_eq!(frame[1] as usize, frame.len() - 2);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }
}
