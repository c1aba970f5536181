//! A thin layer over the two sqlx drivers so that every query is written once.
//!
//! Queries use `$1, $2, …` placeholders, which both PostgreSQL and sqlx's SQLite driver
//! read as numbered parameters. Arguments and row values are limited to what the schema
//! uses (integers, text, booleans), which keeps the two drivers interchangeable without
//! sqlx's `Any` driver and its URL-only configuration.

use std::sync::Arc;

use port_core::error::StoreError;
use port_core::ports::StoreResult;
use port_core::time::Timestamp;
use rusqlite::types::Value;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{PgConnection, Postgres, Row as _, Sqlite, SqliteConnection};

use crate::writer::{self, Session};

/// A bound value.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(bool),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<Timestamp> for Arg {
    fn from(v: Timestamp) -> Self {
        Self::Int(Some(v.unix_millis()))
    }
}

impl From<Option<Timestamp>> for Arg {
    fn from(v: Option<Timestamp>) -> Self {
        Self::Int(v.map(Timestamp::unix_millis))
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Self::Text(Some(v.clone()))
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(str::to_owned))
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

/// Implements `From<&Id>` for the id newtypes, which all have `as_str`.
macro_rules! arg_from_id {
    ($($t:ty),*) => {$(
        impl From<&$t> for Arg {
            fn from(v: &$t) -> Self {
                Self::Text(Some(v.as_str().to_owned()))
            }
        }
    )*};
}
arg_from_id!(
    port_core::id::OrgId,
    port_core::id::RunId,
    port_core::id::LogId,
    port_core::id::DeliveryId,
    port_core::id::ActionId,
    port_core::id::ActionIdentifier,
    port_core::id::BlueprintIdentifier,
    port_core::id::EntityIdentifier,
    port_core::id::IntegrationIdentifier
);

/// A statement and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next numbered placeholder already written in the text.
    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn args(&self) -> &[Arg] {
        &self.args
    }

    /// How many arguments are bound: the next placeholder is `$` this plus one.
    pub(crate) fn arg_count(&self) -> usize {
        self.args.len()
    }

    /// Appends text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a fresh placeholder bound to `arg`.
    pub(crate) fn push_bind(&mut self, arg: impl Into<Arg>) -> &mut Self {
        self.args.push(arg.into());
        let n = self.args.len();
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }
}

/// Joins statements into one for PostgreSQL, `WITH s0 AS (…), s1 AS (…) last`, each
/// one's placeholders renumbered after the previous ones': one round trip and, outside a
/// transaction, one atomic statement. PostgreSQL checks foreign keys at the end of the
/// statement, so a part may refer to a row an earlier part inserts. The parts' text must
/// hold no `$` but their placeholders.
pub(crate) fn chained(parts: Vec<Sql>) -> Sql {
    let count = parts.len();
    let mut joined = Sql::new("");
    for (i, part) in parts.into_iter().enumerate() {
        let offset = joined.args.len();
        let text = renumbered(&part.text, offset);
        joined.args.extend(part.args);
        match (i, i + 1 == count) {
            (0, true) => joined.text = text,
            (0, false) => joined.text = format!("WITH s0 AS ({text})"),
            (_, false) => joined.text.push_str(&format!(", s{i} AS ({text})")),
            (_, true) => joined.text.push_str(&format!(" {text}")),
        }
    }
    joined
}

/// `text` with every `$N` placeholder moved up by `offset`.
fn renumbered(text: &str, offset: usize) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.next_if(char::is_ascii_digit) {
            digits.push(d);
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// Binds every argument onto a `sqlx::query` of either driver.
macro_rules! bound {
    ($db:ty, $sql:expr) => {{
        let sql: &Sql = $sql;
        let mut q = sqlx::query::<$db>(&sql.text);
        for arg in &sql.args {
            q = match arg {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_deref()),
                Arg::Bool(v) => q.bind(*v),
            };
        }
        q
    }};
}

