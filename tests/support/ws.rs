//! WebSocket frame encoding and decoding (RFC 6455 section 5.2) for the server side.
//!
//! Server frames are written unmasked and unfragmented. Client frames are decoded and unmasked;
//! the caller checks that they were masked and reassembles fragmented messages.

pub const OPCODE_CONTINUATION: u8 = 0x0;
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// One decoded client frame with its payload already unmasked.
#[derive(Clone, Debug)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Reasons why a frame header cannot be accepted.
#[derive(Debug)]
pub enum DecodeError {
    /// The announced payload length exceeds the caller's limit.
    TooLarge(u64),
    /// Reserved bits are set, or a control frame is fragmented or longer than 125 bytes.
    Protocol,
}

/// Encodes one unmasked frame with FIN set.
pub fn encode_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        frame.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        frame.push(126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(payload);
    frame
}

/// Builds a close frame payload: nothing when `code` is `None`, else the code and the reason.
pub fn close_payload(code: Option<u16>, reason: &str) -> Vec<u8> {
    match code {
        None => Vec::new(),
        Some(code) => {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            payload
        }
    }
}

/// Returns the status code of a close frame payload, or `None` for an empty payload.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    match payload {
        [high, low, ..] => Some(u16::from_be_bytes([*high, *low])),
        _ => None,
    }
}

/// Decodes the frame at the start of `buffer`.
///
/// Returns `Ok(None)` while the frame is incomplete, else the frame and the number of bytes it
/// used. A header announcing more than `max_payload` bytes fails at once, before the payload
/// arrives.
pub fn decode_frame(
    buffer: &[u8],
    max_payload: usize,
) -> Result<Option<(Frame, usize)>, DecodeError> {
    let [first, second, ..] = buffer else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    let masked = second & 0x80 != 0;
    if first & 0x70 != 0 {
        return Err(DecodeError::Protocol);
    }

    let mut offset = 2;
    let len = match second & 0x7F {
        126 => {
            let Some(bytes) = buffer.get(2..4) else {
                return Ok(None);
            };
            offset = 4;
            u64::from(u16::from_be_bytes([bytes[0], bytes[1]]))
        }
        127 => {
            let Some(bytes) = buffer.get(2..10) else {
                return Ok(None);
            };
            offset = 10;
            u64::from_be_bytes(bytes.try_into().expect("slice of 8 bytes"))
        }
        short => u64::from(short),
    };
    let is_control = opcode >= 0x8;
    if is_control && (!fin || len > 125) {
        return Err(DecodeError::Protocol);
    }
    if len > max_payload as u64 {
        return Err(DecodeError::TooLarge(len));
    }

    let mut mask = [0u8; 4];
    if masked {
        let Some(bytes) = buffer.get(offset..offset + 4) else {
            return Ok(None);
        };
        mask.copy_from_slice(bytes);
        offset += 4;
    }
    let end = offset + len as usize;
    let Some(body) = buffer.get(offset..end) else {
        return Ok(None);
    };
    let payload = body
        .iter()
        .enumerate()
        .map(|(i, byte)| byte ^ mask[i % 4])
        .collect();
    let frame = Frame {
        fin,
        opcode,
        masked,
        payload,
    };
    Ok(Some((frame, end)))
}
