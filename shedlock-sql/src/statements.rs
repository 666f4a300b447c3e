//! Every statement, written once as a template with named parameters: the
//! dialect supplies fragments (its clocks, interval arithmetic, casts,
//! upserts) and overrides only the statements whose shape differs (the
//! acquisition, PostgreSQL's release that records its run, SQLite's row
//! lock). `template::compile` turns each into the database's placeholders.

use shedlock_core::RUN_HISTORY_LEN;

use crate::dialect::{
    AdminStatements, Dialect, KindStatements, RunStatements, SHARED_MARKER, Statements,
};
use crate::table::TableName;
use crate::template::compile;

/// The lock table and its companions, as statements name them.
pub struct Tables {
    pub(crate) table: TableName,
    pub(crate) settings: TableName,
    pub(crate) runs: TableName,
    pub(crate) holders: TableName,
    pub(crate) waiters: TableName,
    pub(crate) ticks: TableName,
    /// Whether the lock table has the `fencing_token` column.
    pub(crate) fencing: bool,
}

impl Tables {
    pub(crate) fn of(table: &TableName, fencing: bool) -> Tables {
        Tables {
            table: table.clone(),
            settings: table.settings(),
            runs: table.runs(),
            holders: table.holders(),
            waiters: table.waiters(),
            ticks: table.ticks(),
            fencing,
        }
    }

    /// `, fencing_token` in a column list, when the table has it.
    pub(crate) fn token_column(&self) -> &'static str {
        if self.fencing { ", fencing_token" } else { "" }
    }

    /// The new row's fencing counter in a value list: the clock, above the
    /// tokens of a row deleted before (pruned, or by hand).
    pub(crate) fn token_insert<D: Dialect>(&self) -> String {
        if self.fencing {
            format!(", {}", D::KIND.clock_micros())
        } else {
            String::new()
        }
    }

    /// The counter moved on, never below the clock: `expr` wraps the new
    /// value (MySQL hands it back through `LAST_INSERT_ID(..)`).
    pub(crate) fn token_update<D: Dialect>(
        &self,
        column: &str,
        wrap: fn(String) -> String,
    ) -> String {
        if self.fencing {
            let next = D::KIND.greatest(
                &format!("COALESCE({column}, 0) + 1"),
                D::KIND.clock_micros(),
            );
            format!(", fencing_token = {}", wrap(next))
        } else {
            String::new()
        }
    }
}

/// The statements of `tables` on `D`'s database.
pub(crate) fn statements<D: Dialect>(tables: &Tables) -> Statements {
    Statements {
        acquire: D::acquire(tables),
        extend: compile::<D>(&format!(
            "UPDATE {table} SET lock_until = {end} \
             WHERE name = :name AND locked_by = :locked_by AND lock_until > {live}",
            table = tables.table,
            end = D::KIND.lease_end(":lock_at_most_for"),
            live = D::KIND.after_wait(),
        )),
        release: compile::<D>(&D::announced(tables, &release_update::<D>(tables))),
        lease_left: compile::<D>(&format!(
            "SELECT {left} FROM {table} WHERE name = :name AND NOT EXISTS \
             (SELECT 1 FROM {settings} s WHERE s.name = :name AND s.capacity = 0)",
            left = D::KIND.lease_left(D::KIND.now(), "lock_until"),
            table = tables.table,
            settings = tables.settings,
        )),
        admin: admin::<D>(tables),
        runs: runs::<D>(tables),
        kinds: kinds::<D>(tables),
        ticks: crate::ticks::statements::<D>(tables),
    }
}

