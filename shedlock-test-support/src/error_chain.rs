//! An error with each of its causes, for failure messages and for tests of
//! what errors show.

use std::error::Error;

/// `err`, then each of its causes (its `source()` chain), in order.
pub fn causes<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&err| err.source())
}

/// `err` and each of its causes on one line: `error: caused by: cause: …`.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    causes(err)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": caused by: ")
}
