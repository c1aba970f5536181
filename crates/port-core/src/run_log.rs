//! Run logs: append-only lines with a per-run sequence.

use serde_json::{Value, json};

use crate::id::{LogId, RunId};
use crate::time::Timestamp;

/// Longest log line kept; longer messages are cut (and say so) rather than refused,
/// so a chatty script never loses its last words.
pub const MAX_LOG_MESSAGE_BYTES: usize = 64 * 1024;

/// A log line about to be stored; the store assigns its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRunLog {
    pub id: LogId,
    pub run_id: RunId,
    pub message: String,
    pub created_at: Timestamp,
    pub created_by: String,
}

impl NewRunLog {
    pub fn new(
        id: LogId,
        run_id: RunId,
        message: &str,
        created_at: Timestamp,
        created_by: &str,
    ) -> Self {
        Self {
            id,
            run_id,
            message: truncate_message(message),
            created_at,
            created_by: created_by.to_owned(),
        }
    }
}

/// A stored log line. `seq` starts at 1 and orders the lines of one run totally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLog {
    pub seq: u64,
    pub id: LogId,
    pub run_id: RunId,
    pub message: String,
    pub created_at: Timestamp,
    pub created_by: String,
}

impl RunLog {
    pub fn from_new(new: NewRunLog, seq: u64) -> Self {
        Self {
            seq,
            id: new.id,
            run_id: new.run_id,
            message: new.message,
            created_at: new.created_at,
            created_by: new.created_by,
        }
    }

    /// `{id, runId, message, createdAt, createdBy}`, as the seed shows.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "runId": self.run_id,
            "message": self.message,
            "createdAt": self.created_at,
            "createdBy": self.created_by,
        })
    }
}

fn truncate_message(message: &str) -> String {
    if message.len() <= MAX_LOG_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_LOG_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated]", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_LOG_MESSAGE_BYTES);
        let cut = truncate_message(&long);
        assert!(cut.len() < long.len());
        assert!(cut.ends_with("[truncated]"));
        assert_eq!(truncate_message("short"), "short");
    }
}