/// The acquisition as one upsert (PostgreSQL, SQLite): inserts the row,
/// or takes it over if its lease has ended, in one atomic statement, unless
/// the lock is paused (the SELECT then gives no row); returns the token only
/// when it took the lock. `locked_at` is cut to the column's milliseconds:
/// rounded up, a release within the same millisecond (`lock_at_least_for`
/// counts from it) would keep the lock into the next one. `DO UPDATE`
/// computes its own values: the clock read after waiting for the row, not
/// the insert's from before.
pub(crate) fn upsert_acquisition<D: Dialect>(tables: &Tables) -> String {
    let kind = D::KIND;
    let returning = if tables.fencing {
        "fencing_token"
    } else {
        kind.clock_micros()
    };
    format!(
        "{insert} (name, lock_until, locked_at, locked_by{token_column}) \
         SELECT :name, {end}, {locked_at}, :locked_by{token_insert} \
         WHERE COALESCE((SELECT s.capacity FROM {settings} s WHERE s.name = :name), {capacity}) <> 0 \
         {on_conflict} lock_until = {end}, locked_at = {locked_at}, \
         locked_by = {locked_by}{token_update} \
         WHERE {lock_until} <= {after_wait} RETURNING {returning}",
        insert = kind.upsert_into(&tables.table, "l"),
        token_column = tables.token_column(),
        end = kind.lease_end(":lock_at_most_for"),
        locked_at = kind.trunc_ms(kind.after_wait()),
        token_insert = tables.token_insert::<D>(),
        settings = tables.settings,
        capacity = kind.typed_param(":capacity", "bigint"),
        on_conflict = kind.on_conflict("name"),
        locked_by = kind.new_value("locked_by"),
        token_update = tables.token_update::<D>(&kind.old_value("l", "fencing_token"), |next| next),
        lock_until = kind.old_value("l", "lock_until"),
        after_wait = kind.after_wait(),
    )
}

/// The plain release: the lease shortened to `lock_at_least_for` after
/// `locked_at` or `keep_for` from now, whichever is later, never
/// lengthened; only while the row is still this lease's and live.
pub(crate) fn release_update<D: Dialect>(tables: &Tables) -> String {
    format!(
        "UPDATE {table} SET lock_until = {end} \
         WHERE name = :name AND locked_by = :locked_by AND lock_until > {now}",
        table = tables.table,
        end = D::KIND.trunc_ms(&D::KIND.least(
            "lock_until",
            &D::KIND.greatest(
                &D::KIND.plus("locked_at", ":lock_at_least_for"),
                &D::KIND.plus(D::KIND.now(), ":keep_for"),
            ),
        )),
        now = D::KIND.now(),
    )
}

/// The values of a run that finished at `finished` (an SQL time: the
/// database's clock now, or a given instant) and took `:run_millis`: name,
/// start, finish, duration.
pub(crate) fn run_values<D: Dialect>(finished: &str) -> String {
    format!(
        ":name, {started}, {finished}, {millis}",
        started = D::KIND.minus_millis(finished, ":run_millis"),
        millis = D::KIND.typed_param(":run_millis", "bigint"),
    )
}

/// The insert of a run finished at `finished` (see [`run_values`]).
fn record_run_at<D: Dialect>(runs: &TableName, finished: &str) -> String {
    format!(
        "INSERT INTO {runs} \
         (name, started_at, finished_at, duration_ms, outcome, locked_by, fencing_token) \
         VALUES ({values}, :outcome, :holder, {token})",
        values = run_values::<D>(finished),
        token = D::KIND.typed_param(":run_token", "bigint"),
    )
}

/// Drops the runs of `:name` older than the newest `keep`. The derived
/// table (materialised, for its LIMIT) lets MySQL's DELETE read the table
/// it deletes from.
pub(crate) fn trim_runs(runs: &TableName, keep: usize) -> String {
    format!(
        "DELETE FROM {runs} WHERE name = :name AND id < (SELECT id FROM \
         (SELECT id FROM {runs} WHERE name = :name ORDER BY id DESC \
         LIMIT 1 OFFSET {}) AS newest)",
        keep - 1
    )
}

/// The columns of a run as `RunStatements::history` answers them.
fn run_columns<D: Dialect>(alias: &str) -> String {
    format!(
        "{started}, {finished}, {alias}duration_ms, {alias}outcome, {alias}locked_by, {alias}fencing_token",
        started = D::KIND.millis_since_1970(&format!("{alias}started_at")),
        finished = D::KIND.millis_since_1970(&format!("{alias}finished_at")),
    )
}

