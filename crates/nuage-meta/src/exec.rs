//! One way for the write path to run its statements on either kind of connection: sqlx's
//! (PostgreSQL, and SQLite's pool), or the SQLite connection the group commit owns on a
//! thread of its own ([`Writer`]), where a statement is a function call rather than a
//! message to sqlx's worker thread and back.
//!
//! Measured (issue 19, `bench/s3.sh`): a small object's commit is about twenty statements;
//! through sqlx's SQLite driver each one is two thread hand-offs, about 90 µs on two cores,
//! and the single writer spent ~2 ms per version. On the writer's own connection a whole
//! batch is one hand-off.

use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row as _};
use tokio::sync::oneshot;

use crate::{Error, Result};

/// A value bound to a statement's parameter; a NULL keeps its type (PostgreSQL wants one).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Arg {
        Arg::Blob(Some(v))
    }
}
impl From<Option<Vec<u8>>> for Arg {
    fn from(v: Option<Vec<u8>>) -> Arg {
        Arg::Blob(v)
    }
}

/// The arguments of a statement, in the order of their `$n`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$($crate::exec::Arg::from($a)),*] };
}
pub(crate) use args;

/// A row read by either kind of connection.
pub(crate) enum Row {
    Any(AnyRow),
    Lite(Vec<rusqlite::types::Value>),
}

/// A column type both kinds of rows can give.
pub(crate) trait Col: Sized + for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> {
    fn from_lite(v: &rusqlite::types::Value) -> Option<Self>;
}

impl Col for i64 {
    fn from_lite(v: &rusqlite::types::Value) -> Option<i64> {
        match v {
            rusqlite::types::Value::Integer(n) => Some(*n),
            _ => None,
        }
    }
}
impl Col for String {
    fn from_lite(v: &rusqlite::types::Value) -> Option<String> {
        match v {
            rusqlite::types::Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl Col for Vec<u8> {
    fn from_lite(v: &rusqlite::types::Value) -> Option<Vec<u8>> {
        match v {
            rusqlite::types::Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}
impl<T: Col> Col for Option<T>
where
    Option<T>: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    fn from_lite(v: &rusqlite::types::Value) -> Option<Option<T>> {
        match v {
            rusqlite::types::Value::Null => Some(None),
            v => T::from_lite(v).map(Some),
        }
    }
}

/// A row whose columns can be read by number: sqlx's, or a [`Row`].
pub(crate) trait Cols {
    /// Column `i`, as sqlx's `try_get` reads it.
    fn get<T: Col>(&self, i: usize) -> Result<T>;
}

impl Cols for Row {
    fn get<T: Col>(&self, i: usize) -> Result<T> {
        match self {
            Row::Any(row) => Cols::get(row, i),
            Row::Lite(values) => values
                .get(i)
                .and_then(T::from_lite)
                .ok_or_else(|| Error::Corrupt(format!("column {i} is not a {}", std::any::type_name::<T>()))),
        }
    }
}

impl Cols for AnyRow {
    fn get<T: Col>(&self, i: usize) -> Result<T> {
        Ok(self.try_get(i)?)
    }
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Row::Any(row) => write!(f, "Row::Any({} columns)", row.len()),
            Row::Lite(values) => f.debug_tuple("Row::Lite").field(values).finish(),
        }
    }
}

impl From<AnyRow> for Row {
    fn from(row: AnyRow) -> Row {
        Row::Any(row)
    }
}

/// A connection the write path can run statements on.
pub(crate) trait Db: Send {
    /// Runs `sql`, answering the rows it changed.
    fn execute(&mut self, sql: &str, args: Vec<Arg>) -> impl Future<Output = Result<u64>> + Send;
    /// Runs `sql`, answering its rows.
    fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> impl Future<Output = Result<Vec<Row>>> + Send;

    /// Its first row, if any.
    fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> impl Future<Output = Result<Option<Row>>> + Send {
        async move { Ok(self.fetch_all(sql, args).await?.into_iter().next()) }
    }
    /// Its first row, which must be there.
    fn fetch_one(&mut self, sql: &str, args: Vec<Arg>) -> impl Future<Output = Result<Row>> + Send {
        async move { self.fetch_optional(sql, args).await?.ok_or_else(|| Error::from(sqlx::Error::RowNotFound)) }
    }
}

fn bound<'q>(
    sql: &'q str,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Any, <Any as sqlx::Database>::Arguments<'q>> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Blob(v) => q.bind(v),
        };
    }
    q
}

impl Db for AnyConnection {
    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        Ok(bound(sql, args).execute(&mut *self).await?.rows_affected())
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>> {
        Ok(bound(sql, args).fetch_all(&mut *self).await?.into_iter().map(Row::Any).collect())
    }