/// A connection of either driver, borrowed from a pool or a transaction.
pub(crate) enum Conn<'c> {
    /// A pooled SQLite reader.
    Sqlite(&'c mut SqliteConnection),
    Pg(&'c mut PgConnection),
    /// A write transaction the SQLite writer thread serves statement by statement.
    Session(&'c Session),
    /// The SQLite writer's own connection, on its own thread: every call answers at
    /// once (see [`crate::writer::now`]).
    Local(&'c mut rusqlite::Connection),
}

impl Conn<'_> {
    /// Runs a statement; returns the number of rows it changed.
    pub(crate) async fn execute(&mut self, sql: &Sql) -> StoreResult<u64> {
        match self {
            Self::Session(s) => return s.execute(sql).await,
            Self::Local(c) => return writer::execute(c, sql),
            Self::Sqlite(c) => bound!(Sqlite, sql)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()),
            Self::Pg(c) => bound!(Postgres, sql)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()),
        }
        .map_err(map_err)
    }

    pub(crate) async fn fetch_all(&mut self, sql: &Sql) -> StoreResult<Vec<Row>> {
        match self {
            Self::Session(s) => return s.fetch_all(sql).await,
            Self::Local(c) => return writer::fetch_all(c, sql),
            Self::Sqlite(c) => bound!(Sqlite, sql)
                .fetch_all(&mut **c)
                .await
                .map(|rows| rows.into_iter().map(Row::Sqlite).collect()),
            Self::Pg(c) => bound!(Postgres, sql)
                .fetch_all(&mut **c)
                .await
                .map(|rows| rows.into_iter().map(Row::Pg).collect()),
        }
        .map_err(map_err)
    }

    pub(crate) async fn fetch_optional(&mut self, sql: &Sql) -> StoreResult<Option<Row>> {
        match self {
            Self::Session(_) | Self::Local(_) => {
                return Ok(self.fetch_all(sql).await?.into_iter().next());
            }
            Self::Sqlite(c) => bound!(Sqlite, sql)
                .fetch_optional(&mut **c)
                .await
                .map(|r| r.map(Row::Sqlite)),
            Self::Pg(c) => bound!(Postgres, sql)
                .fetch_optional(&mut **c)
                .await
                .map(|r| r.map(Row::Pg)),
        }
        .map_err(map_err)
    }
}

/// A write transaction of either driver.
pub(crate) enum Tx {
    /// Served by the SQLite writer thread; committed once durable.
    Sqlite(Session),
    Pg(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(session) => Conn::Session(session),
            Self::Pg(tx) => Conn::Pg(tx),
        }
    }

    pub(crate) async fn commit(self) -> StoreResult<()> {
        match self {
            Self::Sqlite(session) => session.commit().await,
            Self::Pg(tx) => tx.commit().await.map_err(map_err),
        }
    }

    pub(crate) async fn rollback(self) -> StoreResult<()> {
        match self {
            Self::Sqlite(session) => session.rollback().await,
            Self::Pg(tx) => tx.rollback().await.map_err(map_err),
        }
    }

    /// Commits after `Ok`, rolls back after `Err`, and returns the body's result.
    pub(crate) async fn finish<T>(self, result: StoreResult<T>) -> StoreResult<T> {
        match result {
            Ok(value) => self.commit().await.map(|()| value),
            Err(e) => {
                // The body's error is the one worth reporting.
                let _ = self.rollback().await;
                Err(e)
            }
        }
    }
}

/// A pooled read connection of either driver.
pub(crate) enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Pg(PoolConnection<Postgres>),
}

impl Pooled {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(c) => Conn::Sqlite(c),
            Self::Pg(c) => Conn::Pg(c),
        }
    }
}

/// A result row of either driver.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Pg(PgRow),
    /// Read by the SQLite writer's own connection.
    Local(LocalRow),
}

/// A row read on the writer thread, owned so it can leave it.
#[derive(Debug)]
pub(crate) struct LocalRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl LocalRow {
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Value>) -> Self {
        Self { columns, values }
    }

    fn get(&self, column: &str) -> StoreResult<&Value> {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Other(format!("no column {column}")))
    }

    fn opt_i64(&self, column: &str) -> StoreResult<Option<i64>> {
        match self.get(column)? {
            Value::Null => Ok(None),
            Value::Integer(v) => Ok(Some(*v)),
            _ => Err(StoreError::Other(format!(
                "column {column} is not an integer"
            ))),
        }
    }

    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        match self.get(column)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            _ => Err(StoreError::Other(format!("column {column} is not text"))),
        }
    }
}

fn decode_err(column: &str, e: sqlx::Error) -> StoreError {
    StoreError::Other(format!("cannot read column {column}: {e}"))
}

impl Row {
    pub(crate) fn opt_i64(&self, column: &str) -> StoreResult<Option<i64>> {
        match self {
            Self::Sqlite(r) => r.try_get::<Option<i64>, _>(column),
            Self::Pg(r) => r.try_get::<Option<i64>, _>(column),
            Self::Local(r) => return r.opt_i64(column),
        }
        .map_err(|e| decode_err(column, e))
    }

    pub(crate) fn i64(&self, column: &str) -> StoreResult<i64> {
        self.opt_i64(column)?
            .ok_or_else(|| StoreError::Other(format!("column {column} is null")))
    }