/// ` LIMIT <batch>` where prune statements delete in batches.
pub(crate) fn batch_limit<D: Dialect>() -> String {
    D::PRUNE_BATCH
        .map(|batch| format!(" LIMIT {batch}"))
        .unwrap_or_default()
}

fn admin<D: Dialect>(tables: &Tables) -> AdminStatements {
    let Tables {
        table,
        settings,
        runs,
        holders,
        ..
    } = tables;
    let now = D::KIND.now();
    let holder_token = if tables.fencing {
        "l.fencing_token".to_owned()
    } else {
        D::KIND.int("NULL")
    };
    // What `lock_state` and `list_locks` answer (see `AdminStatements`).
    let state_columns = format!(
        "l.locked_by, {locked_at}, {left}, {holder_token}, {capacity}, r.renewals, {renewed_ago}",
        locked_at = D::KIND.millis_since_1970("l.locked_at"),
        left = D::KIND.ms_between(now, "l.lock_until"),
        capacity = D::KIND.int("s.capacity"),
        renewed_ago = D::KIND.ms_between("r.renewed_at", now),
    );
    // The live exclusive holder of the name `n` (not the shared marker)
    // and its renewals.
    let exclusive_of = |n: &str| {
        format!(
            "LEFT JOIN {table} l ON l.name = {n} AND l.lock_until > {now} \
             AND l.locked_by <> '{SHARED_MARKER}' \
             LEFT JOIN {holders} r ON r.name = l.name AND r.locked_by = l.locked_by \
             AND r.permits = 0"
        )
    };
    AdminStatements {
        lock_state: compile::<D>(&format!(
            "SELECT {state_columns} FROM (SELECT 1) AS one {exclusive} \
             LEFT JOIN {settings} s ON s.name = :name",
            exclusive = exclusive_of(":name"),
        )),
        list_locks: compile::<D>(&format!(
            "SELECT {state_columns}, n.name FROM \
             (SELECT name FROM {table} WHERE lock_until > {now} \
             UNION SELECT name FROM {settings} UNION SELECT name FROM {runs}) AS n \
             {exclusive} LEFT JOIN {settings} s ON s.name = n.name",
            exclusive = exclusive_of("n.name"),
        )),
        // `resume_to` is assigned first and reads the capacity from before
        // (MySQL assigns left to right, each assignment seeing the ones
        // before; the others read the stored row throughout).
        set_capacity: compile::<D>(&format!(
            "{insert} (name, capacity, resume_to) VALUES (:name, :capacity, NULL) \
             {on_conflict} resume_to = CASE WHEN {new} <> 0 THEN NULL \
             WHEN {old} <> 0 THEN {old} ELSE {old_resume} END, capacity = {new}",
            insert = D::KIND.upsert_into(settings, "s"),
            on_conflict = D::KIND.on_conflict("name"),
            new = D::KIND.new_value("capacity"),
            old = D::KIND.old_value("s", "capacity"),
            old_resume = D::KIND.old_value("s", "resume_to"),
        )),
        resume: [
            compile::<D>(&format!(
                "DELETE FROM {settings} WHERE name = :name AND capacity = 0 AND resume_to IS NULL"
            )),
            compile::<D>(&format!(
                "UPDATE {settings} SET capacity = resume_to, resume_to = NULL \
                 WHERE name = :name AND capacity = 0 AND resume_to IS NOT NULL"
            )),
        ],
        // Announced like a release, where the database announces.
        force_release: compile::<D>(&D::announced(
            tables,
            &format!(
                "UPDATE {table} SET lock_until = {end} WHERE name = :name AND lock_until > {now}",
                end = D::KIND.trunc_ms(now),
            ),
        )),
        prune: compile::<D>(&format!(
            "DELETE FROM {table} WHERE {unused} < {now}{limit}",
            unused = D::KIND.plus("lock_until", ":unused_for"),
            limit = batch_limit::<D>(),
        )),
        prune_batch: D::PRUNE_BATCH,
    }
}