    async fn fetch_optional(&mut self, sql: &str, args: Vec<Arg>) -> Result<Option<Row>> {
        Ok(bound(sql, args).fetch_optional(&mut *self).await?.map(Row::Any))
    }
}

/// A transaction, or a connection taken from the pool, runs on its connection.
macro_rules! through_connection {
    ($($t:ty),*) => {$(
        impl Db for $t {
            async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64> {
                (**self).execute(sql, args).await
            }
            async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>> {
                (**self).fetch_all(sql, args).await
            }
            async fn fetch_optional(&mut self, sql: &str, args: Vec<Arg>) -> Result<Option<Row>> {
                (**self).fetch_optional(sql, args).await
            }
        }
    )*};
}
through_connection!(sqlx::Transaction<'_, Any>, sqlx::pool::PoolConnection<Any>);

/// The group commit's SQLite connection, run on its own thread: its futures are ready at
/// once (each statement is a call), so the thread drives them with `block_on`.
#[derive(Debug)]
pub(crate) struct Lite<'c>(pub(crate) &'c mut rusqlite::Connection);

impl Lite<'_> {
    /// Prepares `sql` (cached) and binds `args` by the number in each `$n`, as sqlx does.
    fn run<T>(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
        f: impl FnOnce(&mut rusqlite::Statement<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut stmt = self.0.prepare_cached(sql)?;
        for i in 1..=stmt.parameter_count() {
            let arg = stmt
                .parameter_name(i)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| args.get(n.wrapping_sub(1)))
                .ok_or_else(|| Error::Corrupt(format!("parameter {i} of {sql:?} has no argument")))?;
            match arg {
                Arg::Int(v) => stmt.raw_bind_parameter(i, v)?,
                Arg::Text(v) => stmt.raw_bind_parameter(i, v)?,
                Arg::Blob(v) => stmt.raw_bind_parameter(i, v)?,
            }
        }
        Ok(f(&mut stmt)?)
    }
}

impl Db for Lite<'_> {
    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        self.run(sql, args, |stmt| {
            let mut rows = stmt.raw_query();
            while rows.next()?.is_some() {}
            Ok(())
        })?;
        Ok(self.0.changes())
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>> {
        self.run(sql, args, |stmt| {
            let n = stmt.column_count();
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    use rusqlite::types::{Value, ValueRef};
                    values.push(match row.get_ref(i)? {
                        // Text that is not UTF-8 (written by another tool) is an error, where
                        // rusqlite's own conversion would panic.
                        ValueRef::Text(t) => Value::Text(
                            std::str::from_utf8(t).map_err(rusqlite::Error::Utf8Error)?.to_owned(),
                        ),
                        v => Value::from(v),
                    });
                }
                out.push(Row::Lite(values));
            }
            Ok(out)
        })
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Database(crate::error::DbError::lite(e))
    }
}

type Work = Box<dyn FnOnce(&mut rusqlite::Connection) + Send>;

/// The thread that owns the group commit's SQLite connection: work sent to it runs there,
/// one at a time, in the order sent.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    work: mpsc::Sender<Work>,
}

impl Writer {
    /// Opens `path` with the pool's settings (WAL, `synchronous = FULL`, foreign keys, a
    /// busy timeout for other processes) on a thread named `nuage-sqlite-writer`.
    pub(crate) fn open(path: PathBuf) -> Result<Writer> {
        // The file exists (the pool made it and migrated it): never make another.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = rusqlite::Connection::open_with_flags(&path, flags)?;
        conn.execute_batch(
            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
        conn.set_prepared_statement_cache_capacity(128);
        let (work, queue) = mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("nuage-sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(w) = queue.recv() {
                    // A panic fails that work alone (its caller sees the thread's answer go
                    // away), never the writes after it.
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w(&mut conn)));
                    if done.is_err() && !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                }
            })
            .map_err(|e| Error::Corrupt(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok(Writer { work })
    }

    /// Runs `f` on the writer's connection and answers what it returns.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.work
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| Error::Batch("the SQLite writer thread stopped".into()))?;
        rx.await.map_err(|_| Error::Batch("the SQLite writer thread stopped".into()))
    }
}

/// The outcome of `fut`, which must be ready at once: the write path on a [`Lite`]
/// connection, whose every statement is a call.
pub(crate) fn ready<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(outcome) => outcome,
        std::task::Poll::Pending => Err(Error::Batch("a write on the writer's connection waited".into())),
    }
}

/// The file of a `sqlite:` URL as sqlx reads it, unless it names an in-memory database
/// (which a second connection could not share, nor could the pool's eight).
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let name = path.to_string_lossy();
    (!name.is_empty() && !name.contains(":memory:") && !url.contains("mode=memory")).then(|| path.to_owned())
}
