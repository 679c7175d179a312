//! Error messages for people: an error and its causes on one line.

/// The error and each of its causes, joined by `: `, leaving out a cause whose text the line
/// already holds. Many errors (`io::Error`s wrapped with the path, sqlx's) put their cause in
/// their own message and also return it as `source()`, so anyhow's `{:#}` printed it twice:
/// "File exists (os error 17): File exists (os error 17)". The binaries pass an
/// `anyhow::Error` (`&*error`); the library itself returns only typed errors.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    for cause in std::iter::successors(Some(error), |cause| cause.source()) {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(17);
        let error = anyhow::Error::new(io).context(format!(
            "cannot write certs/ca.pem: {}",
            std::io::Error::from_raw_os_error(17)
        ));
        let line = chain(&*error);
        assert_eq!(line.matches("os error 17").count(), 1, "{line}");
        assert!(line.starts_with("cannot write certs/ca.pem: "), "{line}");
    }

    #[test]
    fn a_new_cause_is_added() {
        let error = anyhow::anyhow!("disk full").context("cannot store");
        assert_eq!(chain(&*error), "cannot store: disk full");
    }
}