fn runs<D: Dialect>(tables: &Tables) -> RunStatements {
    let Tables { table, runs, .. } = tables;
    RunStatements {
        release: D::release_with_run(tables),
        record: [
            compile::<D>(&record_run_at::<D>(runs, D::KIND.now())),
            compile::<D>(&trim_runs(runs, RUN_HISTORY_LEN)),
        ],
        record_missed: compile::<D>(&record_run_at::<D>(runs, &D::KIND.time_of_millis(":tick"))),
        history: compile::<D>(&format!(
            "SELECT {columns} FROM {runs} WHERE name = :name ORDER BY id DESC LIMIT {RUN_HISTORY_LEN}",
            columns = run_columns::<D>(""),
        )),
        // One pass over the `(name, id)` index for the newest id of each name.
        last: compile::<D>(&format!(
            "SELECT {columns}, r.name FROM {runs} r \
             JOIN (SELECT MAX(id) AS id FROM {runs} GROUP BY name) newest ON newest.id = r.id",
            columns = run_columns::<D>("r."),
        )),
        // An anti-join: `NOT IN (SELECT ..)` of more names than PostgreSQL's
        // work_mem holds is compared row by row, quadratically.
        prune: compile::<D>(&format!(
            "DELETE FROM {runs} WHERE NOT EXISTS \
             (SELECT 1 FROM {table} l WHERE l.name = {runs}.name){limit}",
            limit = batch_limit::<D>(),
        )),
    }
}