    pub(crate) fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        match self {
            Self::Sqlite(r) => r.try_get::<Option<String>, _>(column),
            Self::Pg(r) => r.try_get::<Option<String>, _>(column),
            Self::Local(r) => return r.opt_text(column),
        }
        .map_err(|e| decode_err(column, e))
    }

    pub(crate) fn text(&self, column: &str) -> StoreResult<String> {
        self.opt_text(column)?
            .ok_or_else(|| StoreError::Other(format!("column {column} is null")))
    }

    pub(crate) fn boolean(&self, column: &str) -> StoreResult<bool> {
        match self {
            // SQLite keeps booleans as integers (the tables are STRICT).
            Self::Sqlite(r) => r.try_get::<i64, _>(column).map(|v| v != 0),
            Self::Pg(r) => r.try_get::<bool, _>(column),
            Self::Local(_) => return self.i64(column).map(|v| v != 0),
        }
        .map_err(|e| decode_err(column, e))
    }

    pub(crate) fn timestamp(&self, column: &str) -> StoreResult<Timestamp> {
        self.i64(column).map(Timestamp::from_unix_millis)
    }

    pub(crate) fn opt_timestamp(&self, column: &str) -> StoreResult<Option<Timestamp>> {
        Ok(self.opt_i64(column)?.map(Timestamp::from_unix_millis))
    }
}

/// Maps a driver error to the domain's storage error. Messages carry the database's
/// own words but never bound values, so no secret ends up in them.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::AlreadyExists(db.message().to_owned());
            }
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite: SQLITE_BUSY / SQLITE_LOCKED (and their extended codes) after
                // the busy timeout. Only SQLite's codes are numbers: read as one,
                // PostgreSQL's 22021 (a NUL in text) looked like SQLITE_BUSY.
                return if is_sqlite_busy(&code) {
                    StoreError::Unavailable(db.message().to_owned())
                } else {
                    StoreError::Other(db.message().to_owned())
                };
            }
            match code.as_str() {
                // PostgreSQL: serialization failure and deadlock; the caller may retry.
                "40001" | "40P01" => StoreError::Conflict(db.message().to_owned()),
                // PostgreSQL: connection exceptions, shutdowns, too many connections.
                c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => {
                    StoreError::Unavailable(db.message().to_owned())
                }
                // PostgreSQL: data exceptions (22021 a NUL or invalid UTF-8 in text,
                // 22P05 an unsupported Unicode escape, 22P02 invalid text for a type, …)
                // are the request's values, not the database's state: never "retry later".
                // The database's message may quote the value, so it stays out.
                c if c.starts_with("22") => StoreError::InvalidInput(format!(
                    "a value of the request cannot be stored (SQLSTATE {c}); text must not contain NUL (U+0000)"
                )),
                _ => StoreError::Other(db.message().to_owned()),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

fn is_sqlite_busy(code: &str) -> bool {
    // Extended result codes keep the primary code in the low byte.
    code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

/// Replaces an "already exists" message with a description of the thing, so callers
/// see which identifier was taken rather than a constraint name.
pub(crate) fn taken(what: impl FnOnce() -> String) -> impl FnOnce(StoreError) -> StoreError {
    move |e| match e {
        StoreError::AlreadyExists(_) => StoreError::AlreadyExists(what()),
        other => other,
    }
}

/// Converts an unsigned count for binding.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Converts a stored count back, refusing values a healthy database never holds.
pub(crate) fn from_i64<T: TryFrom<i64>>(v: i64, column: &str) -> StoreResult<T> {
    T::try_from(v)
        .map_err(|_| StoreError::Other(format!("column {column} holds {v}, out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_statements_renumber_their_placeholders() {
        let one = Sql::new("INSERT INTO a VALUES ($1, $2, $1)")
            .bind(1_i64)
            .bind("x");
        let two = Sql::new("INSERT INTO b VALUES ($1)").bind(2_i64);
        let three = Sql::new("INSERT INTO c VALUES ($2, $1)")
            .bind(3_i64)
            .bind(4_i64);
        let joined = chained(vec![one.clone(), two, three]);
        assert_eq!(
            joined.text(),
            "WITH s0 AS (INSERT INTO a VALUES ($1, $2, $1)), s1 AS (INSERT INTO b VALUES ($3)) \
             INSERT INTO c VALUES ($5, $4)"
        );
        assert_eq!(joined.args().len(), 5);
        assert_eq!(
            chained(vec![one]).text(),
            "INSERT INTO a VALUES ($1, $2, $1)"
        );
    }
}
