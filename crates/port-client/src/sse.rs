//! A server-sent events parser (the WHATWG "event stream interpretation"), fed with
//! bytes as they arrive. Small enough that a dependency would not pay for itself.

use std::time::Duration;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// `event:`; `message` when absent.
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
    /// The last `id:` seen so far on this stream (it persists across events).
    pub(crate) id: Option<String>,
}

/// Incremental parser: [`SseParser::feed`] chunks, get complete events back.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of an incomplete line (a chunk may end mid-line or mid-character).
    pending: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    started: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The reconnection delay the server last asked for (`retry:`).
    pub(crate) fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Parses a chunk and returns the events it completed.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let mut line = std::mem::take(&mut self.pending);
            line.extend_from_slice(&rest[..end]);
            let terminator = rest[end];
            rest = &rest[end + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.pending.extend_from_slice(rest);
        events
    }

    fn line(&mut self, raw: &[u8]) -> Option<SseEvent> {
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if !self.started {
            self.started = true;
            if let Some(stripped) = line.strip_prefix('\u{feff}') {
                line = stripped.to_owned();
            }
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(text: &str, piece: usize) -> (Vec<SseEvent>, SseParser) {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            events.extend(parser.feed(chunk));
        }
        (events, parser)
    }

    #[test]
    fn events_survive_any_chunking() {
        let text = "\u{feff}: keep-alive\nretry: 1500\n\nevent: log\nid: 1\ndata: {\"message\":\"héllo\"}\n\r\nevent: status\ndata:a\ndata: b\r\rdata: plain\n\nid\nevent: end\ndata\n\n";
        for piece in 1..text.len() {
            let (events, parser) = parse_in_pieces(text, piece);
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: "log".into(),
                        data: "{\"message\":\"héllo\"}".into(),
                        id: Some("1".into())
                    },
                    SseEvent {
                        event: "status".into(),
                        data: "a\nb".into(),
                        id: Some("1".into())
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "plain".into(),
                        id: Some("1".into())
                    },
                    SseEvent {
                        event: "end".into(),
                        data: String::new(),
                        id: Some(String::new())
                    },
                ],
                "chunks of {piece}"
            );
            assert_eq!(parser.retry(), Some(Duration::from_millis(1500)));
        }
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        let (events, _) = parse_in_pieces("event: log\ndata: x\n", 4);
        assert!(events.is_empty());
        let (events, _) = parse_in_pieces("event: log\n\n", 4);
        assert!(events.is_empty(), "an event without data is dropped");
    }
}