fn kinds<D: Dialect>(tables: &Tables) -> KindStatements {
    let Tables {
        table,
        settings,
        holders,
        waiters,
        ..
    } = tables;
    // Inside the lock-kinds transactions: read after the row lock's wait.
    let now = D::KIND.now_in_transaction();
    let now_ms = D::KIND.trunc_ms(now);
    // The live shared holders (see `engine::kinds::HolderRow`), `filter` added.
    let holders_where = |filter: &str| {
        compile::<D>(&format!(
            "SELECT h.locked_by, {locked_at}, {left}, h.fencing_token, {permits}, h.renewals, \
             {ago}, h.name FROM {holders} h WHERE h.permits > 0 AND h.lock_until > {now}{filter}",
            now = D::KIND.now(),
            locked_at = D::KIND.millis_since_1970("h.locked_at"),
            left = D::KIND.ms_between(D::KIND.now(), "h.lock_until"),
            permits = D::KIND.int("h.permits"),
            ago = D::KIND.ms_between("h.renewed_at", D::KIND.now()),
        ))
    };
    let waiters_where = |filter: &str| {
        compile::<D>(&format!(
            "SELECT name, COUNT(*) FROM {waiters} WHERE queued_until > {now}{filter} GROUP BY name",
            now = D::KIND.now(),
        ))
    };
    let (token, renewal_token) = if tables.fencing {
        (
            format!("SELECT fencing_token FROM {table} WHERE name = :name"),
            "l.fencing_token".to_owned(),
        )
    } else {
        (
            format!("SELECT {}", D::KIND.clock_micros()),
            D::KIND.int("NULL"),
        )
    };
    let (insert_ignore, ignore_tail) = D::KIND.insert_ignore(table);
    let prune = |rows: &TableName, until: &str| {
        compile::<D>(&format!(
            "DELETE FROM {rows} WHERE {unused} < {now}{limit}",
            unused = D::KIND.plus(until, ":unused_for"),
            limit = batch_limit::<D>(),
        ))
    };
    KindStatements {
        ensure_row: compile::<D>(&format!(
            "{insert_ignore} (name, lock_until, locked_at, locked_by{token_column}) \
             VALUES (:name, {now_ms}, {now_ms}, ''{token_insert}){ignore_tail}",
            token_column = tables.token_column(),
            token_insert = tables.token_insert::<D>(),
        )),
        lock_row: compile::<D>(&D::lock_row(table, "1")),
        state: compile::<D>(&format!(
            "SELECT (SELECT COUNT(*) FROM {table} WHERE name = :name AND lock_until > {now} \
             AND locked_by <> '{SHARED_MARKER}'), \
             (SELECT {capacity} FROM {settings} WHERE name = :name), \
             (SELECT {permits} FROM {holders} \
             WHERE name = :name AND permits > 0 AND lock_until > {now}), \
             (SELECT COUNT(*) FROM {waiters} WHERE name = :name AND queued_until > {now})",
            capacity = D::KIND.int("capacity"),
            permits = D::KIND.int("COALESCE(SUM(permits), 0)"),
        )),
        take: compile::<D>(&format!(
            "UPDATE {table} SET lock_until = {end}, locked_at = {now_ms}, \
             locked_by = '{SHARED_MARKER}'{counter} WHERE name = :name",
            end = D::KIND.greatest("lock_until", &D::KIND.plus(now, ":lock_at_most_for")),
            counter = tables.token_update::<D>("fencing_token", |next| next),
        )),
        token: compile::<D>(&token),
        drop_ended: compile::<D>(&format!(
            "DELETE FROM {holders} WHERE name = :name AND lock_until <= {now}"
        )),
        join: compile::<D>(&format!(
            "INSERT INTO {holders} (name, locked_by, permits, locked_at, lock_until, \
             fencing_token, renewals, renewed_at) \
             VALUES (:name, :locked_by, :permits, {now_ms}, {end}, :holder_token, 0, {now_ms})",
            end = D::KIND.plus(now, ":lock_at_most_for"),
        )),
        extend: compile::<D>(&format!(
            "UPDATE {holders} SET lock_until = {end}, renewals = renewals + 1, \
             renewed_at = {now_ms} \
             WHERE name = :name AND locked_by = :locked_by AND lock_until > {now}",
            end = D::KIND.plus(now, ":lock_at_most_for"),
        )),
        release: compile::<D>(&format!(
            "UPDATE {holders} SET lock_until = {end} \
             WHERE name = :name AND locked_by = :locked_by AND lock_until > {now}",
            end = D::KIND.trunc_ms(&D::KIND.least(
                "lock_until",
                &D::KIND.greatest(
                    &D::KIND.plus("locked_at", ":lock_at_least_for"),
                    &D::KIND.plus(now, ":keep_for"),
                ),
            )),
        )),
        settle: compile::<D>(&format!(
            "UPDATE {table} SET lock_until = COALESCE((SELECT MAX(h.lock_until) \
             FROM {holders} h WHERE h.name = :name AND h.permits > 0 AND h.lock_until > {now}), \
             {now_ms}) WHERE name = :name AND locked_by = '{SHARED_MARKER}' AND lock_until > {now}"
        )),
        renew_exclusive: compile::<D>(&format!(
            "{insert} (name, locked_by, permits, locked_at, lock_until, \
             fencing_token, renewals, renewed_at) \
             SELECT l.name, l.locked_by, 0, l.locked_at, l.lock_until, {renewal_token}, 1, {now_ms} \
             FROM {table} l WHERE l.name = :name AND l.locked_by = :locked_by \
             {on_conflict} renewals = {renewals} + 1, \
             renewed_at = {renewed_at}, lock_until = {lock_until}",
            insert = D::KIND.upsert_into(holders, "h"),
            on_conflict = D::KIND.on_conflict("name, locked_by"),
            renewals = D::KIND.old_value("h", "renewals"),
            renewed_at = D::KIND.new_value("renewed_at"),
            lock_until = D::KIND.new_value("lock_until"),
        )),
        notify: D::notify(tables).map(|sql| compile::<D>(&sql)),
        queue: compile::<D>(&format!(
            "{insert} (name, waiter, queued_until) VALUES (:name, :waiter, {until}) \
             {on_conflict} queued_until = {queued_until}",
            insert = D::KIND.upsert_into(waiters, "w"),
            until = D::KIND.plus(now, ":hold_place_for"),
            on_conflict = D::KIND.on_conflict("name, waiter"),
            queued_until = D::KIND.new_value("queued_until"),
        )),
        dequeue: compile::<D>(&format!(
            "DELETE FROM {waiters} WHERE name = :name AND (waiter = :waiter OR queued_until <= {now})"
        )),
        holders_of: holders_where(" AND h.name = :name"),
        holders: holders_where(""),
        waiters_of: waiters_where(" AND name = :name"),
        waiters: waiters_where(""),
        end_holders: compile::<D>(&format!(
            "UPDATE {holders} SET lock_until = {now_ms} \
             WHERE name = :name AND permits > 0 AND lock_until > {now}"
        )),
        prune: [prune(holders, "lock_until"), prune(waiters, "queued_until")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::{Acquire, LeaseParam, ReleaseRun, Statement};

    /// Every statement of `statements`.
    fn every(statements: &Statements) -> Vec<&Statement<LeaseParam>> {
        let Statements {
            acquire,
            extend,
            release,
            lease_left,
            admin,
            runs,
            kinds,
            ticks,
        } = statements;
        let mut all: Vec<&Statement<LeaseParam>> = acquire
            .iter()
            .map(|acquire| match acquire {
                Acquire::Returning(statement) | Acquire::Counting(statement, _) => statement,
            })
            .collect();
        all.extend([extend, release, lease_left]);
        all.extend([&admin.lock_state, &admin.list_locks, &admin.set_capacity]);
        all.extend(&admin.resume);
        all.extend([&admin.force_release, &admin.prune]);
        if let ReleaseRun::Combined(statement) = &runs.release {
            all.push(statement);
        }
        all.extend(&runs.record);
        all.push(&runs.record_missed);
        all.extend([&runs.history, &runs.last, &runs.prune]);
        all.extend([
            &kinds.ensure_row,
            &kinds.lock_row,
            &kinds.state,
            &kinds.take,
            &kinds.token,
            &kinds.drop_ended,
            &kinds.join,
            &kinds.extend,
            &kinds.release,
            &kinds.settle,
            &kinds.renew_exclusive,
            &kinds.queue,
            &kinds.dequeue,
            &kinds.holders_of,
            &kinds.holders,
            &kinds.waiters_of,
            &kinds.waiters,
            &kinds.end_holders,
        ]);
        all.extend(&kinds.notify);
        all.extend(ticks.every());
        all.extend(&kinds.prune);
        all
    }

    /// The placeholders of `sql` outside string literals: `$n`/`?n` numbers,
    /// or 0 for each bare `?`.
    fn placeholders(sql: &str) -> Vec<usize> {
        let mut found = Vec::new();
        let mut in_literal = false;
        let chars: Vec<char> = sql.chars().collect();
        for (at, c) in chars.iter().enumerate() {
            if *c == '\'' {
                in_literal = !in_literal;
            }
            if in_literal || !(*c == '$' || *c == '?') {
                continue;
            }
            let digits: String = chars[at + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            found.push(digits.parse().unwrap_or(0));
        }
        found
    }

    /// No `:name` left (outside literals; `::type` casts are not names), and
    /// as many values as the placeholders take.
    fn check<D: Dialect>() {
        let table = TableName::parse("shedlock").unwrap_or_else(|err| panic!("{err}")); // allow-panic: unit test
        for fencing in [false, true] {
            let statements = statements::<D>(&Tables::of(&table, fencing));
            for statement in every(&statements) {
                let sql = &statement.sql;
                let mut in_literal = false;
                let chars: Vec<char> = sql.chars().collect();
                for (at, c) in chars.iter().enumerate() {
                    if *c == '\'' {
                        in_literal = !in_literal;
                    }
                    let named = *c == ':'
                        && chars.get(at + 1).is_some_and(|c| c.is_ascii_lowercase())
                        && (at == 0 || chars[at - 1] != ':');
                    assert!(in_literal || !named, "an unknown parameter in {sql}");
                }
                let found = placeholders(sql);
                let values = statement.params.len();
                if D::KIND.numbered_placeholders() {
                    assert_eq!(found.iter().max().copied().unwrap_or(0), values, "{sql}");
                } else {
                    assert_eq!(found.len(), values, "{sql}");
                }
            }
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn every_postgres_statement_compiles() {
        check::<crate::Postgres>();
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn every_mysql_statement_compiles() {
        check::<crate::MySql>();
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn every_sqlite_statement_compiles() {
        check::<crate::Sqlite>();
    }
}
