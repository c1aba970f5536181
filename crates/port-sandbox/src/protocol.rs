//! What the server and a worker say to each other over the worker's stdin and stdout:
//! frames of a 4-byte big-endian length and that many bytes of JSON, one request and
//! one answer at a time.

use std::io::{self, Read, Write};

use port_core::template::{Budget, TemplateError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// A frame larger than this is a protocol error: requests carry a template and a
/// context (each bounded by the API's 1 MiB bodies), answers at most the budget's
/// output.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One render.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub template: Value,
    pub context: Value,
    pub budget: Budget,
}

/// Its result.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    Rendered(Value),
    Failed(TemplateError),
}

fn too_large(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a frame of {len} bytes is larger than {MAX_FRAME}"),
    )
}

/// Writes one frame (blocking; the worker's side).
pub fn write_frame(out: &mut impl Write, message: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME)
        .ok_or_else(|| too_large(body.len()))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(&body)?;
    out.flush()
}

/// Reads one frame (blocking); `None` at the end of the input.
pub fn read_frame<T: for<'de> Deserialize<'de>>(input: &mut impl Read) -> io::Result<Option<T>> {
    let mut len = [0_u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(too_large(len));
    }
    let mut body = vec![0_u8; len];
    input.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes one frame (the server's side).
pub async fn send_frame(
    out: &mut (impl AsyncWrite + Unpin),
    message: &impl Serialize,
) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME)
        .ok_or_else(|| too_large(body.len()))?;
    out.write_all(&len.to_be_bytes()).await?;
    out.write_all(&body).await?;
    out.flush().await
}

/// Reads one frame of at most `max` bytes (the server's side).
pub async fn receive_frame<T: for<'de> Deserialize<'de>>(
    input: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> io::Result<T> {
    let mut len = [0_u8; 4];
    input.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max.min(MAX_FRAME) {
        return Err(too_large(len));
    }
    let mut body = vec![0_u8; len];
    input.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
