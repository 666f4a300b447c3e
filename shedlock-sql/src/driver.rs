//! What the engine asks of an sqlx database: bind values to a statement,
//! send it and read its answer. Written once, for every database whose
//! driver takes the values the statements use.

use shedlock_core::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

/// A parameter's value.
#[derive(Debug)]
pub(crate) enum Value<'a> {
    Str(&'a str),
    /// NULL when `None`.
    OptionalStr(Option<&'a str>),
    Text(String),
    Int(i64),
    /// NULL when `None`.
    OptionalInt(Option<i64>),
}

/// An sqlx database the engine can send statements to.
pub(crate) trait Driver: Database {
    /// Sends `sql` with `values` bound in order; its answer says what it changed.
    fn execute<'a>(
        connection: &'a mut Self::Connection,
        sql: &'a str,
        values: Vec<Value<'a>>,
    ) -> BoxFuture<'a, Result<Self::QueryResult, sqlx::Error>>;

    /// Sends `sql` with `values` bound in order; its first row, if any.
    fn fetch_optional<'a>(
        connection: &'a mut Self::Connection,
        sql: &'a str,
        values: Vec<Value<'a>>,
    ) -> BoxFuture<'a, Result<Option<Self::Row>, sqlx::Error>>;

    /// Sends `sql` with `values` bound in order; all its rows.
    fn fetch_all<'a>(
        connection: &'a mut Self::Connection,
        sql: &'a str,
        values: Vec<Value<'a>>,
    ) -> BoxFuture<'a, Result<Vec<Self::Row>, sqlx::Error>>;

    /// Sends `sql` as it is, unprepared (DDL).
    fn execute_unprepared<'a>(
        connection: &'a mut Self::Connection,
        sql: &'a str,
    ) -> BoxFuture<'a, Result<Self::QueryResult, sqlx::Error>>;

    /// The column `index` of `row`, an integer (NULL: `None`).
    fn int(row: &Self::Row, index: usize) -> Result<Option<i64>, sqlx::Error>;

    /// The column `index` of `row`, text (NULL: `None`).
    fn text(row: &Self::Row, index: usize) -> Result<Option<String>, sqlx::Error>;
}

impl<DB> Driver for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn execute<'a>(
        connection: &'a mut Self::Connection,
        sql: &'a str,
        values: Vec<Value<'a>>,
    ) -> BoxFuture<'a, Result<Self::QueryResult, sqlx::Error>> {
        Box::pin(bound(sql, values).execute(connection))
    }

    fn fetch_optional<'a>(
        connection: &'a mut Self::Connection,
        sql: &'a str,
        values: Vec<Value<'a>>,
    ) -> BoxFuture<'a, Result<Option<Self::Row>, sqlx::Error>> {
        Box::pin(bound(sql, values).fetch_optional(connection))
    }

    fn fetch_all<'a>(
        connection: &'a mut Self::Connection,
        sql: &'a str,
        values: Vec<Value<'a>>,
    ) -> BoxFuture<'a, Result<Vec<Self::Row>, sqlx::Error>> {
        Box::pin(bound(sql, values).fetch_all(connection))
    }

    fn execute_unprepared<'a>(
        connection: &'a mut Self::Connection,
        sql: &'a str,
    ) -> BoxFuture<'a, Result<Self::QueryResult, sqlx::Error>> {
        Box::pin(connection.execute(sql))
    }

    fn int(row: &Self::Row, index: usize) -> Result<Option<i64>, sqlx::Error> {
        row.try_get(index)
    }

    fn text(row: &Self::Row, index: usize) -> Result<Option<String>, sqlx::Error> {
        row.try_get(index)
    }
}

/// `sql` with `values` bound in order.
fn bound<'q, DB>(
    sql: &'q str,
    values: Vec<Value<'q>>,
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> String: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
{
    values
        .into_iter()
        .fold(sqlx::query(sql), |query, value| match value {
            Value::Str(value) => query.bind(value),
            Value::OptionalStr(value) => query.bind(value),
            Value::Text(value) => query.bind(value),
            Value::Int(value) => query.bind(value),
            Value::OptionalInt(value) => query.bind(value),
        })
}
