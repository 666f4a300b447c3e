//! Statement templates with named parameters (`:name`, `:lock_at_most_for`,
//! as ShedLock's `SqlStatementsSource` writes them), compiled into one
//! database's placeholders and the order of their values.

use crate::dialect::{Dialect, LeaseParam, Statement};

impl LeaseParam {
    /// Every parameter, as templates name it.
    const NAMED: [(&'static str, LeaseParam); 16] = [
        ("name", LeaseParam::Name),
        ("locked_by", LeaseParam::LockedBy),
        ("lock_at_most_for", LeaseParam::LockAtMostFor),
        ("lock_at_least_for", LeaseParam::LockAtLeastFor),
        ("keep_for", LeaseParam::KeepFor),
        ("capacity", LeaseParam::Capacity),
        ("unused_for", LeaseParam::UnusedFor),
        ("holder", LeaseParam::Holder),
        ("run_millis", LeaseParam::RunMillis),
        ("outcome", LeaseParam::Outcome),
        ("run_token", LeaseParam::RunToken),
        ("permits", LeaseParam::Permits),
        ("holder_token", LeaseParam::HolderToken),
        ("waiter", LeaseParam::Waiter),
        ("hold_place_for", LeaseParam::HoldPlaceFor),
        ("tick", LeaseParam::Tick),
    ];

    fn named(name: &str) -> Option<LeaseParam> {
        Self::NAMED
            .iter()
            .find(|(named, _)| *named == name)
            .map(|(_, param)| *param)
    }
}

/// `template` with each `:parameter` (outside string literals; `::type`
/// casts stay) replaced by `D`'s placeholder: numbered databases number
/// each parameter once, in order of first use, and reuse the number;
/// the others take one value per placeholder. Template text is the
/// crate's own: an unknown name stays as written (a test compiles every
/// statement and looks for one).
pub(crate) fn compile<D: Dialect>(template: &str) -> Statement<LeaseParam> {
    let mut sql = String::with_capacity(template.len());
    let mut params: Vec<LeaseParam> = Vec::new();
    let mut rest = template;
    let mut in_literal = false;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            in_literal = !in_literal;
        }
        let named = (!in_literal && c == ':' && !sql.ends_with(':'))
            .then(|| {
                let name_len = rest[1..]
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(rest.len() - 1);
                let param = LeaseParam::named(&rest[1..=name_len])?;
                Some((param, name_len + 1))
            })
            .flatten();
        match named {
            Some((param, len)) => {
                let index = if D::KIND.numbered_placeholders() {
                    match params.iter().position(|known| *known == param) {
                        Some(at) => at,
                        None => {
                            params.push(param);
                            params.len() - 1
                        }
                    }
                } else {
                    params.push(param);
                    params.len() - 1
                };
                sql.push_str(&D::KIND.placeholder(index + 1));
                rest = &rest[len..];
            }
            None => {
                sql.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Statement::new(sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "postgres")]
    #[test]
    fn numbered_placeholders_are_reused_and_casts_and_literals_kept() {
        let statement = compile::<crate::Postgres>(
            "SELECT :name::varchar, ':not_a_param', :lock_at_most_for, :name",
        );
        assert_eq!(statement.sql, "SELECT $1::varchar, ':not_a_param', $2, $1");
        assert!(matches!(
            statement.params[..],
            [LeaseParam::Name, LeaseParam::LockAtMostFor]
        ));
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn unnumbered_placeholders_take_one_value_each() {
        let statement = compile::<crate::MySql>("UPDATE t SET a = :name WHERE b = :name");
        assert_eq!(statement.sql, "UPDATE t SET a = ? WHERE b = ?");
        assert!(matches!(
            statement.params[..],
            [LeaseParam::Name, LeaseParam::Name]
        ));
    }
}
