//! "Did you mean …?": the nearest valid name to a misspelt one.

/// The candidate closest to `name`, when one is close enough to be a
/// likely typo (Jaro-Winkler similarity of at least 0.8, or one edit on a
/// short name).
///
/// ```
/// use sqlsandbox::suggest::closest;
/// assert_eq!(closest("sandbx", ["sandbox", "rules"]), Some("sandbox"));
/// assert_eq!(closest("zzz", ["sandbox", "rules"]), None);
/// ```
pub fn closest<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, c)| *score >= 0.8 || strsim::levenshtein(name, c) <= 1)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `"; did you mean `x`?"` for the closest candidate, or `""`.
///
/// ```
/// use sqlsandbox::suggest::did_you_mean;
/// assert_eq!(did_you_mean("alcie", ["alice", "bob"]), "; did you mean `alice`?");
/// ```
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(name, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// Adds a suggestion to serde's "unknown field `x`, expected `a` or `b`"
/// and "unknown variant …" messages (the expected names are listed in
/// backquotes after `expected`).
pub(crate) fn serde_message(message: &str) -> String {
    let Some((head, expected)) = message.split_once(", expected ") else {
        return message.to_string();
    };
    let Some(bad) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| {
            head.split_once(p)
                .and_then(|(_, rest)| rest.split('`').next())
        })
    else {
        return message.to_string();
    };
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    format!("{message}{}", did_you_mean(bad, names))
}

#[cfg(test)]
mod tests {
    use super::serde_message;

    #[test]
    fn suggests_for_serde_messages() {
        assert_eq!(
            serde_message("a.b: unknown field `sandbx`, expected `sandbox` or `rules`"),
            "a.b: unknown field `sandbx`, expected `sandbox` or `rules`; did you mean `sandbox`?"
        );
        assert_eq!(
            serde_message("unknown field `zzz`, expected `sandbox` or `rules`"),
            "unknown field `zzz`, expected `sandbox` or `rules`"
        );
    }
}
